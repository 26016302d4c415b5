// `vwlmm convert`: a checkpoint written again in the other layout, as transformers' convert_llava_weights_to_hf.py
// writes an llava-hf folder from LLaVA's weights: the same weights and config there and back, the processor's files
// and <image> in the tokenizer on the way to transformers (the vocabulary grown for it where it has no row left); a
// VW-LMM, whose vm_head transformers' LLaVA has no place for, refused for that layout unless --drop-vm-head.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/data/tokenizer';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { tokenizerJsonFromSentencePiece } from '../../src/data/sentencepiece';
import { VwLmm } from '../../src/model/vwlmm';
import { cli, tinyConfig } from '../train/support/tiny';
import { sortOfClevrVocabulary } from '../../src/data/sort_of_clevr';
import { writeWordLevelTokenizer } from '../../src/data/word_level_tokenizer';
import { tempDirs } from '../support/tmp';
import { readSafetensorsHeader } from '../../src/io/safetensors';
import { roundToBf16 } from '../../src/bf16';

const tmp = tempDirs('convert');

/** The weights of a checkpoint, by our names, as plain arrays. */
const weights = (dir: string) => {
  const { model, config } = loadCheckpoint(dir);
  const out = new Map([...model.stateDict()].map(([n, t]) => [n, Array.from(t.data)]));
  model.dispose();
  return { out, config };
};

