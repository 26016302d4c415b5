// The model's config is its own (a checked, deep-frozen copy), every config create accepts saves a checkpoint that
// loads back as the same config, option objects refuse keys they do not read, and a bad ModelBatch or generate option
// is an error naming the field.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { noGrad, scope } from '../../src';
import { CLIP_MEAN, CLIP_STD, configFromJson, configToJson, validateConfig, VwLmmConfig } from '../../src/model/config';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { ModelBatch, VwLmm } from '../../src/model/vwlmm';
import { collate, nextTokenTargets, visualWordRows } from '../../src/data/collate';
import { TextTokenizer } from '../../src/data/tokenizer';
import { writeWordLevelTokenizer } from '../../src/data/word_level_tokenizer';

const tmp = tempDirs('model-config');

function tinyConfig(vmWeight = 1): VwLmmConfig {
  return {
    llm: { vocabSize: 40, hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 64, initializerRange: 0.1 },
    vision: { hiddenSize: 12, intermediateSize: 16, numLayers: 1, numHeads: 2, imageSize: 30, patchSize: 15, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.1, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -1, selectFeature: 'patch', vmWeight, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 30, mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.25], aspect: 'square' }, imageTokenIndex: -200,
  };
}

/** A batch of two samples with one image each (4 patches) and text targets, as collate makes it. */
function tinyBatch(model: VwLmm): ModelBatch {
  const P = model.numImageTokens, S = model.config.vision.imageSize;
  const sample = (ids: number[]) => ({ inputIds: ids, labels: ids.map((t) => (t < 0 ? -100 : t)), image: new Float32Array(3 * S * S).fill(0.1) });
  const b = collate([sample([1, -200, 5, 6, 7]), sample([1, -200, 8, 9])], { padId: 0, numPatches: P });
  return { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
}

describe('a config of a model that cannot fit', () => {
  it('is refused before any tensor is made, naming its sizes (1e9 layers once allocated for minutes), and a checkpoint names its config.json', () => {
    const t0 = Date.now();
    const layers: VwLmmConfig = { ...tinyConfig(1), llm: { ...tinyConfig(1).llm, numLayers: 1e9 } };
    expect(() => VwLmm.create(layers, 0)).toThrow(/^VwLmm\.create: the config describes a model whose weights alone take at least [\d.]+ GiB, more than the machine's [\d.]+ GiB: hidden_size 16, intermediate_size 24, num_hidden_layers 1000000000, vocab_size 40;/);
    const wide: VwLmmConfig = { ...tinyConfig(1), llm: { ...tinyConfig(1).llm, hiddenSize: 2e12, numHeads: 2, numKvHeads: 1 } };
    expect(() => VwLmm.create(wide, 0)).toThrow(/hidden_size 2000000000000/);
    const mlp: VwLmmConfig = { ...tinyConfig(1), projectorType: 'mlp1000000000x_gelu' };
    expect(() => VwLmm.create(mlp, 0)).toThrow(/mm_projector_type mlp1000000000x_gelu$/);
    // a saved checkpoint whose config.json was edited so
    const model = VwLmm.create(tinyConfig(1), 0);
    const dir = path.join(tmp(), 'huge');
    saveCheckpoint(dir, model);
    model.dispose();
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 1e9 }));
    expect(() => loadCheckpoint(dir)).toThrow(new RegExp(`^checkpoint: ${path.join(dir, 'config.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: VwLmm\\.create: the config describes a model whose weights`));
    expect(Date.now() - t0).toBeLessThan(30_000); // refused, not allocated (a guard on the hang, generous for slow CI)
  });
});

