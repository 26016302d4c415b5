// Corrupt inputs give clear errors, never a crash or a silently wrong model: checkpoints whose safetensors
// are truncated or garbled (header, offsets, dtype, shapes, data bytes: our checkpoints carry a sha256 of
// the tensor data), config.json keys missing or of the wrong type (named), a tokenizer that does not belong
// to the checkpoint (both sizes named), images truncated or not images, a JSONL line that is not JSON
// (a counted skip with file:line; --strict fails), a damaged trainer state.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { checkTokenizerVocab, loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { F, noGrad, Tensor } from '../../src';
import { TextTokenizer } from '../../src/data/tokenizer';
import { loadFileBatch, prepareFile } from '../../src/train/from_file';
import { readTrainerState, Trainer } from '../../src/train/trainer';
import { cli, tinyConfig, tinyData, tinyStages, writeCliFixture } from './support/tiny';

const tmp = tempDirs('corrupt');

/** The header object and data section of a safetensors file. */
function splitSafetensors(file: string): { header: Record<string, any>; data: Buffer } {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')), data: b.subarray(8 + n) };
}
function joinSafetensors(file: string, header: Record<string, unknown>, data: Buffer): void {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, data]));
}

describe('corrupt checkpoints', () => {
  const { tokenizer, json } = tinyData(2);
  let good: string;
  beforeAll(() => {
    good = path.join(tmp(), 'good');
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 1);
    saveCheckpoint(good, m, { tokenizer: json });
    m.dispose();
  });
  /** A copy of the good checkpoint with model.safetensors (or config.json) changed by `edit`. */
  const broken = (edit: (file: string) => void, name = 'model.safetensors') => {
    const d = path.join(tmp(), 'ck');
    fs.cpSync(good, d, { recursive: true });
    edit(path.join(d, name));
    return d;
  };
  const first = (h: Record<string, any>) => Object.keys(h).filter((k) => k !== '__metadata__').sort()[0];

  const safetensorsCases: [string, (f: string) => void, RegExp][] = [
    ['truncated', (f) => fs.truncateSync(f, fs.statSync(f).size - 100), /data_offsets .* out of range: the data section has \d+ bytes \(truncated file\?\)/],
    ['cut inside the header', (f) => fs.truncateSync(f, 40), /header length \d+ runs beyond the end of the file \(40 bytes/],
    ['shorter than 8 bytes', (f) => fs.truncateSync(f, 5), /file is 5 bytes, shorter than the 8-byte header length field/],
    ['garbled header', (f) => { const b = fs.readFileSync(f); b.write('#@!garbage', 8); fs.writeFileSync(f, b); }, /header is not valid JSON/],
    ['header length garbled', (f) => { const b = fs.readFileSync(f); b.writeBigUInt64LE(2n ** 62n, 0); fs.writeFileSync(f, b); }, /header length \d+ runs beyond the end of the file/],
    ['offsets out of range', (f) => { const { header, data } = splitSafetensors(f); header[first(header)].data_offsets[1] = data.length + 4; joinSafetensors(f, header, data); }, /data_offsets \[\d+, \d+\] out of range/],
    ['overlapping tensors', (f) => {
      const { header, data } = splitSafetensors(f);
      const names = Object.keys(header).filter((k) => k !== '__metadata__').sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
      const [a, b] = [header[names[0]], header[names[1]]];
      const len = b.data_offsets[1] - b.data_offsets[0];
      b.data_offsets = [a.data_offsets[1] - 4, a.data_offsets[1] - 4 + len];
      joinSafetensors(f, header, data);
    }, /tensors '.*' \[\d+, \d+\) and '.*' \[\d+, \d+\) overlap/],
    ['unknown dtype', (f) => { const { header, data } = splitSafetensors(f); header[first(header)].dtype = 'F12'; joinSafetensors(f, header, data); }, /unknown dtype 'F12'/],
    ['shape and bytes disagree', (f) => { const { header, data } = splitSafetensors(f); header[first(header)].shape = [3, 5]; joinSafetensors(f, header, data); }, /span \d+ bytes but shape \[3, 5\] x F32 \(4 bytes\) needs 60/],
    ['flipped data bytes (well-formed file)', (f) => { const b = fs.readFileSync(f); b[b.length - 9] ^= 0x40; fs.writeFileSync(f, b); }, /does not match its checksum .* the file is corrupt/],
    ['a tensor of the wrong shape for the config', (f) => {
      const { header, data } = splitSafetensors(f);
      delete header.__metadata__; // no checksum: a consistent file, but not this model's
      const k = 'model.norm.weight', [b, e] = header[k].data_offsets;
      const keep = Object.fromEntries(Object.entries(header).filter(([n]) => n !== k));
      joinSafetensors(f, { ...keep, [k]: { dtype: 'F32', shape: [(e - b) / 8, 2], data_offsets: [b, e] } }, data);
    }, /model\.norm\.weight has shape \[8, 2\] but the model expects \[16\]/],
    ['an extra tensor of an empty name', (f) => {
      const { header, data } = splitSafetensors(f);
      delete header.__metadata__;
      joinSafetensors(f, { ...header, '': { dtype: 'F32', shape: [0], data_offsets: [data.length, data.length] } }, data);
    }, /holds 1 tensor this model has no place for \(unexpected keys\): ""$/],
  ];
  for (const [what, edit, msg] of safetensorsCases) {
    it(`model.safetensors ${what}: a clear error naming the file`, () => {
      const d = broken(edit);
      let err: Error | null = null;
      try {
        loadCheckpoint(d).model.dispose();
      } catch (e) {
        err = e as Error;
      }
      expect(err, what).not.toBeNull();
      expect(err!.message).toMatch(msg);
      if (!/wrong shape|empty name/.test(what)) expect(err!.message).toContain(path.join(d, 'model.safetensors'));
    });
  }

  const configCases: [string, (c: Record<string, any>) => void, RegExp][] = [
    ['missing vocab_size', (c) => delete c.vocab_size, /vocab_size is missing/],
    ['hidden_size as a string', (c) => (c.hidden_size = '16'), /hidden_size must be a number, got "16"/],
    ['num_hidden_layers not an integer', (c) => (c.num_hidden_layers = 1.5), /num_hidden_layers must be a positive integer, got 1.5/],
    ['vm_pif as a string', (c) => (c.vm_pif = 'false'), /vm_pif must be true or false, got "false"/],
    ['image_mean of two numbers', (c) => (c.image_mean = [0.5, 0.5]), /image_mean must be a list of 3 numbers, got \[0.5,0.5\]/],
    ['mm_vision_select_layer not an integer', (c) => (c.mm_vision_select_layer = -1.5), /mm_vision_select_layer must be an integer, got -1.5/],
    ['image_aspect_ratio anyres', (c) => (c.image_aspect_ratio = 'anyres'), /image_aspect_ratio 'anyres' is not supported \(pad \| square\)/],
    ['mm_use_im_start_end true', (c) => (c.mm_use_im_start_end = true), /mm_use_im_start_end true \(image start and end tokens around the features, as LLaVA v0 used them\) is not supported/],
    ['tokenizer_model_max_length 0', (c) => (c.tokenizer_model_max_length = 0), /tokenizer_model_max_length must be >= 1, got 0/],
    ['vm_weight as a string', (c) => (c.vm_weight = '1'), /vm_weight must be a number, got "1"/],
    ['vision_config.patch_size missing', (c) => delete c.vision_config.patch_size, /CLIP vision config: patch_size is missing/],
    ['image_size unlike the tower\'s', (c) => (c.image_size = 64), /image_size 64 \(the preprocessing\) differs from vision_config.image_size 75/],
    ['num_key_value_heads not dividing the heads', (c) => (c.num_attention_heads = 2, c.num_key_value_heads = 3), /llm.numHeads 2 must be a multiple of llm.numKvHeads 3/],
  ];
  for (const [what, edit, msg] of configCases) {
    it(`config.json with ${what}: an error naming the key and the file`, () => {
      const d = broken((f) => {
        const c = JSON.parse(fs.readFileSync(f, 'utf8'));
        edit(c);
        fs.writeFileSync(f, JSON.stringify(c));
      }, 'config.json');
      expect(() => loadCheckpoint(d)).toThrow(msg);
      expect(() => loadCheckpoint(d)).toThrow(path.join(d, 'config.json'));
    });
  }

  it('weights of no tensors, and a transformers config without text_config, say so (not "the vision tower is not in ...")', () => {
    const emptyIndex = broken((f) => {
      fs.rmSync(f);
      fs.writeFileSync(path.join(path.dirname(f), 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: {} }));
    });
    expect(() => loadCheckpoint(emptyIndex)).toThrow(`checkpoint: the weights in ${emptyIndex} hold no tensors (model.safetensors.index.json)`);
    // transformers' layout (vision_config, the LLM's sizes in text_config) with text_config gone, or not an object
    const hf = path.join(__dirname, '..', 'fixtures', 'tiny_llava', 'hf');
    const hfConfig = JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [text, said] of [[undefined, 'missing'], ['x', 'not an object ("x")']] as const) {
      const d = path.join(tmp(), 'hf');
      fs.cpSync(hf, d, { recursive: true });
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...hfConfig, text_config: text }));
      expect(() => loadCheckpoint(d)).toThrow(`checkpoint: ${path.join(d, 'config.json')} is model_type 'llava' (transformers' LlavaForConditionalGeneration) but its text_config is ${said}`);
    }
  });

  it('config.json that is not JSON, trainer_state.json and optimizer.safetensors damaged', () => {
    expect(() => loadCheckpoint(broken((f) => fs.writeFileSync(f, '{"model_type": "llava",'), 'config.json'))).toThrow(/config.json is not valid JSON/);
    const out = tmp();
    const { samples, makeBatch } = tinyData(6);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 1);
    new Trainer(m, tinyStages(makeBatch, samples.length, 1), { seed: 1, outDir: out, checkpointFiles: { tokenizer: json } }).run();
    m.dispose();
    const ck = path.join(out, 'checkpoint');
    const opt = path.join(ck, 'optimizer.safetensors');
    fs.truncateSync(opt, fs.statSync(opt).size - 8);
    expect(() => readTrainerState(ck)).toThrow(/optimizer.safetensors: .*out of range.*truncated file/);
    fs.writeFileSync(path.join(ck, 'trainer_state.json'), '{"stage": 0, "step": "three"');
    expect(() => readTrainerState(ck)).toThrow(/trainer_state.json is not valid JSON/);
    fs.writeFileSync(path.join(ck, 'trainer_state.json'), '{"stage": 0, "step": "three", "globalStep": 3, "seed": 1}');
    expect(() => readTrainerState(ck)).toThrow(/'step' must be a non-negative integer, got "three"/);
  });
});