describe('vwlmm convert', () => {
  it('LLaVA layout -> transformers -> LLaVA layout: the same weights and config; the processor files on the way', () => {
    const dir = tmp(), tokenizer = path.join(dir, 'tokenizer.json');
    writeWordLevelTokenizer(tokenizer, sortOfClevrVocabulary());
    const words = new TextTokenizer(tokenizer).vocabSize;
    // a padded vocabulary (as llava-hf's 32064 for 32000 words): a row for <image>
    const padded = [8, 16, 32, 64, 128].map((k) => Math.ceil(words / k) * k).find((n) => n > words)!;
    const model = VwLmm.create(tinyConfig(padded, 0), 5);
    saveCheckpoint(path.join(dir, 'llava'), model, { tokenizer });
    model.dispose();
    const hf = path.join(dir, 'hf'), back = path.join(dir, 'back');
    const r = cli('convert', '--checkpoint', path.join(dir, 'llava'), '--out', hf, '--format', 'transformers');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`the tokenizer has no <image> token: it is added as token ${words}`);
    expect(r.stdout).toBe(`wrote ${path.join(dir, 'llava')} in the transformers (LlavaForConditionalGeneration) layout to ${hf}\n`);
    expect(JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8'))).toMatchObject({ model_type: 'llava', image_token_index: words });
    for (const f of ['preprocessor_config.json', 'processor_config.json', 'chat_template.jinja', 'tokenizer.json']) expect(fs.existsSync(path.join(hf, f)), f).toBe(true);
    expect(cli('convert', '--checkpoint', hf, '--out', back, '--format', 'vwlmm').status).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(back, 'config.json'), 'utf8')).mm_projector_type).toBe('mlp2x_gelu');
    const a = weights(path.join(dir, 'llava')), b = weights(hf), c = weights(back);
    expect([...b.out.keys()].sort()).toEqual([...a.out.keys()].sort());
    for (const [n, v] of a.out) {
      expect(b.out.get(n), n).toEqual(v);
      expect(c.out.get(n), n).toEqual(v);
    }
    // the image token is a vocabulary id from here on (transformers' layout has no placeholder)
    expect({ ...b.config, imageTokenIndex: -200 }).toEqual(a.config);
    expect(c.config).toEqual(b.config);
    // --save-dtype bf16: half the bytes, each weight rounded as torch rounds it, config.json saying so
    const half = path.join(dir, 'hf-bf16');
    const h = cli('convert', '--checkpoint', path.join(dir, 'llava'), '--out', half, '--format', 'transformers', '--save-dtype', 'bf16');
    expect(h.status, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/, weights in bf16\n$/);
    expect(JSON.parse(fs.readFileSync(path.join(half, 'config.json'), 'utf8')).dtype).toBe('bfloat16');
    expect(readSafetensorsHeader(path.join(half, 'model.safetensors')).entries.every((e) => e.dtype === 'BF16')).toBe(true);
    const d = weights(half);
    for (const [n, v] of a.out) expect(d.out.get(n), n).toEqual(v.map(roundToBf16));
    // and LLaVA's layout (torch_dtype, as LLaVA's released configs have it)
    const llava16 = path.join(dir, 'llava-bf16');
    expect(cli('convert', '--checkpoint', half, '--out', llava16, '--format', 'vwlmm', '--save-dtype', 'bf16').status).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(llava16, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const e = weights(llava16);
    for (const [n, v] of d.out) expect(e.out.get(n), n).toEqual(v);
    expect(cli('convert', '--checkpoint', hf, '--out', path.join(dir, 'x'), '--format', 'vwlmm', '--save-dtype', 'fp16').stderr).toMatch(/--save-dtype/);
  });

  it('a VW-LMM: refused for transformers (no vm_head there) before anything is written, converted in the LLaVA layout; --drop-vm-head writes the LLaVA it runs as', () => {
    const dir = tmp(), tokenizer = path.join(dir, 'tokenizer.json');
    writeWordLevelTokenizer(tokenizer, sortOfClevrVocabulary());
    const model = VwLmm.create(tinyConfig(new TextTokenizer(tokenizer).vocabSize), 5);
    saveCheckpoint(path.join(dir, 'vw'), model, { tokenizer });
    model.dispose();
    const r = cli('convert', '--checkpoint', path.join(dir, 'vw'), '--out', path.join(dir, 'hf'), '--format', 'transformers');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`vwlmm: --format transformers is for plain LLaVA models: ${path.join(dir, 'vw')} is a VW-LMM with a vm_head, which LlavaForConditionalGeneration has no place for (--drop-vm-head writes the LLaVA it runs as: vm_head only trains; --format vwlmm keeps it)\n`);
    expect(fs.existsSync(path.join(dir, 'hf'))).toBe(false);
    // without vm_head, and with a row for <image>: the vocabulary (the tokenizer's words, no room) grows to a multiple of
    // 64, the new rows at the mean of the others; every other weight as it was
    const words = new TextTokenizer(tokenizer).vocabSize, grown = Math.ceil((words + 1) / 64) * 64;
    const dropped = cli('convert', '--checkpoint', path.join(dir, 'vw'), '--out', path.join(dir, 'hf'), '--format', 'transformers', '--drop-vm-head');
    expect(dropped.status, dropped.stderr).toBe(0);
    expect(dropped.stderr).toContain(`it is added as token ${words}, the first row past its words (as in llava-hf's checkpoints); the vocabulary grows from ${words} to ${grown} rows for it`);
    expect(dropped.stdout).toBe(`wrote ${path.join(dir, 'vw')} in the transformers (LlavaForConditionalGeneration) layout to ${path.join(dir, 'hf')} (without its vm_head)\n`);
    const vw = weights(path.join(dir, 'vw')), hf = weights(path.join(dir, 'hf'));
    expect(hf.config).toMatchObject({ vmWeight: 0, pif: false, imageTokenIndex: words, llm: { ...vw.config.llm, vocabSize: grown } });
    expect([...hf.out.keys()].sort()).toEqual([...vw.out.keys()].filter((n) => n !== 'vm_head.weight').sort());
    const H = vw.config.llm.hiddenSize;
    for (const [n, v] of vw.out) {
      if (n === 'vm_head.weight') continue;
      const got = hf.out.get(n)!;
      if (n !== 'model.embed_tokens.weight' && n !== 'lm_head.weight') {
        expect(got, n).toEqual(v);
        continue;
      }
      expect(got.slice(0, v.length), n).toEqual(v);
      for (let c = 0; c < H; c++) {
        let mean = 0;
        for (let r = 0; r < words; r++) mean += v[r * H + c];
        expect(got[(grown - 1) * H + c], `${n} column ${c}`).toBeCloseTo(mean / words, 6);
      }
    }
    expect(cli('convert', '--checkpoint', path.join(dir, 'vw'), '--out', path.join(dir, 'copy'), '--format', 'vwlmm').status).toBe(0);
    const a = weights(path.join(dir, 'vw')), c = weights(path.join(dir, 'copy'));
    expect(c.config).toEqual(a.config);
    for (const [n, v] of a.out) expect(c.out.get(n), n).toEqual(v);
    // a PIF model runs through its vm_head; a plain LLaVA has none to drop
    const pif = VwLmm.create({ ...tinyConfig(words), pif: true }, 5);
    saveCheckpoint(path.join(dir, 'pif'), pif, { tokenizer });
    pif.dispose();
    // told from config.json and the tensors' names, before a weight is read (minutes at 7B): a corrupt last byte, which
    // the load's checksum would find, is never reached
    const pifWeights = path.join(dir, 'pif', 'model.safetensors'), bytes = fs.readFileSync(pifWeights);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(pifWeights, bytes);
    expect(cli('convert', '--checkpoint', path.join(dir, 'pif'), '--out', path.join(dir, 'p'), '--format', 'transformers', '--drop-vm-head').stderr)
      .toBe(`vwlmm: --drop-vm-head: ${path.join(dir, 'pif')} is a PIF model, which feeds its image features through vm_head: without it, it would run as another model\n`);
    expect(cli('convert', '--checkpoint', path.join(dir, 'hf'), '--out', path.join(dir, 'p'), '--format', 'vwlmm', '--drop-vm-head').stderr)
      .toBe(`vwlmm: --drop-vm-head: ${path.join(dir, 'hf')} has no vm_head (a plain LLaVA)\n`);
    expect(fs.existsSync(path.join(dir, 'p'))).toBe(false);
    // a save killed between its two renames left only <dir>.old-*: --checkpoint <dir> reads it, as loadCheckpoint does
    const run = path.join(dir, 'run');
    fs.mkdirSync(run);
    fs.cpSync(path.join(dir, 'vw'), path.join(run, 'checkpoint.old-000001000000000-1-0'), { recursive: true });
    const fromOld = cli('convert', '--checkpoint', path.join(run, 'checkpoint'), '--out', path.join(dir, 'from-old'), '--format', 'vwlmm');
    expect(fromOld.status, fromOld.stderr).toBe(0);
    expect(cli('convert', '--checkpoint', path.join(dir, 'nowhere'), '--out', path.join(dir, 'x'), '--format', 'vwlmm').stderr).toBe(`vwlmm: checkpoint ${path.join(dir, 'nowhere')} does not exist\n`);
    // --format is required: a layout is what convert is for
    expect(cli('convert', '--checkpoint', path.join(dir, 'vw'), '--out', path.join(dir, 'x')).stderr).toMatch(/required option '--format <f>' not specified/);
  });

  it("a checkpoint with only a SentencePiece tokenizer.model (liuhaotian's): its tokenizer.model and generation_config.json kept, <image> added for both tokenizers", () => {
    const dir = tmp(), src = path.join(dir, 'spm');
    const spm = path.join(__dirname, '..', 'fixtures', 'sentencepiece');
    fs.mkdirSync(src);
    fs.copyFileSync(path.join(spm, 'tokenizer.model'), path.join(src, 'tokenizer.model'));
    const words = new TextTokenizer(tokenizerJsonFromSentencePiece(src)).vocabSize;
    const model = VwLmm.create(tinyConfig(Math.ceil((words + 1) / 8) * 8, 0), 5);
    saveCheckpoint(path.join(dir, 'tmp'), model, {});
    model.dispose();
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(dir, 'tmp', f), path.join(src, f));
    // LLaVA's: what its generate uses (transformers falls back to 20 new tokens without max_length)
    const generation = '{"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096, "temperature": 0.9, "top_p": 0.6}\n';
    fs.writeFileSync(path.join(src, 'generation_config.json'), generation);
    // and its tokenizer_config.json as LLaVA's: no pad token (train.py sets the unk), right padding (for training)
    const llavaConfig = { tokenizer_class: 'LlamaTokenizer', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: null, padding_side: 'right', model_max_length: 2048 };
    fs.writeFileSync(path.join(src, 'tokenizer_config.json'), JSON.stringify(llavaConfig));
    for (const format of ['vwlmm', 'transformers']) {
      const out = path.join(dir, format);
      const r = cli('convert', '--checkpoint', src, '--out', out, '--format', format);
      expect(r.status, r.stderr).toBe(0);
      expect(fs.readFileSync(path.join(out, 'generation_config.json'), 'utf8'), format).toBe(generation);
      expect(fs.readFileSync(path.join(out, 'tokenizer.model')).equals(fs.readFileSync(path.join(src, 'tokenizer.model'))), format).toBe(true);
      expect(new TextTokenizer(path.join(out, 'tokenizer.json')).vocabSize).toBe(format === 'vwlmm' ? words : words + 1);
      // transformers' layout pads a batch for generate as llava-hf's tokenizer does: the unk, on the left
      expect(JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8')), format)
        .toEqual(format === 'vwlmm' ? llavaConfig : { ...llavaConfig, pad_token: '<unk>', padding_side: 'left' });
    }
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'transformers', 'added_tokens.json'), 'utf8'))).toEqual({ '<image>': words });
  });
});

