// Plain LLaVA (vmWeight 0) against transformers' LlavaForConditionalGeneration: scripts/make_llava_fixture.py
// saved a tiny random model exactly as save_pretrained writes it (tests/fixtures/tiny_llava/hf) and float64
// reference logits for a batch with one image per row (16 image tokens each, at different offsets, row 1
// right-padded). loadCheckpoint reads that directory; the logits must match within 1e-4 (normwise relative)
// on the non-padded positions. Then our transformers-format save must load back to identical logits.
// (That transformers itself loads our save is checked by scripts/check_llava_export.py, not at test time.)
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { noGrad, scope } from '../../src';
import { HostTensor, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { LLAVA_TRANSFORMERS_NAMES, ourNameFromTransformers, transformersNameFromOurs } from '../../src/model/transformers_llava';
import { ModelBatch, VwLmm } from '../../src/model/vwlmm';
import { relErr } from '../support/compare';

const fixture = path.join(__dirname, '..', 'fixtures', 'tiny_llava');
const hfDir = path.join(fixture, 'hf');
const io = readSafetensors(path.join(fixture, 'io.safetensors'));
const host = (name: string): HostTensor => {
  const t = io.get(name);
  if (!t) throw new Error(`fixture tensor ${name} is missing`);
  return t;
};
const tmp = tempDirs('llava');

/** The fixture batch: image features go where input_ids holds the image token, in row-major order (as HF). */
function fixtureBatch(imageTokenId: number): ModelBatch {
  const ids = host('input_ids'), [B, T] = ids.shape;
  const tokenIds = Int32Array.from(ids.data);
  const imagePositions = Int32Array.from([...tokenIds.keys()].filter((i) => tokenIds[i] === imageTokenId));
  return { B, T, tokenIds, attentionMask: Int32Array.from(host('attention_mask').data), imagePositions, pixelValues: Float32Array.from(host('pixel_values').data) };
}

function logitsOf(model: VwLmm, batch: ModelBatch): { logits: Float32Array; features: Float32Array } {
  return noGrad(() => scope(() => {
    const { h, features } = model.hidden(batch);
    return { logits: model.lm_head.forward(h).toArray() as Float32Array, features: features!.toArray() as Float32Array };
  }));
}

/** Rows of a [B*T, width] array whose attention mask is 1. */
function maskedRows(a: ArrayLike<number>, mask: ArrayLike<number>, width: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < mask.length; r++) if (mask[r]) for (let j = 0; j < width; j++) out.push(a[r * width + j]);
  return out;
}

