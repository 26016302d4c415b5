// LLaVA-layout checkpoints read as LLaVA's and transformers' own code reads them (src/model/checkpoint.ts):
// - only the tensors the model takes are read, each shape checked before its data is (a 1.6 KB torch.save view that
//   expands to gigabytes is refused by name or by shape, at once);
// - LLaVA's 'linear' projector is a plain nn.Linear: model.mm_projector.weight / .bias, both ways (vwlmm's earlier
//   model.mm_projector.0.* still loads);
// - a tensor the model has no place for is refused (transformers' unexpected keys), except the buffers real LLaVA
//   checkpoints carry (rotary_emb.inv_freq, the tower's position_ids) and a CLIP directory's text side; LLaVA-NeXT's
//   image_newline is refused by name;
// - model_type llava_mistral loads, llava_mpt is refused by name; tie_word_embeddings ties lm_head;
// - config.json holding null, dangling links and FIFOs give errors naming the file.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { noGrad, scope, Tensor } from '../../src';
import { HostTensor, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { TextTokenizer } from '../../src/data/tokenizer';
import { VwLmmConfig } from '../../src/model/config';
import { VwLmm } from '../../src/model/vwlmm';
import { tinyConfig } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';
import { torchSave, TorchTensorSpec } from './support/torch_save';

const tmp = tempDirs('ckstrict');
const TOWER = 'model.vision_tower.vision_tower.';

/** A saved tiny model: its directory, config.json (editable) and weights (editable), rewritten by `write`. */
function saved(config: VwLmmConfig = tinyConfig(40, 0), seed = 3) {
  const model = VwLmm.create(config, seed);
  const dir = path.join(tmp(), 'ckpt');
  saveCheckpoint(dir, model);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const weights = readSafetensors(path.join(dir, 'model.safetensors'));
  const write = (opts: { bin?: boolean; extra?: [string, TorchTensorSpec][] } = {}) => {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(json));
    fs.rmSync(path.join(dir, 'model.safetensors'), { force: true });
    fs.rmSync(path.join(dir, 'pytorch_model.bin'), { force: true });
    if (opts.bin) torchSave(path.join(dir, 'pytorch_model.bin'), [...[...weights].map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }] as [string, TorchTensorSpec]), ...(opts.extra ?? [])]);
    else writeSafetensors(path.join(dir, 'model.safetensors'), weights);
  };
  return { model, dir, json, weights, write };
}
const f32 = (shape: number[], fill = 0.5): HostTensor => ({ dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill) });
const values = (m: VwLmm, name: string) => Array.from(m.namedParameters().get(name)!.toArray());
const throwsQuickly = (fn: () => unknown, re: RegExp) => {
  const t0 = Date.now();
  expect(fn).toThrow(re);
  expect(Date.now() - t0).toBeLessThan(10_000); // a bound on the old copies (tens of seconds), not a timing;
};

describe("LLaVA's linear projector: model.mm_projector.weight / .bias", () => {
  const linear = (): VwLmmConfig => ({ ...tinyConfig(40, 0), projectorType: 'linear' });

  it('is named as LLaVA names its nn.Linear, saved and loaded so, and projects as one', () => {
    const { model, dir } = saved(linear());
    const names = [...model.namedParameters().keys()].filter((n) => n.includes('mm_projector'));
    expect(names).toEqual(['model.mm_projector.weight', 'model.mm_projector.bias']);
    expect([...readSafetensors(path.join(dir, 'model.safetensors')).keys()].filter((n) => n.includes('mm_projector')).sort()).toEqual(['model.mm_projector.bias', 'model.mm_projector.weight']);
    const { model: m } = loadCheckpoint(dir);
    for (const n of names) expect(values(m, n), n).toEqual(values(model, n));
    // y = x W^T + b
    const W = values(m, 'model.mm_projector.weight'), b = values(m, 'model.mm_projector.bias');
    const [Dout, Din] = m.namedParameters().get('model.mm_projector.weight')!.shape;
    const x = Float32Array.from({ length: 2 * Din }, (_, i) => Math.sin(i));
    const y = noGrad(() => scope(() => Array.from(m.model.mm_projector.forward(Tensor.fromArray(x, [2, Din])).toArray())));
    for (let r = 0; r < 2; r++) for (let o = 0; o < Dout; o++) {
      let s = b[o];
      for (let i = 0; i < Din; i++) s += x[r * Din + i] * W[o * Din + i];
      expect(y[r * Dout + o]).toBeCloseTo(s, 5);
    }
    m.dispose();
    model.dispose();
  });

  it("loads vwlmm's earlier name (model.mm_projector.0.*), and refuses both names at once", () => {
    const c = saved(linear());
    for (const k of ['weight', 'bias']) {
      c.weights.set(`model.mm_projector.0.${k}`, c.weights.get(`model.mm_projector.${k}`)!);
      c.weights.delete(`model.mm_projector.${k}`);
    }
    c.write();
    const { model: m } = loadCheckpoint(c.dir);
    expect(values(m, 'model.mm_projector.weight')).toEqual(values(c.model, 'model.mm_projector.weight'));
    m.dispose();
    c.weights.set('model.mm_projector.weight', c.weights.get('model.mm_projector.0.weight')!);
    c.write();
    expect(() => loadCheckpoint(c.dir)).toThrow(/tensors (model\.mm_projector\.0\.weight and model\.mm_projector\.weight|model\.mm_projector\.weight and model\.mm_projector\.0\.weight) both go into model\.mm_projector\.weight/);
    c.model.dispose();
  });

  it("mlp2x weights under a config without mm_projector_type (LLaVA's default: linear) are refused, not half-loaded", () => {
    const c = saved(); // mlp2x_gelu
    delete c.json.mm_projector_type;
    c.write();
    expect(() => loadCheckpoint(c.dir)).toThrow(/holds 2 tensors this model has no place for \(unexpected keys\): model\.mm_projector\.2\.(bias|weight), model\.mm_projector\.2\.(bias|weight); the config's mm_projector_type is 'linear' \(LLaVA's default: config\.json names none\)/);
    c.model.dispose();
  });
});