describe('model.config', () => {
  it("a config.json's projector width and the tower's channels must be the model's (they were rewritten or failed later)", () => {
    const json = configToJson(tinyConfig(1)) as Record<string, unknown>;
    expect(() => configFromJson({ ...json, mm_hidden_size: 99 })).toThrow("config: mm_hidden_size 99 differs from the vision tower's hidden_size 12 (the projector reads the tower's features)");
    expect(configFromJson({ ...json, mm_hidden_size: 12 })).toEqual(configFromJson(json));
    const vision = { ...(json.vision_config as Record<string, unknown>), num_channels: 1 };
    expect(() => configFromJson({ ...json, vision_config: vision })).toThrow('config: vision.numChannels 1 is not supported: images are preprocessed to 3 channels (RGB)');
  });

  it("is the model's own copy: edits of the caller's object do not reach it, and it cannot be edited", () => {
    const config = tinyConfig(1);
    const model = VwLmm.create(config, 0);
    const batch = tinyBatch(model);
    const lossOf = (m: VwLmm) => noGrad(() => scope(() => m.loss(batch).loss.item()));
    const before = lossOf(model);
    config.vmWeight = 0; // the caller's object, edited after create
    config.llm.numLayers = 3;
    (config.image.mean as unknown as number[])[0] = 0;
    expect(model.config.vmWeight).toBe(1);
    expect(model.config.llm.numLayers).toBe(1);
    expect(model.config.image.mean).toEqual([0.5, 0.4, 0.3]);
    expect(lossOf(model)).toBe(before); // still CE + KL, not plain LLaVA's CE
    // model.config and everything in it is frozen (tests run in strict mode: an assignment throws)
    expect(() => { (model.config as { vmWeight: number }).vmWeight = 0; }).toThrow(TypeError);
    expect(() => { model.config.llm.numLayers = 2; }).toThrow(TypeError);
    expect(() => { (model.config.image.mean as unknown as number[])[0] = 0; }).toThrow(TypeError);
    expect(lossOf(model)).toBe(before);
    // so the checkpoint it saves describes its weights, and loads back
    const dir = path.join(tmp(), 'ckpt');
    saveCheckpoint(dir, model);
    const back = loadCheckpoint(dir);
    expect(back.model.config).toEqual(model.config);
    expect(back.config).toBe(back.model.config); // loadCheckpoint returns the model's own config
    expect(lossOf(back.model)).toBe(before);
    back.model.dispose();
    model.dispose();
  });

  it('CLIP_MEAN and CLIP_STD are frozen (one object each, the data module\'s): a model made with them keeps its own copy', () => {
    expect(Object.isFrozen(CLIP_MEAN)).toBe(true);
    expect(Object.isFrozen(CLIP_STD)).toBe(true);
    expect(() => { (CLIP_MEAN as unknown as number[])[0] = 0; }).toThrow(TypeError);
    const model = VwLmm.create({ ...tinyConfig(0), image: { size: 30, mean: CLIP_MEAN, std: CLIP_STD, aspect: 'pad' } }, 0);
    expect(model.config.image.mean).toEqual(CLIP_MEAN);
    expect(model.config.image.mean).not.toBe(CLIP_MEAN);
    model.dispose();
  });

  it('updateConfig changes what a training run may set (template, image.aspect, modelMaxLength), nothing else', () => {
    const model = VwLmm.create(tinyConfig(1), 0);
    const before = model.config;
    const after = model.updateConfig({ template: 'plain', image: { aspect: 'pad' }, modelMaxLength: 512 });
    expect(model.config).toBe(after);
    expect([after.template, after.image.aspect, after.modelMaxLength]).toEqual(['plain', 'pad', 512]);
    expect([before.template, before.image.aspect, before.modelMaxLength]).toEqual(['vicuna_v1', 'square', undefined]);
    expect(Object.isFrozen(after.image)).toBe(true);
    expect(() => model.updateConfig({ vmWeight: 0 } as never)).toThrow(/^VwLmm\.updateConfig: unknown setting \(the others shaped the weights: create a new model\) 'vmWeight'; known: template, image, modelMaxLength/);
    expect(() => model.updateConfig({ image: { size: 60 } } as never)).toThrow(/unknown image setting \(only aspect changes on a built model\) 'size'/);
    expect(() => model.updateConfig({ template: 'chatml' as never })).toThrow("config: unknown conversation template 'chatml'");
    expect(model.config).toBe(after); // a refused update changes nothing
    model.dispose();
  });
});

