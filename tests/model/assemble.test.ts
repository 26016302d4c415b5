// A LLaVA / VW-LMM made of its parts, as LLaVA's train.py builds one before stage 1 (assembleLlava, `vwlmm init --llm
// --vision-tower`): transformers' tiny LlamaForCausalLM and CLIPVisionModel (tests/fixtures/tiny_llama, tiny_clip: the
// transformers parity of both is tests/nn/hf_parity.test.ts) loaded bit for bit, the projector as torch draws a new
// nn.Linear or from a trained mm_projector file, the vm_head as transformers draws a missing weight; a saved checkpoint
// of it loads back; wrong parts are refused by name.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { HostTensor, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { assembleLlava, hubCacheFolder, hubCacheRoot, loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { tempDirs } from '../support/tmp';
import { cli } from '../train/support/tiny';
import { torchSave } from './support/torch_save';

const tmp = tempDirs('assemble');
const fixtures = path.join(__dirname, '..', 'fixtures');
const llm = path.join(fixtures, 'tiny_llama'), tower = path.join(fixtures, 'tiny_clip');
const values = (m: { namedParameters(): Map<string, { toArray(): ArrayLike<number> }> }, n: string) => Array.from(m.namedParameters().get(n)!.toArray());

describe('assembleLlava', () => {
  it("loads the LLM's and the tower's every weight, draws the projector as torch's nn.Linear and the vm_head as transformers", () => {
    const { model, config } = assembleLlava({ llm, visionTower: tower, vmWeight: 1, seed: 4 });
    try {
      expect(config.projectorType).toBe('mlp2x_gelu');
      expect(config.selectLayer).toBe(-2);
      expect(config.template).toBe('vicuna_v1');
      expect(config.vmWeight).toBe(1);
      const lw = readSafetensors(path.join(llm, 'model.safetensors')), tw = readSafetensors(path.join(tower, 'model.safetensors'));
      for (const [n, t] of lw) expect(values(model, n), n).toEqual(Array.from(t.data));
      for (const [n, t] of tw) if (!n.endsWith('position_ids')) expect(values(model, `model.vision_tower.vision_tower.${n}`), n).toEqual(Array.from(t.data));
      // the projector: U(-1/sqrt(in), 1/sqrt(in)) per layer (in 32 then 32 here), weights and biases
      const params = model.namedParameters();
      for (const n of ['model.mm_projector.0.weight', 'model.mm_projector.0.bias', 'model.mm_projector.2.weight', 'model.mm_projector.2.bias']) {
        const v = values(model, n), bound = 1 / Math.sqrt(32);
        expect(Math.max(...v.map(Math.abs))).toBeLessThanOrEqual(bound);
        expect(Math.max(...v.map(Math.abs))).toBeGreaterThan(0.8 * bound); // uniform over the range, not N(0, 0.02^2)
        expect(new Set(v).size).toBe(v.length);
      }
      expect(params.get('model.mm_projector.0.weight')!.shape).toEqual([32, 32]);
      const vm = values(model, 'vm_head.weight'), sd = Math.sqrt(vm.reduce((a, x) => a + x * x, 0) / vm.length);
      expect(params.get('vm_head.weight')!.shape).toEqual([61, 32]);
      expect(Math.abs(sd - 0.02)).toBeLessThan(0.004); // 1952 draws of N(0, 0.02^2)
      // the same seed draws the same parts; another seed others
      const again = assembleLlava({ llm, visionTower: tower, vmWeight: 1, seed: 4 }), other = assembleLlava({ llm, visionTower: tower, vmWeight: 1, seed: 5 });
      expect(values(again.model, 'model.mm_projector.0.weight')).toEqual(values(model, 'model.mm_projector.0.weight'));
      expect(values(other.model, 'model.mm_projector.0.weight')).not.toEqual(values(model, 'model.mm_projector.0.weight'));
      again.model.dispose();
      other.model.dispose();
      // saved, it loads back as it is (the tower embedded: neither part's directory needed)
      const dir = path.join(tmp(), 'ckpt');
      saveCheckpoint(dir, model);
      const back = loadCheckpoint(dir);
      for (const n of params.keys()) expect(values(back.model, n), n).toEqual(values(model, n));
      expect(back.config.vmWeight).toBe(1);
      back.model.dispose();
    } finally {
      model.dispose();
    }
  });

  it("takes a trained projector (LLaVA's pretrain_mm_mlp_adapter), plain LLaVA without a vm_head, pad and a linear projector", () => {
    const dir = tmp();
    const w = (shape: number[], k: number): HostTensor => ({ dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 7 + k) % 13) / 13 - 0.5) });
    const file = path.join(dir, 'mm_projector.safetensors');
    writeSafetensors(file, new Map([['model.mm_projector.0.weight', w([32, 32], 1)], ['model.mm_projector.0.bias', w([32], 2)], ['model.mm_projector.2.weight', w([32, 32], 3)], ['model.mm_projector.2.bias', w([32], 4)]]));
    const { model, config } = assembleLlava({ llm, visionTower: tower, projector: file, imageAspect: 'pad' });
    try {
      expect(config.vmWeight).toBe(0);
      expect(config.image.aspect).toBe('pad');
      expect(model.namedParameters().has('vm_head.weight')).toBe(false);
      expect(values(model, 'model.mm_projector.2.weight')).toEqual(Array.from(w([32, 32], 3).data));
    } finally {
      model.dispose();
    }
    // LLaVA's own file: torch.save of the adapter's state dict (read by the restricted unpickler)
    const bin = path.join(dir, 'mm_projector.bin');
    torchSave(bin, [...readSafetensors(file)].map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }]));
    const fromBin = assembleLlava({ llm, visionTower: tower, projector: bin });
    expect(values(fromBin.model, 'model.mm_projector.0.bias')).toEqual(Array.from(w([32], 2).data));
    fromBin.model.dispose();
    // a whole CLIPModel directory (openai/clip-vit-large-patch14-336 is one): its vision side, the text side left out
    const clip = tmp();
    const tw = readSafetensors(path.join(tower, 'model.safetensors'));
    fs.writeFileSync(path.join(clip, 'config.json'), JSON.stringify({ model_type: 'clip', architectures: ['CLIPModel'], vision_config: JSON.parse(fs.readFileSync(path.join(tower, 'config.json'), 'utf8')), text_config: { hidden_size: 8 } }));
    writeSafetensors(path.join(clip, 'model.safetensors'), new Map([...tw, ['text_model.embeddings.token_embedding.weight', w([5, 8], 0)], ['logit_scale', w([1], 0)], ['visual_projection.weight', w([16, 32], 0)]]));
    const whole = assembleLlava({ llm, visionTower: clip });
    expect(values(whole.model, 'model.vision_tower.vision_tower.vision_model.post_layernorm.weight')).toEqual(Array.from(tw.get('vision_model.post_layernorm.weight')!.data));
    whole.model.dispose();
    const linear = assembleLlava({ llm, visionTower: tower, projectorType: 'linear' });
    expect([...linear.model.namedParameters().keys()].filter((n) => n.includes('mm_projector'))).toEqual(['model.mm_projector.weight', 'model.mm_projector.bias']);
    linear.model.dispose();
    // a projector file of the other type, or with a tensor that is not the projector's, is refused by name
    expect(() => assembleLlava({ llm, visionTower: tower, projector: file, projectorType: 'linear' })).toThrow(/mm_projector\.safetensors holds 2 tensors the linear projector has no place for: model\.mm_projector\.2\.bias, model\.mm_projector\.2\.weight \(its parameters are model\.mm_projector\.weight, model\.mm_projector\.bias: is the file another mm_projector_type's\?\)/);
    const extra = path.join(dir, 'extra.safetensors');
    writeSafetensors(extra, new Map([...readSafetensors(file), ['model.embed_tokens.weight', w([61, 32], 0)]]));
    expect(() => assembleLlava({ llm, visionTower: tower, projector: extra })).toThrow(/extra\.safetensors holds 1 tensor the mlp2x_gelu projector has no place for: model\.embed_tokens\.weight/);
  });

  it('refuses parts of the wrong kind, and an LLM missing weights, naming them', () => {
    expect(() => assembleLlava({ llm: tower, visionTower: tower })).toThrow(/tiny_clip\/config\.json is model_type 'clip_vision_model', not a LLaMA or Mistral language model/);
    expect(() => assembleLlava({ llm, visionTower: llm })).toThrow(/tiny_llama\/config\.json is model_type 'llama', not a CLIP model/);
    const cut = tmp();
    fs.copyFileSync(path.join(llm, 'config.json'), path.join(cut, 'config.json'));
    writeSafetensors(path.join(cut, 'model.safetensors'), new Map([...readSafetensors(path.join(llm, 'model.safetensors'))].filter(([n]) => n !== 'model.norm.weight')));
    expect(() => assembleLlava({ llm: cut, visionTower: tower })).toThrow(/lacks 1 tensors, e\.g\. model\.norm\.weight/);
    // tie_word_embeddings without lm_head.weight: lm_head is the embedding, as transformers ties it
    const tiedDir = tmp();
    fs.writeFileSync(path.join(tiedDir, 'config.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(llm, 'config.json'), 'utf8')), tie_word_embeddings: true }));
    const lw = readSafetensors(path.join(llm, 'model.safetensors'));
    writeSafetensors(path.join(tiedDir, 'model.safetensors'), new Map([...lw].filter(([n]) => n !== 'lm_head.weight')));
    const tied = assembleLlava({ llm: tiedDir, visionTower: tower });
    expect(values(tied.model, 'lm_head.weight')).toEqual(Array.from(lw.get('model.embed_tokens.weight')!.data));
    tied.model.dispose();
    // without the tie, the same file lacks lm_head
    fs.writeFileSync(path.join(tiedDir, 'config.json'), fs.readFileSync(path.join(llm, 'config.json')));
    expect(() => assembleLlava({ llm: tiedDir, visionTower: tower })).toThrow(/lacks 1 tensors, e\.g\. lm_head\.weight/);
  });
});

