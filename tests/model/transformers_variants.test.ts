// transformers' LLaVA layout variants the streamed loader must rebuild (src/model/checkpoint.ts): tied word embeddings
// (no lm_head tensor: the head is the embedding) and a bias-free projector (multimodal_projector_bias false: our
// projector's biases stay zero), made from the tiny_llava fixture by dropping those tensors.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { tempDirs } from '../support/tmp';

const src = path.join(__dirname, '..', 'fixtures', 'tiny_llava', 'hf');
const tmp = tempDirs('tfvariants');

function variant(drop: string[], edit: (c: Record<string, unknown>) => void): string {
  const d = tmp();
  const cfg = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
  edit(cfg);
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(cfg));
  const w = readSafetensors(path.join(src, 'model.safetensors'));
  for (const n of drop) expect(w.delete(n), n).toBe(true);
  writeSafetensors(path.join(d, 'model.safetensors'), w);
  return d;
}

describe('transformers layout variants', () => {
  const w = readSafetensors(path.join(src, 'model.safetensors'));
  it('tied word embeddings: the head is the embedding', () => {
    const d = variant(['language_model.lm_head.weight'], (c) => {
      c.tie_word_embeddings = true;
      (c.text_config as Record<string, unknown>).tie_word_embeddings = true;
    });
    const { model } = loadCheckpoint(d);
    expect(Array.from(model.lm_head.weight.toArray())).toEqual(Array.from(w.get('language_model.model.embed_tokens.weight')!.data));
    model.dispose();
    // without the tie the missing head is named
    const untied = variant(['language_model.lm_head.weight'], () => undefined);
    expect(() => loadCheckpoint(untied)).toThrow(/lacks 1 tensors, e.g. .*lm_head.weight/);
  });

  it('a bias-free projector: biases zero, weights loaded', () => {
    const d = variant(['multi_modal_projector.linear_1.bias', 'multi_modal_projector.linear_2.bias'], (c) => (c.multimodal_projector_bias = false));
    const { model } = loadCheckpoint(d);
    const proj = model.model.mm_projector.namedParameters();
    for (const [n, p] of proj) {
      if (n.endsWith('bias')) expect(Array.from(p.toArray()).every((v) => v === 0), n).toBe(true);
    }
    expect(Array.from(proj.get('0.weight')!.toArray())).toEqual(Array.from(w.get('multi_modal_projector.linear_1.weight')!.data));
    model.dispose();
  });
});
