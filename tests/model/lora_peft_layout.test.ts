// PEFT adapters on transformers' LlavaForConditionalGeneration (src/model/lora.ts): PEFT names an adapter by the
// modules of the model it was put on (model.language_model.layers.N..., model.multi_modal_projector) and matches a
// string target_modules with re.fullmatch. scripts/make_lora_fixture.py (llava) made tests/fixtures/lora/llava_peft
// on tests/fixtures/tiny_llava/hf with a regular expression for the LLM's q/v/down_proj and the projector in
// modules_to_save, and float64 logits; scripts/check_lora_export.py checks with PEFT that it loads our saves.
// - loaded, it gives PEFT's logits; what cannot be applied exactly is refused, naming the adapter's directory
// - saved onto that base, it is written in the base's layout (PEFT's own names, a target_modules that only the LLM's
//   Linear layers match, the projector as modules_to_save), and reads back the same
// - a non_lora_trainables file from an earlier save into the same folder is removed, and never applied
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { noGrad, scope } from '../../src';
import { HostTensor, readSafetensors, readSafetensorsWithMetadata, writeSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { applyLora, loadLoraAdapter, loraConfigOf, loraParameters, saveLoraAdapter } from '../../src/model/lora';
import { transformersNameFromOurs } from '../../src/model/transformers_llava';
import { ModelBatch, VwLmm } from '../../src/model/vwlmm';
import { relErr } from '../support/compare';
import { tinyConfig } from '../train/support/tiny';
import { adapterVariant } from './support/adapter_variant';
import { tempDirs } from '../support/tmp';

const fixtures = path.join(__dirname, '..', 'fixtures');
const hfDir = path.join(fixtures, 'tiny_llava', 'hf');
const peftDir = path.join(fixtures, 'lora', 'llava_peft');
const io = readSafetensors(path.join(fixtures, 'tiny_llava', 'io.safetensors'));
const ref = readSafetensors(path.join(fixtures, 'lora', 'llava_io.safetensors'));
const tmp = tempDirs('lora-peft');
const mask = io.get('attention_mask')!.data;

function batch(): ModelBatch {
  const ids = io.get('input_ids')!, [B, T] = ids.shape;
  const tokenIds = Int32Array.from(ids.data);
  const imagePositions = Int32Array.from([...tokenIds.keys()].filter((i) => tokenIds[i] === 63));
  return { B, T, tokenIds, attentionMask: Int32Array.from(mask), imagePositions, pixelValues: Float32Array.from(io.get('pixel_values')!.data) };
}
/** The logits of the non-padded rows. */
const logitsOf = (m: VwLmm): number[] => noGrad(() => scope(() => {
  const a = m.lm_head.forward(m.hidden(batch()).h).toArray();
  return maskedRows(a, 64);
}));
const maskedRows = (a: ArrayLike<number>, V: number): number[] => {
  const rows: number[] = [];
  for (let r = 0; r < mask.length; r++) if (mask[r]) for (let j = 0; j < V; j++) rows.push(a[r * V + j]);
  return rows;
};
const base = () => loadCheckpoint(hfDir).model;
/** Python's re.fullmatch for the simple expressions our saves write. */
const fullmatch = (re: string) => new RegExp(`^(?:${re})$`);
/** transformers 5.18's names in memory (what PEFT sees) for its on-disk (legacy) LLaVA names. */
const inMemory = (legacy: string): string => {
  const rules: [string, string][] = [['language_model.model.', 'model.language_model.'], ['language_model.lm_head.', 'lm_head.'], ['multi_modal_projector.', 'model.multi_modal_projector.'], ['vision_tower.vision_model.', 'model.vision_tower.']];
  const r = rules.find(([from]) => legacy.startsWith(from))!;
  return r[1] + legacy.slice(r[0].length);
};
const values = (m: VwLmm) => new Map([...m.namedParameters()].map(([n, p]) => [n, Array.from(p.toArray())]));
/** A copy of the PEFT fixture with its config and tensors edited. */
const variant = (edit: (c: Record<string, unknown>) => void, tensors?: (m: Map<string, HostTensor>) => void): string => adapterVariant(peftDir, tmp(), edit, tensors);

describe("PEFT adapters on transformers' LLaVA", () => {
  it("a PEFT adapter with a regular-expression target_modules and the projector in modules_to_save gives PEFT's logits", () => {
    const m = base();
    expect(relErr(logitsOf(m), maskedRows(ref.get('base_logits')!.data, 64))).toBeLessThan(1e-4);
    expect(loadLoraAdapter(peftDir, m)).toEqual({ adapters: 2 * 3, nonLoraTrainables: 4 });
    expect(loraConfigOf(m)).toEqual({ r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
    const got = logitsOf(m), want = maskedRows(ref.get('logits')!.data, 64);
    expect(relErr(got, want)).toBeLessThan(1e-4);
    expect(relErr(got, maskedRows(ref.get('base_logits')!.data, 64))).toBeGreaterThan(0.1); // the adapter and projector matter
    m.dispose();
  });

  it('what it cannot apply exactly is refused, naming the adapter directory; a refused load changes nothing', () => {
    const m = base();
    const before = values(m);
    const vision = 'base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_A.weight';
    const cases: [string, RegExp][] = [
      // PEFT's 'all-linear', as it saves it (the names it found) and as written
      [variant((c) => (c.target_modules = ['q_proj', 'fc1', 'out_proj', 'linear_1', 'v_proj'])), /target_modules names fc1, out_proj, linear_1, not Linear layers of the LLM's decoder .*PEFT's 'all-linear'/],
      [variant((c) => (c.target_modules = 'all-linear')), /target_modules is 'all-linear' \(every Linear layer, the vision tower's and the projector's too\)/],
      // adapters on the vision tower (a list ['q_proj', ...] makes PEFT wrap CLIP's q_proj too)
      [variant((c) => (c.target_modules = ['q_proj', 'v_proj', 'down_proj']), (w) => w.set(vision, { dtype: 'float32', shape: [2, 32], data: new Float32Array(64) })), /tensor '.*vision_tower.*' has no place in this model: it is an adapter on model.vision_tower.encoder.layers.0.self_attn.q_proj \(the vision tower\)/],
      // Python-only regular expressions
      [variant((c) => (c.target_modules = '(?i).*language_model.*\\.(q_proj|v_proj|down_proj)')), /target_modules .*: inline flags such as \(\?i\) is Python-only syntax/],
      [variant((c) => (c.target_modules = '.*language_model.*\\.(q_proj|v_proj|down_proj)\\Z')), /\\Z is Python's anchor/],
      [variant((c) => (c.target_modules = '.*language_model.*\\.(q_proj|v_proj|down_proj')), /target_modules .*: not a regular expression JavaScript reads/],
      // a regular expression that selects some layers only, or none of the LLM's Linear layers
      [variant((c) => (c.target_modules = '.*language_model\\.layers\\.0\\.(self_attn\\.(q_proj|v_proj)|mlp\\.down_proj)')), /matches q_proj in 1 of 2 layers, v_proj in 1 of 2 layers, down_proj in 1 of 2 layers: adapters on some layers only are not supported/],
      [variant((c) => (c.target_modules = '.*vision_tower.*q_proj')), /matches none of the LLM's Linear layers \(named like model.language_model.layers.0.self_attn.q_proj\)/],
      [variant((c) => (c.target_modules = '.*language_model.*\\.(q_proj|v_proj)')), /tensor '.*layers.0.mlp.down_proj.lora_A.weight' is an adapter on .*down_proj, which target_modules does not select/],
      // modules_to_save
      [variant((c) => (c.modules_to_save = null)), /tensor 'base_model.model.model.multi_modal_projector.linear_1.bias' is not a LoRA tensor \(and adapter_config.json has no modules_to_save\)/],
      [variant((c) => (c.modules_to_save = ['multi_modal_projector', 'lm_head'])), /modules_to_save names lm_head but adapter_model holds no tensor of it/],
      [variant(() => undefined, (w) => w.set('base_model.model.model.multi_modal_projector.linear_2.weight', { dtype: 'float32', shape: [32, 31], data: new Float32Array(32 * 31) })), /multi_modal_projector.linear_2.weight has shape \[32, 31\] but the model expects \[32, 32\]/],
      [variant(() => undefined, (w) => w.delete('base_model.model.model.language_model.layers.1.mlp.down_proj.lora_B.weight')), /the adapter file lacks 1 adapter tensors, e.g. model.layers.1.mlp.down_proj.lora_B.weight/],
      [variant((c) => (c.exclude_modules = ['vision_tower'])), /exclude_modules is set \(\["vision_tower"\]\): not supported/],
    ];
    for (const [dir, re] of cases) {
      let err: Error | null = null;
      try {
        loadLoraAdapter(dir, m);
      } catch (e) {
        err = e as Error;
      }
      expect(err, dir).not.toBeNull();
      expect(err!.message, dir).toMatch(re);
      expect(err!.message, dir).toContain(`loadLoraAdapter: ${dir}: `);
      expect(loraParameters(m).size).toBe(0);
    }
    expect(values(m)).toEqual(before);
    m.dispose();
  });

  it("saved onto a transformers-layout base: PEFT's names, a target_modules only the LLM's Linear layers match, the projector as modules_to_save", () => {
    const m = base();
    loadLoraAdapter(peftDir, m);
    const dir = tmp();
    saveLoraAdapter(dir, m, { baseModelNameOrPath: hfDir, nonLoraTrainables: ['model.mm_projector'] });
    // the tensors PEFT wrote, under the same names, with the same values
    const ours = readSafetensors(path.join(dir, 'adapter_model.safetensors')), peft = readSafetensors(path.join(peftDir, 'adapter_model.safetensors'));
    expect([...ours.keys()].sort()).toEqual([...peft.keys()].sort());
    for (const [k, t] of peft) expect(Array.from(ours.get(k)!.data), k).toEqual(Array.from(t.data));
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ r: 2, lora_alpha: 4, modules_to_save: ['model.multi_modal_projector'], base_model_name_or_path: hfDir });
    expect(fs.existsSync(path.join(dir, 'non_lora_trainables.safetensors'))).toBe(false);
    // target_modules, fullmatched as PEFT does against every module name PEFT sees on the transformers model: exactly
    // the LLM's q/v/down_proj (CLIP's q_proj / v_proj are not)
    expect(typeof cfg.target_modules).toBe('string');
    const re = fullmatch(cfg.target_modules);
    const moduleNames = new Set<string>();
    for (const n of m.namedParameters().keys()) {
      if (n.includes('.lora_')) continue;
      const parts = inMemory(transformersNameFromOurs(n)!).split('.');
      for (let k = 1; k < parts.length; k++) moduleNames.add(parts.slice(0, k).join('.'));
    }
    expect(moduleNames.has('model.vision_tower.encoder.layers.0.self_attn.q_proj')).toBe(true);
    const matched = [...moduleNames].filter((n) => re.test(n)).sort();
    expect(matched).toEqual([0, 1].flatMap((i) => [`model.language_model.layers.${i}.mlp.down_proj`, `model.language_model.layers.${i}.self_attn.q_proj`, `model.language_model.layers.${i}.self_attn.v_proj`]).sort());
    // read back onto a fresh base: PEFT's logits again
    const again = base();
    expect(loadLoraAdapter(dir, again)).toEqual({ adapters: 6, nonLoraTrainables: 4 });
    expect(logitsOf(again)).toEqual(logitsOf(m));
    // the LLaVA layout (ours, LLaVA's repository) when the base is not a transformers directory: our names, and a
    // target_modules that the vision tower's q/v_proj (model.vision_tower.vision_tower.vision_model...) do not match
    const llava = tmp();
    saveLoraAdapter(llava, m, { nonLoraTrainables: ['model.mm_projector'] });
    const lcfg = JSON.parse(fs.readFileSync(path.join(llava, 'adapter_config.json'), 'utf8'));
    const lre = fullmatch(lcfg.target_modules);
    const ourModules = new Set([...m.namedParameters().keys()].map((n) => n.replace(/\.(weight|bias)$/, '')));
    expect([...ourModules].filter((n) => lre.test(n)).sort()).toEqual([0, 1].flatMap((i) => [`model.layers.${i}.mlp.down_proj`, `model.layers.${i}.self_attn.q_proj`, `model.layers.${i}.self_attn.v_proj`]).sort());
    expect([...readSafetensors(path.join(llava, 'adapter_model.safetensors')).keys()].every((k) => k.startsWith('base_model.model.model.layers.'))).toBe(true);
    expect(lcfg.modules_to_save).toBeNull();
    const third = base();
    expect(loadLoraAdapter(llava, third)).toEqual({ adapters: 6, nonLoraTrainables: 4 });
    expect(logitsOf(third)).toEqual(logitsOf(m));
    // a VW-LMM's vm_head has no place in transformers' LLaVA
    const vw = VwLmm.create(tinyConfig(40), 1);
    applyLora(vw, { r: 2, alpha: 4 });
    const refused = tmp();
    expect(() => saveLoraAdapter(refused, vw, { layout: 'transformers', nonLoraTrainables: ['lm_head', 'vm_head'] })).toThrow(`saveLoraAdapter: ${refused}: nonLoraTrainables 'vm_head' has no place in transformers' LlavaForConditionalGeneration`);
    for (const x of [m, again, third, vw]) x.dispose();
  });

  it('a save without nonLoraTrainables removes an earlier one; a stale non_lora_trainables file is never applied', () => {
    const m = base();
    applyLora(m, { r: 2, alpha: 4, seed: 1 });
    const dir = tmp();
    // LLaVA layout: the projector in non_lora_trainables.safetensors, tied to its adapter file by a save id
    saveLoraAdapter(dir, m, { nonLoraTrainables: ['model.mm_projector'] });
    const withExtra = readSafetensorsWithMetadata(path.join(dir, 'non_lora_trainables.safetensors'));
    expect(withExtra.metadata.vwlmm_lora_save).toBe(readSafetensorsWithMetadata(path.join(dir, 'adapter_model.safetensors')).metadata.vwlmm_lora_save);
    saveLoraAdapter(dir, m);
    expect(fs.readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    // a stale one (a save killed before it removed the file, or copied in by hand): not read
    const stale = new Map([...withExtra.tensors].map(([k, t]) => [k, { ...t, data: Float32Array.from(t.data, (v) => v + 1) }]));
    writeSafetensors(path.join(dir, 'non_lora_trainables.safetensors'), stale, { format: 'pt', ...withExtra.metadata });
    const fresh = base(), before = values(fresh);
    expect(loadLoraAdapter(dir, fresh)).toEqual({ adapters: 14, nonLoraTrainables: 0 });
    for (const [n, v] of values(fresh)) if (!n.includes('lora_')) expect(v, n).toEqual(before.get(n));
    m.dispose();
    fresh.dispose();
  });
});