describe('validateConfig: what create accepts, a checkpoint holds', () => {
  // each refused by create, naming the field; each would have saved a config.json that does not load back (or loads as
  // another config)
  const bad: [string, (c: any) => void, RegExp][] = [
    ["image.aspect 'stretch'", (c) => (c.image.aspect = 'stretch'), /^config: image\.aspect must be 'pad' \| 'square', got "stretch"/],
    ['image.mean of 2 numbers', (c) => (c.image.mean = [0.5, 0.5]), /^config: image\.mean must be a list of 3 numbers \(R, G, B\), got \[0\.5,0\.5\]/],
    ['image.std with a 0 (a division by 0)', (c) => (c.image.std = [0.2, 0, 0.2]), /^config: image\.std must be a list of 3 numbers > 0/],
    ['image.mean with a NaN', (c) => (c.image.mean = [0.5, NaN, 0.5]), /^config: image\.mean must be a list of 3 numbers/],
    ['vmWeight Infinity (saved as null)', (c) => (c.vmWeight = Infinity), /^config: vmWeight must be a finite number >= 0, got Infinity/],
    ['vmWeight -1', (c) => (c.vmWeight = -1), /^config: vmWeight must be a finite number >= 0, got -1/],
    ['llm.initializerRange NaN', (c) => (c.llm.initializerRange = NaN), /^config: llm\.initializerRange must be a finite number >= 0, got NaN/],
    ['llm.initializerRange -0.02', (c) => (c.llm.initializerRange = -0.02), /^config: llm\.initializerRange must be a finite number >= 0, got -0\.02/],
    ['llm.ropeTheta Infinity', (c) => (c.llm.ropeTheta = Infinity), /^config: llm\.ropeTheta must be a number > 0, got Infinity/],
    ['llm.slidingWindow 0', (c) => (c.llm.slidingWindow = 0), /^config: llm\.slidingWindow must be a positive integer, got 0/],
    ['a window on a LLaMA base', (c) => (c.llm.slidingWindow = 8), /^config: llm\.slidingWindow 8 is for a Mistral base \(base: 'mistral'\); a LLaMA base has no sliding window$/],
    ['vision.initializerFactor NaN', (c) => (c.vision.initializerFactor = NaN), /^config: vision\.initializerFactor must be a finite number >= 0, got NaN/],
    ['vision.imageSize 32 for patches of 15', (c) => (c.vision.imageSize = c.image.size = 32), /^config: vision\.imageSize 32 must be a multiple of vision\.patchSize 15/],
    ["pif 'false'", (c) => (c.pif = 'false'), /^config: pif must be true or false, got "false"/],
    ['detachTarget 0', (c) => (c.detachTarget = 0), /^config: detachTarget must be true or false, got 0/],
    ['visionTower 3', (c) => (c.visionTower = 3), /^config: visionTower must be a string/],
    ["projectorType 'mlp0x_gelu'", (c) => (c.projectorType = 'mlp0x_gelu'), /^config: projectorType: projector type 'mlp0x_gelu' is not supported/],
    ["base 'qwen'", (c) => (c.base = 'qwen'), /^config: base must be 'llama' \| 'mistral', got "qwen"/],
    ['imageTokenIndex 2.5', (c) => (c.imageTokenIndex = 2.5), /^config: imageTokenIndex must be an integer, got 2\.5/],
    ['modelMaxLength 0', (c) => (c.modelMaxLength = 0), /^config: modelMaxLength must be a positive integer, got 0/],
    ['vm_weight (torch spelling)', (c) => (c.vm_weight = 1), /^config: unknown config key 'vm_weight' \(did you mean 'vmWeight'\?\); known: llm, vision, /],
    ['llm.num_layers', (c) => (c.llm.num_layers = 2), /^config: unknown llm key 'num_layers' \(did you mean 'numLayers'\?\)/],
    ['image.aspect_ratio', (c) => (c.image.aspect_ratio = 'pad'), /^config: unknown image key 'aspect_ratio'; known: size, mean, std, aspect/],
  ];
  it.each(bad)('refuses %s, naming the field', (_, edit, msg) => {
    const c = structuredClone(tinyConfig(1));
    edit(c);
    expect(() => VwLmm.create(c, 0)).toThrow(msg);
    expect(() => validateConfig(c)).toThrow(msg);
  });

  it('round-trips what it accepts: create -> save -> load gives the same config, for edge values too', () => {
    const dir = tmp();
    const variants: [string, VwLmmConfig][] = [
      ['the tiny config', tinyConfig(1)],
      ['plain LLaVA, pad, cls_patch, plain template', { ...tinyConfig(0), selectFeature: 'cls_patch', template: 'plain', image: { ...tinyConfig(0).image, aspect: 'pad' } }],
      // transformers' layout keeps its image token as a vocabulary id; a Mistral base with a window; LLaVA's max length
      ['a vocabulary image token, Mistral, sliding window', { ...tinyConfig(0.5), base: 'mistral', template: 'mistral', imageTokenIndex: 39, modelMaxLength: 128, llm: { ...tinyConfig().llm, slidingWindow: 32, initializerRange: 0 } }],
      ['PIF, a detached target, the embedding layer', { ...tinyConfig(2), pif: true, detachTarget: true, selectLayer: 0, projectorType: 'linear' }],
      // any of LLaVA's conversation templates (its --version), not only the three vwlmm started with
      ['LLaVA\'s mistral_instruct template on a Mistral base', { ...tinyConfig(1), base: 'mistral', template: 'mistral_instruct' }],
    ];
    for (const [what, config] of variants) {
      const model = VwLmm.create(config, 0);
      const at = path.join(dir, what.replace(/\W+/g, '-'));
      saveCheckpoint(at, model);
      const back = loadCheckpoint(at);
      expect(back.config, what).toEqual(model.config);
      // and through the JSON alone
      expect(configFromJson(JSON.parse(JSON.stringify(configToJson(model.config)))), what).toEqual(model.config);
      back.model.dispose();
      model.dispose();
    }
  });

  it('returns a copy: the argument is not the result', () => {
    const c = tinyConfig(1);
    const v = validateConfig(c);
    expect(v).toEqual(c);
    expect(v).not.toBe(c);
    expect(v.image.mean).not.toBe(c.image.mean);
  });
});