describe('vwlmm init --llm --vision-tower', () => {
  it('writes the assembled checkpoint with the tokenizer given, which then loads', () => {
    const dir = tmp(), out = path.join(dir, 'init');
    // a word-level tokenizer of 61 entries for the tiny LLM's vocabulary
    const vocab = Object.fromEntries(['<unk>', '<s>', '</s>', ...Array.from({ length: 58 }, (_, i) => `w${i}`)].map((t, i) => [t, i]));
    const tok = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(tok, JSON.stringify({ version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null, model: { type: 'WordLevel', vocab, unk_token: '<unk>' } }));
    // (a negative layer, counted from the end as LLaVA's -2, was refused as "an integer >= 0")
    const r = cli('init', '--llm', llm, '--vision-tower', tower, '--tokenizer', tok, '--vm-weight', '1', '--mm-vision-select-layer', '-1', '--out', out, '--seed', '3');
    expect(r.status, r.stderr).toBe(0);
    const { model, config, tokenizerPath } = loadCheckpoint(out);
    expect(config.vmWeight).toBe(1);
    expect(config.selectLayer).toBe(-1);
    expect(tokenizerPath).toBe(path.join(out, 'tokenizer.json'));
    expect(values(model, 'model.norm.weight')).toEqual(Array.from(readSafetensors(path.join(llm, 'model.safetensors')).get('model.norm.weight')!.data));
    model.dispose();
    const both = cli('init', '--llm', llm, '--config', path.join(llm, 'config.json'), '--out', path.join(dir, 'x'));
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--config .* or --llm with --vision-tower/);
    // the options named as the user's, not as an error of the LLM's config.json
    const far = cli('init', '--llm', llm, '--vision-tower', tower, '--mm-vision-select-layer', '99', '--out', path.join(dir, 'y'));
    expect(far.stderr).toBe(`vwlmm: --mm-vision-select-layer 99 is out of range for the 3-layer tower of ${tower} (-4 to 3)\n`);
    const foo = cli('init', '--llm', llm, '--vision-tower', tower, '--mm-projector-type', 'foo', '--out', path.join(dir, 'y'));
    expect(foo.stderr).toBe("vwlmm: --mm-projector-type: projector type 'foo' is not supported (linear | mlp{N}x_gelu)\n");
  });
});