describe('transformers LLaVA interchange', () => {
  it('the name table maps every parameter both ways, and every transformers spelling to the same name', () => {
    const { model } = loadCheckpoint(hfDir);
    for (const name of model.namedParameters().keys()) {
      const hf = transformersNameFromOurs(name);
      expect(hf, name).not.toBeNull();
      expect(ourNameFromTransformers(hf!)).toBe(name);
    }
    // the three layouts transformers uses: 4.x hub (vision_tower.vision_model.*), 5.x save_pretrained
    // (vision_tower.* for CLIP), 5.x in-memory (model.language_model.*, lm_head.*, model.vision_tower.*)
    const cases: [string, string][] = [
      ['language_model.model.layers.1.mlp.up_proj.weight', 'model.layers.1.mlp.up_proj.weight'],
      ['model.language_model.layers.1.mlp.up_proj.weight', 'model.layers.1.mlp.up_proj.weight'],
      ['language_model.lm_head.weight', 'lm_head.weight'],
      ['lm_head.weight', 'lm_head.weight'],
      ['multi_modal_projector.linear_2.bias', 'model.mm_projector.2.bias'],
      ['model.multi_modal_projector.linear_1.weight', 'model.mm_projector.0.weight'],
      ['vision_tower.vision_model.pre_layrnorm.bias', 'model.vision_tower.vision_tower.vision_model.pre_layrnorm.bias'],
      ['vision_tower.pre_layrnorm.bias', 'model.vision_tower.vision_tower.vision_model.pre_layrnorm.bias'],
      ['model.vision_tower.encoder.layers.0.mlp.fc1.weight', 'model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight'],
      ['model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight', 'model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight'],
    ];
    for (const [hf, ours] of cases) expect(ourNameFromTransformers(hf), hf).toBe(ours);
    expect(ourNameFromTransformers('multi_modal_projector.linear_3.weight')).toBeNull();
    expect(transformersNameFromOurs('vm_head.weight')).toBeNull();
    expect(LLAVA_TRANSFORMERS_NAMES.length).toBe(5);
    model.dispose();
  });

  it('loads save_pretrained output and matches transformers logits (float64 reference) within 1e-4', () => {
    const { model, config, tokenizerPath } = loadCheckpoint(hfDir);
    expect(tokenizerPath).toBeNull();
    expect(config.projectorType).toBe('mlp2x_gelu');
    expect(config.selectLayer).toBe(-2);
    expect(config.selectFeature).toBe('patch');
    expect(config.imageTokenIndex).toBe(63);
    expect(config.template).toBe('vicuna_v1');
    expect(config.vmWeight).toBe(0);
    expect(model.vm_head).toBeNull();
    expect(config.llm).toMatchObject({ vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, ropeTheta: 10000 });
    expect(config.vision).toMatchObject({ hiddenSize: 32, numLayers: 3, imageSize: 16, patchSize: 4, hiddenAct: 'quick_gelu' });
    // every tensor of the file is a parameter and vice versa
    expect(model.namedParameters().size).toBe(readSafetensors(path.join(hfDir, 'model.safetensors')).size);

    const batch = fixtureBatch(config.imageTokenIndex);
    expect(batch.imagePositions.length).toBe(2 * model.numImageTokens);
    const { logits, features } = logitsOf(model, batch);
    const V = config.llm.vocabSize, mask = batch.attentionMask;
    expect(relErr(features, host('image_features').data), 'image features').toBeLessThan(1e-4);
    const err = relErr(maskedRows(logits, mask, V), maskedRows(host('logits').data, mask, V));
    expect(err, 'logits').toBeLessThan(1e-4);
    model.dispose();
  });

  it('transformers-format save -> load gives identical logits; other spellings load the same weights', () => {
    const { model, config } = loadCheckpoint(hfDir);
    const batch = fixtureBatch(config.imageTokenIndex);
    const ref = logitsOf(model, batch).logits;
    const dir = path.join(tmp(), 'export');
    saveCheckpoint(dir, model, { format: 'transformers' });
    const keep = process.env.VWLMM_LLAVA_EXPORT_DIR; // for scripts/check_llava_export.py
    if (keep) fs.cpSync(dir, keep, { recursive: true });

    const cfgText = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
    const cfg = JSON.parse(cfgText);
    // transformers' strict configs reject an int where they declare a float
    expect(cfgText).toMatch(/"initializer_factor": 1\.0,?\n/);
    expect(cfgText).toMatch(/"rope_theta": 10000\.0,?\n/);
    expect(cfg).toMatchObject({
      architectures: ['LlavaForConditionalGeneration'], model_type: 'llava', image_token_index: 63, image_seq_length: 16,
      projector_hidden_act: 'gelu', vision_feature_layer: -2, vision_feature_select_strategy: 'default',
      text_config: { model_type: 'llama', vocab_size: 64, num_key_value_heads: 2, rope_parameters: { rope_theta: 10000, rope_type: 'default' } },
      vision_config: { model_type: 'clip_vision_model', hidden_act: 'quick_gelu', patch_size: 4 },
    });
    const written = readSafetensors(path.join(dir, 'model.safetensors'));
    const hfNames = [...readSafetensors(path.join(hfDir, 'model.safetensors')).keys()];
    // same tensors as transformers' own file, CLIP under the hub prefix vision_tower.vision_model.
    expect([...written.keys()].sort()).toEqual(hfNames.map((n) => n.replace(/^vision_tower\.(?!vision_model\.)/, 'vision_tower.vision_model.')).sort());

    const back = loadCheckpoint(dir);
    expect(back.config).toEqual(config);
    expect(logitsOf(back.model, batch).logits).toEqual(ref);
    back.model.dispose();

    // our own format keeps a transformers-loaded model too
    const native = path.join(tmp(), 'native');
    saveCheckpoint(native, model);
    const nat = loadCheckpoint(native);
    expect(nat.config).toEqual({ ...config, visionTower: 'embedded' });
    expect(logitsOf(nat.model, batch).logits).toEqual(ref);
    nat.model.dispose();

    // transformers 5.x in-memory names (model.language_model.*, lm_head.*, model.vision_tower.* without vision_model.)
    const inMemory = path.join(tmp(), 'in-memory');
    fs.mkdirSync(inMemory);
    fs.copyFileSync(path.join(hfDir, 'config.json'), path.join(inMemory, 'config.json'));
    const renamed = new Map<string, HostTensor>();
    for (const [n, t] of written) {
      const m = n.replace(/^language_model\.model\./, 'model.language_model.').replace(/^language_model\.lm_head\./, 'lm_head.')
        .replace(/^vision_tower\.vision_model\./, 'model.vision_tower.').replace(/^multi_modal_projector\./, 'model.multi_modal_projector.');
      renamed.set(m, t);
    }
    writeSafetensors(path.join(inMemory, 'model.safetensors'), renamed);
    const mem = loadCheckpoint(inMemory);
    expect(logitsOf(mem.model, batch).logits).toEqual(ref);
    mem.model.dispose();
    model.dispose();
  });

  it('refuses what transformers LLaVA cannot hold, and unknown tensors', () => {
    const { model, config } = loadCheckpoint(hfDir);
    const base = tmp();
    // an image token outside the vocabulary (our pipeline's -200) needs an explicit id
    const placeholder = VwLmm.create({ ...config, imageTokenIndex: -200 }, 0);
    expect(() => saveCheckpoint(path.join(base, 'a'), placeholder, { format: 'transformers' })).toThrow(/image token/);
    expect(fs.existsSync(path.join(base, 'a'))).toBe(false);
    placeholder.dispose();
    saveCheckpoint(path.join(base, 'b'), model, { format: 'transformers', imageTokenIndex: 63 });
    expect(JSON.parse(fs.readFileSync(path.join(base, 'b', 'config.json'), 'utf8')).image_token_index).toBe(63);
    model.dispose();

    const vw = VwLmm.create({ ...config, vmWeight: 1 }, 0);
    expect(() => saveCheckpoint(path.join(base, 'c'), vw, { format: 'transformers', imageTokenIndex: 63 })).toThrow(/vm_head/);
    vw.dispose();

    const extra = path.join(base, 'extra');
    fs.mkdirSync(extra);
    fs.copyFileSync(path.join(hfDir, 'config.json'), path.join(extra, 'config.json'));
    const w = readSafetensors(path.join(hfDir, 'model.safetensors'));
    w.set('multi_modal_projector.linear_3.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
    writeSafetensors(path.join(extra, 'model.safetensors'), w);
    expect(() => loadCheckpoint(extra)).toThrow(/multi_modal_projector\.linear_3\.weight/);
    w.delete('multi_modal_projector.linear_3.weight');
    w.delete('language_model.model.norm.weight');
    writeSafetensors(path.join(extra, 'model.safetensors'), w);
    expect(() => loadCheckpoint(extra)).toThrow(/lacks 1 tensors, e\.g\. language_model\.model\.norm\.weight/);
  });
});