describe('option objects refuse keys they do not read', () => {
  it('VwLmm.create, saveCheckpoint, loadCheckpoint', () => {
    expect(() => VwLmm.create(tinyConfig(), 0, { devcie: 'cuda' } as never)).toThrow(/^VwLmm\.create: unknown option 'devcie'( \(did you mean 'device'\?\))?; known: device, uninitialized, linearDtype/);
    expect(() => VwLmm.create(tinyConfig(), 0, { linearDtype: 'float16' as never })).toThrow("VwLmm.create: expected 'float32' or 'bfloat16' for linearDtype but received 'float16' (string)");
    const dir = tmp();
    const tok = path.join(dir, 'tokenizer.json');
    writeWordLevelTokenizer(tok, ['a', 'b']);
    const model = VwLmm.create(tinyConfig(), 0);
    const at = path.join(dir, 'ckpt');
    expect(() => saveCheckpoint(at, model, { tokenizr: tok } as never)).toThrow(/^saveCheckpoint: unknown option 'tokenizr'( \(did you mean 'tokenizer'\?\))?; known: format, imageTokenIndex, tokenizer, dtype, extraFiles, extraTensors/);
    expect(fs.existsSync(at)).toBe(false);
    const gone = path.join(dir, 'nope', 'tokenizer.json');
    expect(() => saveCheckpoint(at, model, { tokenizer: gone })).toThrow(`saveCheckpoint: options.tokenizer ${gone} does not exist (expected a tokenizer.json, or a folder holding one, to copy into the checkpoint)`);
    expect(fs.existsSync(at)).toBe(false);
    saveCheckpoint(at, model, { tokenizer: tok });
    expect(new TextTokenizer(path.join(at, 'tokenizer.json')).vocabSize).toBe(new TextTokenizer(tok).vocabSize);
    expect(() => loadCheckpoint(at, { weight_dtype: 'bfloat16' } as never)).toThrow(/^loadCheckpoint: unknown option 'weight_dtype' \(did you mean 'weightDtype'\?\); known: seed, device, pif, weightDtype/);
    expect(() => loadCheckpoint(at, { weightDtype: 'float16' as never })).toThrow("loadCheckpoint: expected 'float32' or 'bfloat16' for weightDtype but received 'float16' (string)");
    // an extra file is a plain name beside the model's files, none of them (a record named config.json replaced the
    // model's config); nothing is written
    const other = path.join(dir, 'other');
    for (const [extra, message] of [
      [{ extraFiles: { 'config.json': '{}' } }, 'saveCheckpoint: options.extraFiles names config.json, which the save writes itself'],
      [{ extraFiles: { 'tokenizer.json': '{}' }, tokenizer: tok }, 'saveCheckpoint: options.extraFiles names tokenizer.json, which the save writes itself (a tokenizer file)'],
      [{ extraFiles: { 'a.safetensors': '' }, extraTensors: { 'a.safetensors': new Map() } }, 'saveCheckpoint: options.extraTensors names a.safetensors, which the save writes itself'],
      [{ extraFiles: { '../escape.json': '{}' } }, "saveCheckpoint: expected a plain file name (no folder) for options.extraFiles name but received '../escape.json' (string)"],
      [{ extraTensors: { '..': new Map() } }, "saveCheckpoint: expected a plain file name (no folder) for options.extraTensors name but received '..' (string)"],
    ] as const) {
      expect(() => saveCheckpoint(other, model, extra as never)).toThrow(message);
      expect(fs.existsSync(other)).toBe(false);
    }
    expect(fs.existsSync(path.join(dir, 'escape.json'))).toBe(false);
    model.dispose();
  });
});