describe("hub ids from the Hugging Face cache (as transformers reads it offline; nothing is downloaded)", () => {
  it('init --llm / --vision-tower and a checkpoint whose mm_vision_tower is a hub id find the cached snapshot', () => {
    const dir = tmp(), hub = path.join(dir, 'hub');
    // refs/main names the snapshot; without refs, the only snapshot there is
    const commit = 'a'.repeat(40);
    const clip = path.join(hub, 'models--openai--clip-tiny', 'snapshots', commit), llama = path.join(hub, 'models--lmsys--tiny-llama', 'snapshots', 'def456');
    fs.cpSync(tower, clip, { recursive: true });
    fs.cpSync(llm, llama, { recursive: true });
    fs.mkdirSync(path.join(hub, 'models--openai--clip-tiny', 'refs'));
    fs.writeFileSync(path.join(hub, 'models--openai--clip-tiny', 'refs', 'main'), commit);
    fs.mkdirSync(path.join(hub, 'models--openai--clip-tiny', 'snapshots', 'older'));
    const env = { HF_HUB_CACHE: hub };
    expect(hubCacheFolder('openai/clip-tiny', env)).toBe(clip);
    expect(hubCacheFolder('lmsys/tiny-llama', env)).toBe(llama);
    expect(hubCacheFolder('openai/clip-huge', env)).toBeNull();
    // not hub ids: a path, the cache's own separator, a revision
    for (const id of ['../hub', 'openai--clip-tiny', 'openai/clip-tiny/x', 'openai/clip-tiny@main', '.']) expect(hubCacheFolder(id, env), id).toBeNull();
    expect(hubCacheRoot({ HF_HOME: '/h' })).toBe('/h/hub');
    expect(hubCacheRoot({ HUGGINGFACE_HUB_CACHE: '~/hf' })).toBe(path.join(os.homedir(), 'hf'));
    const was = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = hub;
    try {
      const vocab = Object.fromEntries(['<unk>', '<s>', '</s>', ...Array.from({ length: 58 }, (_, i) => `w${i}`)].map((t, i) => [t, i]));
      const tok = path.join(dir, 'tokenizer.json'), out = path.join(dir, 'init');
      fs.writeFileSync(tok, JSON.stringify({ version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null, model: { type: 'WordLevel', vocab, unk_token: '<unk>' } }));
      const r = cli('init', '--llm', 'lmsys/tiny-llama', '--vision-tower', 'openai/clip-tiny', '--tokenizer', tok, '--out', out);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe(`vwlmm: LLM lmsys/tiny-llama: the Hugging Face cache's ${llama}\nvwlmm: vision tower openai/clip-tiny: the Hugging Face cache's ${clip}\n`);
      expect(cli('init', '--llm', 'lmsys/huge', '--vision-tower', 'openai/clip-tiny', '--out', path.join(dir, 'x')).stderr).toBe(`vwlmm: LLM lmsys/huge does not exist, nor is it a model in the Hugging Face cache (${hub}; nothing is downloaded)\n`);
      // LLaVA's released configs name their tower by hub id, its weights not in the checkpoint
      const weights = readSafetensors(path.join(out, 'model.safetensors'));
      for (const n of [...weights.keys()]) if (n.startsWith('model.vision_tower.')) weights.delete(n);
      writeSafetensors(path.join(out, 'model.safetensors'), weights);
      const json = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...json, mm_vision_tower: 'openai/clip-tiny' }));
      const { model } = loadCheckpoint(out);
      expect(values(model, 'model.vision_tower.vision_tower.vision_model.post_layernorm.weight')).toEqual(Array.from(readSafetensors(path.join(tower, 'model.safetensors')).get('vision_model.post_layernorm.weight')!.data));
      model.dispose();
      process.env.HF_HUB_CACHE = path.join(dir, 'empty');
      expect(() => loadCheckpoint(out)).toThrow(`mm_vision_tower 'openai/clip-tiny' is neither a local CLIP directory nor in the Hugging Face cache (${path.join(dir, 'empty')}; models are never downloaded)`);
    } finally {
      if (was === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = was;
    }
  });
});
