// LoRA from the command line, as LLaVA-1.5's LoRA recipe runs: `vwlmm train --lora-r` trains adapters, the projector
// (at --mm-projector-lr) and vm_head with the LLM frozen; the checkpoint keeps the adapters; `vwlmm merge-adapter`
// folds them in (same outputs, no adapter left); eval / generate take a PEFT adapter with --adapter; bad flags fail.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { F, noGrad, scope, Tensor } from '../../src';
import { roundToBf16 } from '../../src/bf16';
import { readSafetensors } from '../../src/io/safetensors';
import { TextTokenizer } from '../../src/data/tokenizer';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { loraConfigOf, saveLoraAdapter } from '../../src/model/lora';
import { VwLmm } from '../../src/model/vwlmm';
import { cli, tinyConfig, writeCliFixture } from './support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('loracli');

describe('LoRA on the command line', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let dir: string;
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir, { images: 4 });
  });

  it('train --lora-r: adapters, projector and vm_head train, the LLM stays; merge-adapter folds them in', () => {
    const out = path.join(dir, 'out');
    const r = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '3', '--batch-size', '2', '--lora-r', '2', '--mm-projector-lr', '1e-3', '--lr', '1e-2');
    expect(r.status, r.stderr).toBe(0);
    const ck = path.join(out, 'checkpoint');
    const cfg = JSON.parse(fs.readFileSync(path.join(ck, 'config.json'), 'utf8'));
    expect(cfg.lora).toEqual({ r: 2, lora_alpha: 4, lora_dropout: 0.05, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
    const before = readSafetensors(path.join(fx.init, 'model.safetensors')), after = readSafetensors(path.join(ck, 'model.safetensors'));
    const same = (n: string) => Array.from(after.get(n)!.data).every((v, i) => v === before.get(n)!.data[i]);
    expect(same('model.layers.0.self_attn.q_proj.weight')).toBe(true);
    expect(same('model.embed_tokens.weight')).toBe(true);
    expect(same('lm_head.weight')).toBe(true);
    expect(same('model.mm_projector.0.weight')).toBe(false);
    expect(same('vm_head.weight')).toBe(false);
    expect(after.has('model.layers.0.mlp.down_proj.lora_B.weight')).toBe(true);
    // merge: the same function without adapters
    const merged = path.join(dir, 'merged');
    const m = cli('merge-adapter', '--checkpoint', ck, '--out', merged);
    expect(m.status, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/merged LoRA \(r 2, alpha 4/);
    // and without the vm_head (the LLaVA the VW-LMM runs as): the same weights less vm_head
    const plain = path.join(dir, 'merged-plain');
    const mp = cli('merge-adapter', '--checkpoint', ck, '--out', plain, '--drop-vm-head');
    expect(mp.status, mp.stderr).toBe(0);
    expect(mp.stdout).toMatch(new RegExp(`^merged LoRA \\(r 2, alpha 4, q_proj, [a-z_, ]+\\) into ${plain.replace(/[.\\/]/g, '\\$&')}, without its vm_head\n$`));
    const withVm = readSafetensors(path.join(merged, 'model.safetensors')), noVm = readSafetensors(path.join(plain, 'model.safetensors'));
    expect([...noVm.keys()].sort()).toEqual([...withVm.keys()].filter((k) => k !== 'vm_head.weight').sort());
    for (const [k, t] of noVm) expect(Array.from(t.data), k).toEqual(Array.from(withVm.get(k)!.data));
    const a = loadCheckpoint(ck), b = loadCheckpoint(merged);
    expect(loraConfigOf(b.model)).toBeNull();
    expect([...readSafetensors(path.join(merged, 'model.safetensors')).keys()].some((k) => k.includes('lora_'))).toBe(false);
    const h = (x: typeof a) => scope(() => noGrad(() => Array.from(F.linear(x.model.model.forward(x.model.model.embed_tokens.forward(Tensor.fromArray(Int32Array.from([1, 5, 9, 2]), [1, 4]))).last, x.model.lm_head.weight).toArray())));
    const ha = h(a), hb = h(b);
    const scale = Math.max(...ha.map(Math.abs));
    expect(Math.max(...ha.map((v, i) => Math.abs(v - hb[i])))).toBeLessThan(1e-5 * scale);
    // the adapters as a PEFT directory, applied to the init checkpoint by --adapter
    const adapter = path.join(dir, 'adapter');
    saveLoraAdapter(adapter, a.model);
    const g = cli('generate', '--checkpoint', fx.init, '--adapter', adapter, '--prompt', 'what shape is the red object?', '--max-new-tokens', '2');
    expect(g.status, g.stderr).toBe(0);
    // an adapter on a checkpoint that has adapters of its own: what to do, in CLI terms
    const twice = cli('generate', '--checkpoint', ck, '--adapter', adapter, '--prompt', 'x', '--max-new-tokens', '1');
    expect(twice.status).toBe(2);
    expect(twice.stderr).toMatch(/--adapter .*adapter: .*checkpoint has LoRA adapters of its own \(trained with --lora-r\); merge them first \(vwlmm merge-adapter --checkpoint/);
    a.model.dispose();
    b.model.dispose();
  });

  it("merge-adapter --format transformers on a LLaVA-layout plain LLaVA: <image> is the first id past the tokenizer's words, added to it (or --image-token-index)", () => {
    // a plain LLaVA (no vm_head) with LLaVA's placeholder -200, as its own layout keeps it
    const init = path.join(dir, 'llava-init');
    const tok = new TextTokenizer(fx.tokenizer);
    // rows past the tokenizer's words (a padded vocabulary): the first one is the <image> token's, as llava-hf's models have it
    const padded = [8, 16, 32, 64, 128].map((k) => Math.ceil(tok.vocabSize / k) * k).find((n) => n > tok.vocabSize + 1)!;
    const m = VwLmm.create(tinyConfig(padded, 0), 5);
    saveCheckpoint(init, m, { tokenizer: fx.tokenizer });
    m.dispose();
    const out = path.join(dir, 'llava-lora');
    expect(cli('train', '--init', init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '1', '--batch-size', '2', '--lora-r', '2').status).toBe(0);
    const ck = path.join(out, 'checkpoint'), merged = path.join(dir, 'llava-tf');
    // a word's id is refused (every such word of a prompt would be an image), and so is an id past the vocabulary
    const word = cli('merge-adapter', '--checkpoint', ck, '--out', merged, '--format', 'transformers', '--image-token-index', String(tok.vocabSize - 1));
    expect(word.stderr).toBe(`vwlmm: --image-token-index ${tok.vocabSize - 1} is the tokenizer's token ${JSON.stringify(tok.idToToken(tok.vocabSize - 1))}, not <image>: transformers' LLaVA would read every ${JSON.stringify(tok.idToToken(tok.vocabSize - 1))} of a prompt as an image\n`);
    expect(fs.existsSync(merged)).toBe(false); // refused before anything is written
    expect(cli('merge-adapter', '--checkpoint', ck, '--out', merged, '--format', 'transformers', '--image-token-index', String(padded)).stderr).toBe(`vwlmm: --image-token-index ${padded} is past the vocabulary (vocab_size ${padded}): give the <image> token's id\n`);
    // transformers' tokenizers give an added token the next free id, whatever id tokenizer.json says: only that one works
    const gap = cli('merge-adapter', '--checkpoint', ck, '--out', merged, '--format', 'transformers', '--image-token-index', String(tok.vocabSize + 1));
    expect(gap.stderr).toBe(`vwlmm: --image-token-index ${tok.vocabSize + 1}: the tokenizer has no <image> token, and transformers' tokenizers give an added one the next free id, ${tok.vocabSize}, not ${tok.vocabSize + 1} (give --image-token-index ${tok.vocabSize})\n`);
    expect(fs.existsSync(merged)).toBe(false);
    // without the flag: that id, said on stderr, in config.json and in the tokenizer beside it
    const yes = cli('merge-adapter', '--checkpoint', ck, '--out', merged, '--format', 'transformers');
    expect(yes.status, yes.stderr).toBe(0);
    expect(yes.stderr).toContain(`the tokenizer has no <image> token: it is added as token ${tok.vocabSize}`);
    expect(JSON.parse(fs.readFileSync(path.join(merged, 'config.json'), 'utf8')).image_token_index).toBe(tok.vocabSize);
    const written = new TextTokenizer(path.join(merged, 'tokenizer.json'));
    expect(written.tokenToId('<image>')).toBe(tok.vocabSize);
    expect(written.encode('a <image>\nb')).toContain(tok.vocabSize);
    // the same id given, and a second save from the tokenizer that has it: the same files
    const again = path.join(dir, 'llava-tf2');
    expect(cli('merge-adapter', '--checkpoint', ck, '--out', again, '--format', 'transformers', '--image-token-index', String(tok.vocabSize)).status).toBe(0);
    expect(fs.readFileSync(path.join(again, 'tokenizer.json'), 'utf8')).toBe(fs.readFileSync(path.join(merged, 'tokenizer.json'), 'utf8'));
    expect(cli('merge-adapter', '--checkpoint', ck, '--out', merged, '--image-token-index', '3').stderr).toMatch(/--image-token-index is for --format transformers/);
  });

  it('train --lora-r --frozen-dtype bf16: the base is held in bf16 (loaded so) and the checkpoint holds its rounded values', () => {
    const out = path.join(dir, 'out-bf16');
    const r = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '2', '--batch-size', '2', '--lora-r', '2', '--frozen-dtype', 'bf16');
    expect(r.status, r.stderr).toBe(0);
    const before = readSafetensors(path.join(fx.init, 'model.safetensors')), after = readSafetensors(path.join(out, 'checkpoint', 'model.safetensors'));
    const rounded = (n: string) => Array.from(before.get(n)!.data as Float32Array).map(roundToBf16);
    const exact = (n: string) => Array.from(before.get(n)!.data);
    // the frozen LLM and tower: their bf16 values; the rest (embeddings, norms, biases) as they were
    expect(Array.from(after.get('model.layers.0.self_attn.q_proj.weight')!.data)).toEqual(rounded('model.layers.0.self_attn.q_proj.weight'));
    expect(Array.from(after.get('lm_head.weight')!.data)).toEqual(rounded('lm_head.weight'));
    expect(Array.from(after.get('model.embed_tokens.weight')!.data)).toEqual(exact('model.embed_tokens.weight'));
    expect(Array.from(after.get('model.layers.0.input_layernorm.weight')!.data)).toEqual(exact('model.layers.0.input_layernorm.weight'));
    const bad = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'x'), '--steps', '1', '--frozen-dtype', 'fp16');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--frozen-dtype/);
  });

  it('bad LoRA flags and adapters fail with a message, no stack trace', () => {
    const out = path.join(dir, 'bad');
    const base = ['train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '1'];
    const cases: [string[], RegExp][] = [
      [[...base, '--lora-alpha', '4'], /--lora-alpha needs --lora-r/],
      [[...base, '--lora-r', '0'], /--lora-r must be an integer >= 1/],
      [[...base, '--lora-r', '2', '--lora-dropout', '1'], /--lora-dropout must be in \[0, 1\)/],
      [[...base, '--trainable', 'lora'], /trainable.lora is set but the model has no LoRA adapters/],
      // options nothing would read, and adapters nothing trains or trained beside the weights they adapt
      [[...base, '--lora-dropout', '0.5'], /^vwlmm: --lora-dropout needs --lora-r\n$/],
      [[...base, '--trainable', 'llm', '--mm-projector-lr', '1e-3'], /^vwlmm: --mm-projector-lr needs the projector trainable \(--trainable with projector\)\n$/],
      [[...base, '--lora-r', '2', '--trainable', 'projector'], /^vwlmm: --lora-r adds LoRA adapters that --trainable projector leaves untrained: add lora/],
      [[...base, '--lora-r', '2', '--trainable', 'projector,llm,vm,lora'], /^vwlmm: --lora-r with --trainable llm would train the LLM's weights and their adapters both/],
      [[...base, '--lora-r', '1000000000000'], /^vwlmm: --lora-r 1000000000000 is more than the LLM's hidden size \d+: an adapter's rank is at most its layer's width/],
      [['generate', '--checkpoint', fx.init, '--adapter', path.join(dir, 'nope'), '--prompt', 'x'], /adapter .*nope does not exist/],
      [['merge-adapter', '--checkpoint', fx.init, '--out', path.join(dir, 'm2')], /no LoRA adapters: .* has none \(give --adapter; `vwlmm convert` writes a checkpoint without them in another layout\)/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