describe('a bad ModelBatch is an error naming the field', () => {
  it('loss and hidden check every field before any upload', () => {
    const model = VwLmm.create(tinyConfig(1), 0);
    const good = tinyBatch(model);
    const { B, T } = good, N = B * T, V = model.config.llm.vocabSize;
    const cases: [string, unknown, string | RegExp][] = [
      ['null', null, 'VwLmm.loss: expected a ModelBatch (B, T, tokenIds, attentionMask, imagePositions, pixelValues, targets) for batch but received null'],
      ['an array', [1, 2], /^VwLmm\.loss: expected a positive integer \(the number of rows\) for batch\.B but received undefined/],
      ['B 0', { ...good, B: 0 }, 'VwLmm.loss: expected a positive integer (the number of rows) for batch.B but received 0 (number)'],
      ['tokenIds one short', { ...good, tokenIds: good.tokenIds.subarray(1) }, `VwLmm.loss: expected an Int32Array of B x T = ${B} x ${T} = ${N} values for batch.tokenIds but received Int32Array(${N - 1})`],
      ['B one too many', { ...good, B: B + 1 }, `VwLmm.loss: expected an Int32Array of B x T = ${B + 1} x ${T} = ${N + T} values for batch.tokenIds but received Int32Array(${N})`],
      ['tokenIds a plain array', { ...good, tokenIds: [...good.tokenIds] }, /^VwLmm\.loss: expected an Int32Array of B x T = .* for batch\.tokenIds but received array\(/],
      ['a token id past the vocabulary', { ...good, tokenIds: good.tokenIds.map((t, i) => (i === 3 ? V : t)) }, `VwLmm.loss: expected token ids in [0, ${V}) in batch.tokenIds but received ${V} at index 3`],
      ['a mask value 2', { ...good, attentionMask: good.attentionMask.map((m, i) => (i === 0 ? 2 : m)) }, 'VwLmm.loss: expected 0 (padding) or 1 in batch.attentionMask but received 2 at index 0'],
      ['an image position outside', { ...good, imagePositions: good.imagePositions.map((p, i) => (i === 1 ? N : p)) }, `VwLmm.loss: expected positions b * T + t in [0, ${N}) (B x T = ${B} x ${T}) in batch.imagePositions but received ${N} at index 1`],
      ['an image position twice', { ...good, imagePositions: good.imagePositions.map((p, i) => (i === 1 ? good.imagePositions[0] : p)) }, /^VwLmm\.loss: batch\.imagePositions names position \d+ twice \(at index 1\)/],
      ['3 positions for 4-patch images', { ...good, imagePositions: good.imagePositions.subarray(0, 3) }, 'VwLmm.loss: expected a whole number of images of 4 positions each in batch.imagePositions but received 3 positions'],
      ['one image of pixels for two', { ...good, pixelValues: good.pixelValues!.subarray(0, 2700) }, 'VwLmm.loss: expected 2 image(s) (batch.imagePositions: 8 positions, 4 per image) of 3 x 30 x 30 = 5400 values in batch.pixelValues but received Float32Array(2700)'],
      ['pixels as a plain array', { ...good, pixelValues: [0.1] }, /^VwLmm\.loss: expected a Float32Array of 2 image\(s\) x 2700 values, or null \(no images\) for batch\.pixelValues but received array\(1\)/],
      ['no targets', { ...good, targets: undefined }, `VwLmm.loss: expected an Int32Array of B x T = ${N} next-token targets (-100: none) for batch.targets but received undefined`],
      ['a target past the vocabulary', { ...good, targets: good.targets!.map((t, i) => (i === 2 ? V + 5 : t)) }, `VwLmm.loss: expected -100 or token ids in [0, ${V}) in batch.targets but received ${V + 5} at index 2`],
      ['a KL feature index past the features', { ...good, klRows: { rows: good.klRows!.rows, featureIndex: good.klRows!.featureIndex.map((f, i) => (i === 0 ? 8 : f)) } }, 'VwLmm.loss: expected image feature indexes in [0, 8) in batch.klRows.featureIndex but received 8 at index 0'],
      // the same features paired with their own positions (no shift to the next patch): another objective
      ['unshifted KL rows', { ...good, klRows: { rows: good.klRows!.featureIndex.map((f) => good.imagePositions[f]), featureIndex: good.klRows!.featureIndex } }, /^VwLmm\.loss: batch\.klRows pairs position \d+ with image feature \d+ at position \d+ \(index 0\): a KL row is the position just before its feature/],
      ['a KL row twice', { ...good, klRows: { rows: Int32Array.from([good.klRows!.rows[0], good.klRows!.rows[0]]), featureIndex: Int32Array.from([good.klRows!.featureIndex[0], good.klRows!.featureIndex[0]]) } }, /^VwLmm\.loss: batch\.klRows names image feature \d+ twice \(at index 1\)/],
      ['KL rows without their feature indexes', { ...good, klRows: { rows: good.klRows!.rows } }, /^VwLmm\.loss: expected an Int32Array of \d+ \(one per klRows\.rows entry\) values for batch\.klRows\.featureIndex but received undefined/],
    ];
    for (const [what, batch, msg] of cases) expect(() => noGrad(() => scope(() => model.loss(batch as ModelBatch))), what).toThrow(msg);
    expect(() => noGrad(() => scope(() => model.hidden({ ...good, T: T + 1 })))).toThrow(/^VwLmm\.hidden: expected an Int32Array of B x T = /);
    // the good batch runs, and hidden needs no targets
    noGrad(() => scope(() => {
      expect(Number.isFinite(model.loss(good).loss.item())).toBe(true);
      expect(model.hidden({ ...good, targets: undefined }).h.shape).toEqual([N, 16]);
    }));
    model.dispose();
  });
});

describe("a batch's KL rows", () => {
  it("are the method's when absent (vmWeight > 0 trains the KL all the same), and a subset of them when given", () => {
    const model = VwLmm.create(tinyConfig(1), 0);
    const good = tinyBatch(model);
    noGrad(() => scope(() => {
      const given = model.loss(good), absent = model.loss({ ...good, klRows: undefined });
      expect(absent.klRows).toBe(good.klRows!.rows.length);
      expect(absent.klRows).toBeGreaterThan(0);
      expect(absent.kl).toBe(given.kl);
      expect(absent.loss.item()).toBe(given.loss.item());
      // the first two rows alone (the two images are alike, so one image's rows would give the same mean)
      const half = 2;
      const first = model.loss({ ...good, klRows: { rows: good.klRows!.rows.slice(0, half), featureIndex: good.klRows!.featureIndex.slice(0, half) } });
      expect(first.klRows).toBe(half);
      expect(first.kl).not.toBe(given.kl);
    }));
    model.dispose();
  });
});

describe('generate', () => {
  it("takes a tokenizer's eosId as it is (null: none), and refuses a prompt that is not one", () => {
    const model = VwLmm.create(tinyConfig(0), 3);
    const prompt = { tokenIds: Int32Array.from([1, 2, 3]), imagePositions: new Int32Array(0), pixelValues: null };
    const free = model.generate([prompt], { maxNewTokens: 6 })[0];
    expect(free.length).toBe(6);
    expect(model.generate([prompt], { maxNewTokens: 6, eosId: null })[0]).toEqual(free);
    // the first token generated as the EOS: nothing comes out
    expect(model.generate([prompt], { maxNewTokens: 6, eosId: free[0] })[0]).toEqual([]);
    expect(() => model.generate([prompt], { maxNewTokens: 2, eosId: 1.5 })).toThrow('VwLmm.generate: expected an integer token id, or null (none) for eosId but received 1.5 (number)');
    expect(() => model.generate(null as never, { maxNewTokens: 2 })).toThrow('VwLmm.generate: expected an array of prompts { tokenIds, imagePositions, pixelValues } for prompts but received null');
    expect(() => model.generate([{ ...prompt, tokenIds: [1, 2] as never }], { maxNewTokens: 2 })).toThrow('VwLmm.generate: expected an Int32Array of token ids for prompts[0].tokenIds but received array(2)');
    expect(() => model.generate([{ ...prompt, tokenIds: Int32Array.from([1, 40]) }], { maxNewTokens: 2 })).toThrow(/^VwLmm\.generate: prompt 0: expected token ids in \[0, 40\) but received 40 at index 1/);
    // past maxPositionEmbeddings (64 here): RoPE places any position, as transformers continues
    expect(model.generate([prompt], { maxNewTokens: 70 })[0].length).toBe(70);
    model.dispose();
  });
});