describe('tensors the model has no place for', () => {
  it('are refused by name (a few listed); image_newline as LLaVA-NeXT', () => {
    const c = saved();
    c.weights.set('model.layers.0.self_attn.q_proj.bias', f32([16]));
    c.weights.set('model.layers.7.mlp.up_proj.weight', f32([2, 2]));
    c.write();
    expect(() => loadCheckpoint(c.dir)).toThrow(/ckpt holds 2 tensors this model has no place for \(unexpected keys\): model\.layers\.0\.self_attn\.q_proj\.bias, model\.layers\.7\.mlp\.up_proj\.weight$/);
    c.weights.delete('model.layers.0.self_attn.q_proj.bias');
    c.weights.delete('model.layers.7.mlp.up_proj.weight');
    c.weights.set('model.image_newline', f32([16]));
    c.write();
    expect(() => loadCheckpoint(c.dir)).toThrow(/holds model\.image_newline, the separator of LLaVA-NeXT's image tiles: LLaVA-NeXT \(anyres\) is not supported/);
    c.model.dispose();
  });

  it("the buffers real LLaVA checkpoints carry load: rotary_emb.inv_freq, the tower's position_ids", () => {
    const c = saved();
    c.weights.set('model.layers.0.self_attn.rotary_emb.inv_freq', f32([4]));
    c.weights.set(`${TOWER}vision_model.embeddings.position_ids`, { dtype: 'int32', shape: [1, 26], data: Int32Array.from({ length: 26 }, (_, i) => i) });
    c.write();
    const { model: m } = loadCheckpoint(c.dir);
    expect(values(m, 'lm_head.weight')).toEqual(values(c.model, 'lm_head.weight'));
    m.dispose();
    c.model.dispose();
  });

  it('a .bin: an unused 1.6 KB stride-0 view of 20000 x 20000 is refused by name, a wanted one of the wrong shape by its shape, at once', () => {
    const c = saved();
    c.write({ bin: true, extra: [['junk', { shape: [20000, 20000], stride: [0, 0], data: new Float32Array(1) }]] });
    throwsQuickly(() => loadCheckpoint(c.dir), /holds 1 tensor this model has no place for \(unexpected keys\): junk/);
    const head = c.weights.get('lm_head.weight')!;
    c.weights.delete('lm_head.weight');
    c.write({ bin: true, extra: [['lm_head.weight', { shape: [20000, 20000], stride: [0, 0], data: new Float32Array(1) }]] });
    throwsQuickly(() => loadCheckpoint(c.dir), /torch checkpoint: .*pytorch_model\.bin: lm_head\.weight has shape \[20000, 20000\] but the model expects \[40, 16\]/);
    // a view the model does take, with the parameter's shape: read (here a stride-0 norm weight), next to old buffers
    c.weights.set('lm_head.weight', head);
    c.weights.delete('model.norm.weight');
    c.write({ bin: true, extra: [['model.norm.weight', { shape: [16], stride: [0], data: new Float32Array([1.25]) }], ['model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [4], data: new Float32Array(4) }]] });
    const { model: m } = loadCheckpoint(c.dir);
    expect(values(m, 'model.norm.weight')).toEqual(new Array(16).fill(1.25));
    expect(values(m, 'lm_head.weight')).toEqual(values(c.model, 'lm_head.weight'));
    m.dispose();
    c.model.dispose();
  });

  it("a separate CLIP tower directory: its text side, projections, logit_scale and position_ids are fine; anything else is refused", () => {
    const c = saved();
    const towerDir = path.join(path.dirname(c.dir), 'clip');
    fs.mkdirSync(towerDir);
    const tower = new Map<string, HostTensor>();
    for (const [n, t] of [...c.weights]) {
      if (!n.startsWith(TOWER)) continue;
      tower.set(n.slice(TOWER.length), t);
      c.weights.delete(n);
    }
    tower.set('vision_model.embeddings.position_ids', { dtype: 'int32', shape: [1, 26], data: new Int32Array(26) });
    tower.set('text_model.embeddings.position_ids', { dtype: 'int32', shape: [1, 8], data: new Int32Array(8) });
    tower.set('text_model.embeddings.token_embedding.weight', f32([10, 12]));
    tower.set('text_projection.weight', f32([12, 12]));
    tower.set('visual_projection.weight', f32([12, 12]));
    tower.set('logit_scale', f32([]));
    writeSafetensors(path.join(towerDir, 'model.safetensors'), tower);
    fs.writeFileSync(path.join(towerDir, 'config.json'), JSON.stringify({ model_type: 'clip_vision_model', ...(c.json.vision_config as object) }));
    delete c.json.vision_config;
    c.json.mm_vision_tower = towerDir;
    c.write();
    const { model: m } = loadCheckpoint(c.dir);
    const w = `${TOWER}vision_model.encoder.layers.1.mlp.fc1.weight`;
    expect(values(m, w)).toEqual(values(c.model, w));
    m.dispose();
    tower.set('vision_model.encoder.layers.9.mlp.fc1.weight', f32([16, 12]));
    writeSafetensors(path.join(towerDir, 'model.safetensors'), tower);
    expect(() => loadCheckpoint(c.dir)).toThrow(/the vision tower .*clip holds 1 tensor a CLIP vision tower of its config does not have: vision_model\.encoder\.layers\.9\.mlp\.fc1\.weight/);
    c.model.dispose();
  });

  it("transformers' layout: a name it maps that the model lacks is refused too; its position_ids buffer is fine", () => {
    const c = saved();
    c.model.dispose();
    const model = VwLmm.create(tinyConfig(40, 0), 4);
    const dir = path.join(tmp(), 'hf');
    saveCheckpoint(dir, model, { format: 'transformers', imageTokenIndex: 39 });
    const w = readSafetensors(path.join(dir, 'model.safetensors'));
    w.set('vision_tower.vision_model.embeddings.position_ids', { dtype: 'int32', shape: [1, 26], data: new Int32Array(26) });
    writeSafetensors(path.join(dir, 'model.safetensors'), w);
    loadCheckpoint(dir).model.dispose();
    w.set('language_model.model.layers.5.mlp.up_proj.weight', f32([24, 16]));
    writeSafetensors(path.join(dir, 'model.safetensors'), w);
    expect(() => loadCheckpoint(dir)).toThrow(/hf holds 1 tensor this model has no place for \(unexpected keys\): language_model\.model\.layers\.5\.mlp\.up_proj\.weight/);
    w.delete('language_model.model.layers.5.mlp.up_proj.weight');
    // two names of one weight (transformers' older and newer prefixes), and a weight stored as integers: the folder
    // and the file's own names said (they named neither)
    const norm = w.get('language_model.model.norm.weight')!;
    writeSafetensors(path.join(dir, 'model.safetensors'), new Map([...w, ['model.language_model.norm.weight', norm]]));
    expect(() => loadCheckpoint(dir)).toThrow(`checkpoint: ${dir} holds tensors language_model.model.norm.weight and model.language_model.norm.weight, two names of one weight (model.norm.weight)`);
    writeSafetensors(path.join(dir, 'model.safetensors'), new Map([...w, ['language_model.model.norm.weight', { dtype: 'int32', shape: norm.shape, data: new Int32Array(norm.shape[0]) }]]));
    expect(() => loadCheckpoint(dir)).toThrow(`loadCheckpoint: ${dir}: tensor language_model.model.norm.weight (the model's model.norm.weight) is int32, expected float32`);
    model.dispose();
  });
});

describe('configs', () => {
  it("model_type llava_mistral (LLaVA's LlavaMistralConfig) loads; llava_mpt is refused by name", () => {
    const c = saved();
    c.json.model_type = 'llava_mistral';
    c.json.architectures = ['LlavaMistralForCausalLM'];
    c.write();
    loadCheckpoint(c.dir).model.dispose();
    c.json.model_type = 'llava_mpt';
    c.json.architectures = ['LlavaMptForCausalLM'];
    c.write();
    expect(() => loadCheckpoint(c.dir)).toThrow(/config\.json: config: model_type 'llava_mpt' \(LLaVA's LlavaMptForCausalLM, an MPT base\) is not supported/);
    c.model.dispose();
  });

  it('tie_word_embeddings true without lm_head.weight: lm_head is the embedding, as transformers ties it', () => {
    const c = saved();
    c.weights.delete('lm_head.weight');
    c.json.tie_word_embeddings = true;
    c.write();
    const { model: m } = loadCheckpoint(c.dir);
    expect(values(m, 'lm_head.weight')).toEqual(values(c.model, 'model.embed_tokens.weight'));
    m.dispose();
    c.json.tie_word_embeddings = false;
    c.write();
    expect(() => loadCheckpoint(c.dir)).toThrow(/lacks 1 tensors, e\.g\. lm_head\.weight/);
    c.model.dispose();
  });

  it('config.json holding null or an array, a dangling or looping model.safetensors link, FIFOs: errors naming the file', () => {
    const c = saved();
    fs.writeFileSync(path.join(c.dir, 'config.json'), 'null');
    expect(() => loadCheckpoint(c.dir)).toThrow(/checkpoint: .*config\.json must hold a JSON object, got null/);
    fs.writeFileSync(path.join(c.dir, 'config.json'), '[1, 2]');
    expect(() => loadCheckpoint(c.dir)).toThrow(/config\.json must hold a JSON object, got an array/);
    c.write();
    if (process.platform === 'win32') return;
    const st = path.join(c.dir, 'model.safetensors');
    fs.rmSync(st);
    fs.symlinkSync(path.join(c.dir, 'gone.safetensors'), st);
    expect(() => loadCheckpoint(c.dir)).toThrow(/model\.safetensors: cannot open: a dangling symbolic link \(to .*gone\.safetensors, which does not exist\)/);
    fs.rmSync(st);
    fs.symlinkSync('model.safetensors', st);
    expect(() => loadCheckpoint(c.dir)).toThrow(/model\.safetensors: cannot open: a symbolic link loop/);
    fs.rmSync(st);
    if (spawnSync('mkfifo', [st]).status === 0) {
      throwsQuickly(() => loadCheckpoint(c.dir), /model\.safetensors: cannot open: a named pipe \(FIFO\), not a regular file/);
      fs.rmSync(st);
      c.write();
      fs.rmSync(path.join(c.dir, 'config.json'));
      spawnSync('mkfifo', [path.join(c.dir, 'config.json')]);
      throwsQuickly(() => loadCheckpoint(c.dir), /config\.json: cannot open: a named pipe \(FIFO\), not a regular file/);
    }
    c.model.dispose();
  });
});

describe("the tokenizer's own files", () => {
  it('travel with its tokenizer.json into a saved checkpoint: a reloaded tokenizer keeps the eos_token its config names', () => {
    // transformers' files for a Mistral-like tokenizer whose config names [/INST] (id 4) its EOS, not </s>
    const src = path.join(__dirname, '..', 'fixtures', 'sentencepiece_mistral', 'eos_inst', 'tokenizer.json');
    const before = new TextTokenizer(src);
    expect([before.eosToken, before.eosId]).toEqual(['[/INST]', 4]);
    const model = VwLmm.create(tinyConfig(before.vocabSize, 0), 3);
    const dir = path.join(tmp(), 'ckpt');
    try {
      saveCheckpoint(dir, model, { tokenizer: src });
    } finally {
      model.dispose();
    }
    expect(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')).toBe(fs.readFileSync(path.join(path.dirname(src), 'tokenizer_config.json'), 'utf8'));
    const after = new TextTokenizer(path.join(dir, 'tokenizer.json'));
    expect([after.eosToken, after.eosId]).toEqual(['[/INST]', 4]); // was </s> (2): the config stayed behind
  });
});

describe('a training run\'s folder given for its checkpoint', () => {
  it('is named, with where its checkpoint is (train\'s --out, the demo\'s --out)', () => {
    const model = VwLmm.create(tinyConfig(40, 0), 3);
    const run = tmp(), demo = tmp();
    try {
      saveCheckpoint(path.join(run, 'checkpoint'), model);
      for (const d of ['vw', 'llava']) saveCheckpoint(path.join(demo, d, 'checkpoint'), model);
    } finally {
      model.dispose();
    }
    expect(() => loadCheckpoint(run)).toThrow(`checkpoint: ${path.join(run, 'config.json')} does not exist: ${run} is a training run's folder, its checkpoint is ${path.join(run, 'checkpoint')}`);
    expect(() => loadCheckpoint(demo)).toThrow(`its checkpoints are ${path.join(demo, 'vw', 'checkpoint')} and ${path.join(demo, 'llava', 'checkpoint')}`);
    expect(() => loadCheckpoint(tmp())).toThrow(/config\.json does not exist$/);
  });
});