describe('tokenizer that does not belong to the checkpoint', () => {
  it('checkTokenizerVocab: larger, or smaller beyond a padding, names both sizes; padding is accepted', () => {
    expect(() => checkTokenizerVocab(40, 30, 'tok.json')).toThrow(/tok.json has a vocabulary of 40 tokens but the checkpoint's vocab_size is 30: its ids would run past the embedding/);
    expect(() => checkTokenizerVocab(20, 30, 'tok.json')).toThrow(/vocabulary of 20 tokens but the checkpoint's vocab_size is 30/);
    expect(() => checkTokenizerVocab(32002, 32064, 'tok.json')).not.toThrow(); // llava-hf: padded to a multiple of 64
    expect(() => checkTokenizerVocab(77, 77, 'tok.json')).not.toThrow();
  });

  it('the CLI refuses it (exit 2, both numbers)', () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 1, vocabDelta: -3 });
    const vocab = new TextTokenizer(fx.tokenizer).vocabSize;
    const img = path.join(fx.imageFolder, 'images', fs.readdirSync(path.join(fx.imageFolder, 'images'))[0]);
    const r = cli('generate', '--checkpoint', fx.init, '--image', img, '--prompt', 'What shape is the red object?', '--max-new-tokens', '2');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`has a vocabulary of ${vocab} tokens but the checkpoint's vocab_size is ${vocab - 3}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('broken data files', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let dir: string;
  let jsonl: string;
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir, { images: 2 });
    // JSONL with a line cut in the middle (line 3) and records pointing at a truncated PNG and a text file
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as Record<string, unknown>[];
    const imgs = path.join(fx.imageFolder, 'images');
    const png = fs.readFileSync(path.join(imgs, fs.readdirSync(imgs)[0]));
    fs.writeFileSync(path.join(imgs, 'truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
    fs.writeFileSync(path.join(imgs, 'notes.png'), 'this is not an image\n');
    const lines = recs.slice(0, 8).map((r) => JSON.stringify(r));
    lines[2] = lines[2].slice(0, 25);
    lines.push(JSON.stringify({ ...recs[0], id: 'cut-png', image: 'images/truncated.png' }), JSON.stringify({ ...recs[1], id: 'text-png', image: 'images/notes.png' }));
    jsonl = path.join(fx.imageFolder, 'train.jsonl');
    fs.writeFileSync(jsonl, lines.join('\n') + '\n');
  });

  it('prepareFile: the broken line and the two broken images are skipped and counted with their reasons', async () => {
    const ck = loadCheckpoint(fx.init);
    const p = await prepareFile(ck.model, new TextTokenizer(fx.tokenizer), jsonl, fx.imageFolder, false);
    expect(p.samples).toHaveLength(7);
    expect(p.skipped).toHaveLength(3);
    expect(p.skipped[0]).toMatchObject({ line: 3 });
    expect(p.skipped[0].reason).toMatch(/malformed JSON/);
    expect(p.skipped.find((s) => s.id === 'cut-png')!.reason).toMatch(/truncated.png could not be read: loadImage: cannot decode/);
    expect(p.skipped.find((s) => s.id === 'text-png')!.reason).toMatch(/notes.png could not be read: loadImage: cannot decode .*not a supported image/);
    await expect(prepareFile(ck.model, new TextTokenizer(fx.tokenizer), jsonl.replace('train.jsonl', 'img.jsonl'), fx.imageFolder, true)).rejects.toThrow(/cannot read/);
    const imagesOnly = path.join(fx.imageFolder, 'img.jsonl');
    fs.writeFileSync(imagesOnly, fs.readFileSync(jsonl, 'utf8').split('\n').slice(8).join('\n'));
    await expect(prepareFile(ck.model, new TextTokenizer(fx.tokenizer), imagesOnly, fx.imageFolder, true)).rejects.toThrow(/record 'cut-png': loadImage: cannot decode '.*truncated.png'.*\(--strict\)/);
    ck.model.dispose();
  });

  it('images are decoded per batch (none kept); one broken after preparation is an error naming it', async () => {
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    const p = await prepareFile(ck.model, tok, jsonl, fx.imageFolder, false);
    expect(p.imagePaths.length).toBeGreaterThan(0);
    const withImage = p.samples.findIndex((x) => x.image !== null);
    const b = await loadFileBatch(ck.model, tok, p, [withImage]);
    expect(b.pixelValues!.length).toBe(3 * ck.config.image.size ** 2);
    const victim = p.imagePaths[p.samples[withImage].image!];
    const copy = path.join(dir, 'victim.png');
    fs.copyFileSync(victim, copy);
    try {
      fs.writeFileSync(victim, 'garbage');
      await expect(loadFileBatch(ck.model, tok, p, [withImage])).rejects.toThrow(/could not be read during training \(it could when the file was prepared: changed on disk\?\): loadImage: cannot decode/);
    } finally {
      fs.copyFileSync(copy, victim);
    }
    ck.model.dispose();
  });

  it('nothing trainable: the reasons counted, with the first example of each', () => {
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as Record<string, unknown>[];
    const lines = recs.slice(0, 3).map((r, k) => JSON.stringify({ ...r, image: `images/missing${k}.png` }));
    lines.splice(1, 0, '{"id": "cut", "conversations": [');
    const bad = path.join(fx.imageFolder, 'nothing.jsonl');
    fs.writeFileSync(bad, lines.join('\n') + '\n');
    const r = cli('train', '--init', fx.init, '--data', bad, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'nothing'), '--steps', '1');
    expect(r.status).toBe(2);
    const missing0 = path.join(fx.imageFolder, 'images', 'missing0.png');
    expect(r.stderr).toContain(`no trainable samples in ${bad}: 4 skipped: 3 image file not found (first: ${missing0}); 1 malformed JSON (first: ${bad}:2); 0 tokenization mismatches`);
    // too few left for one step: the error says what was skipped and why, not only the count
    const few = path.join(fx.imageFolder, 'few.jsonl');
    fs.writeFileSync(few, [JSON.stringify(recs[0]), JSON.stringify({ ...recs[1], image: 'images/missing.png' })].join('\n') + '\n');
    const f = cli('train', '--init', fx.init, '--data', few, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'few'), '--steps', '1', '--batch-size', '2');
    expect(f.status).toBe(2);
    expect(f.stderr).toContain(`but the stage has 1: some would appear twice in one step (lower the batch size) (1 samples of ${few}: 1 skipped: 1 image file not found (first: ${path.join(fx.imageFolder, 'images', 'missing.png')}); 0 tokenization mismatches)`);
  });

  it('weights that came in non-finite: each skipped step names them, and a run whose every step was skipped exits 1', () => {
    const ck = loadCheckpoint(fx.init);
    const w = ck.model.lm_head.weight, vals = w.toArray() as Float32Array;
    vals[25] = NaN;
    noGrad(() => F.writeAt(w, Tensor.fromArray(vals, w.shape), 0, 0));
    const nan = path.join(dir, 'nan-init');
    saveCheckpoint(nan, ck.model, { tokenizer: fx.tokenizer });
    ck.model.dispose();
    const r = cli('train', '--init', nan, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'nan-run'), '--steps', '2', '--batch-size', '2');
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain("the model's weights hold non-finite values (lm_head.weight): no step can train them away (check the checkpoint the run started from)");
    expect(r.stderr).toContain('vwlmm: every step of this run (2) had a non-finite loss or gradient and was skipped: the weights were not updated');
    // finite weights that an update of this run broke (a learning rate of 1e38): the message does not blame the input alone
    const blown = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'blown'), '--steps', '3', '--batch-size', '2', '--lr', '1e38', '--warmup-ratio', '0', '--max-grad-norm', '0');
    expect(blown.stderr).toMatch(/no step can train them away \(they came in so, or one of this run's \d+ updates? made them so \(a learning rate too large\?\): check the checkpoint the run started from, then the learning rate\)/);
  });

  it('vwlmm train names every record it leaves out by where it stands, tokenization mismatches too', () => {
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { id: string; image: string; conversations: { from: string; value: string }[] }[];
    const [a, b] = recs;
    const odd = [
      a, b,
      { ...a, id: 'humanonly', conversations: [a.conversations[0]] }, // ends with a question: nothing to learn
      { ...a, id: 'emptyanswer', conversations: [a.conversations[0], { from: 'gpt', value: '' }] },
      { ...b, id: 'b', image: 'images/missing.png' }, // b's id again: only its position tells it apart
    ];
    const file = path.join(fx.imageFolder, 'odd.json');
    fs.writeFileSync(file, JSON.stringify(odd));
    const r = cli('train', '--init', fx.init, '--data', file, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'odd'), '--steps', '1', '--batch-size', '2');
    expect(r.status, r.stderr).toBe(0);
    // the two mismatches have an image: trained as LLaVA does (labels ignored), their patches' KL as VW-LMM's code does
    expect(r.stdout).toMatch(/on 2 samples \(0\.5 epochs of the 4\) .* skipped 1 records, 2 tokenization mismatches/);
    expect(r.stdout).toContain(`skipped ${file}[4] (record 'b'): image `);
    expect(r.stdout).toContain(`tokenization mismatch ${file}[2] (record 'humanonly') (trained with every label ignored, as LLaVA does: its image for the KL): `);
    expect(r.stdout).toContain(`tokenization mismatch ${file}[3] (record 'emptyanswer') (trained with every label ignored`);
    // contradictory and out-of-range options
    const both = cli('train', '--init', fx.init, '--data', file, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'odd'), '--resume', '--overwrite-output-dir');
    expect(both.status).toBe(2);
    expect(both.stderr).toContain('--resume continues the run in --out and --overwrite-output-dir starts it over: give one');
    const lr = cli('train', '--init', fx.init, '--data', file, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'lr'), '--lr', '1e39');
    expect(lr.status).toBe(2);
    expect(lr.stderr).toContain('--lr must be finite in float32 (at most 3.4e38), got 1e39');
    expect(fs.existsSync(path.join(dir, 'lr'))).toBe(false);
    // options checked past the parser (--device, --dtype) are checked before --out is made too
    const dev = cli('train', '--init', fx.init, '--data', file, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'dev'), '--device', 'gpu');
    expect(dev.status).toBe(2);
    expect(dev.stderr).toMatch(/--device/);
    expect(fs.existsSync(path.join(dir, 'dev'))).toBe(false);
  });

  it('vwlmm train reports the skipped line as file:line; --strict fails naming it', () => {
    const out = path.join(dir, 'out');
    const r = cli('train', '--init', fx.init, '--data', jsonl, '--image-folder', fx.imageFolder, '--out', out, '--steps', '2', '--batch-size', '2');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/skipped 3 records/);
    expect(r.stdout).toContain(`skipped ${jsonl}:3: malformed JSON`);
    const again = cli('train', '--init', fx.init, '--data', jsonl, '--image-folder', fx.imageFolder, '--out', out, '--steps', '2', '--batch-size', '2', '--strict');
    expect(again.status).toBe(2); // the first run's checkpoint is not overwritten without being asked
    expect(again.stderr).toContain(`--out ${out} already holds a training run (checkpoint/ or metrics.jsonl): --resume continues it, --overwrite-output-dir starts over in it`);
    const s = cli('train', '--init', fx.init, '--data', jsonl, '--image-folder', fx.imageFolder, '--out', out, '--steps', '2', '--batch-size', '2', '--strict', '--overwrite-output-dir');
    expect(s.status).toBe(2);
    expect(s.stderr).toContain(`${jsonl}:3: malformed JSON`);
    expect(s.stderr).not.toMatch(/\n\s+at /);
    const both = cli('train', '--init', fx.init, '--data', jsonl, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'both'), '--steps', '2', '--epochs', '2');
    expect(both.status).toBe(2);
    expect(both.stderr).toContain("--steps and --epochs both set the run's length: give one");
  });
});
