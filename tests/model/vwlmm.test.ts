// VW-LMM model, checkpoints and the trainer: the objective against a composition of independently
// tested pieces, checkpoint round trip, exact resume, and the data flow of the demo on a tiny budget.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { fused, memoryStats, noGrad, F, scope, Tensor } from '../../src';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../../src/model/config';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { batchOf, makeSplit, makeTokenizer, questionConversation, stageBatches, tokenizeSamples } from '../../src/demo/task';
import { Generator } from '../../src/random';
import { readTrainerState, Trainer } from '../../src/train/trainer';
import { liveMemory } from '../support/memory';

const tmp = tempDirs('model');

function tinyConfig(vocabSize: number, vmWeight = 1): VwLmmConfig {
  return {
    llm: { vocabSize, hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: 0.1 },
    vision: { hiddenSize: 12, intermediateSize: 16, numLayers: 2, numHeads: 2, imageSize: 75, patchSize: 15, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.1, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 75, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
  };
}

function tinyData(n = 8) {
  const { tokenizer, json } = makeTokenizer();
  const split = makeSplit(n, new Generator(3), { nonRelational: 2, relational: 2 });
  const { samples } = tokenizeSamples(split.questions.map((q, i) => ({ image: i, turns: questionConversation(q) })), tokenizer, 'vicuna_v1');
  return { tokenizer, json, split, samples };
}

describe('VW-LMM', () => {
  it('loss = CE(text) + vmWeight * KL(next patch visual word || prediction), recomputed from its parts', () => {
    const { tokenizer, split, samples } = tinyData(2);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize, 0.7), 1);
    const batch = batchOf(samples, split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD });
    noGrad(() => scope(() => {
      const out = model.loss(batch);
      const { h, features } = model.hidden(batch);
      const ce = fused.linearCrossEntropy(h, model.lm_head.weight, Tensor.fromArray(batch.targets!, [batch.B * batch.T]), { grad: false }).loss;
      const rows = batch.klRows!;
      // every KL row: the token before an image's first patch, and patches 1..P-1 (P = 25, two images)
      expect(rows.rows.length).toBe(2 * 25);
      const kl = fused.visualWordKL(F.gatherRows(h, Tensor.fromArray(rows.rows, [rows.rows.length])), model.lm_head.weight,
        F.gatherRows(features!, Tensor.fromArray(rows.featureIndex, [rows.rows.length])), model.vm_head!.weight, { grad: false }).loss;
      expect(out.ce).toBeCloseTo(ce, 6);
      expect(out.kl).toBeCloseTo(kl, 6);
      expect(out.loss.item()).toBeCloseTo(ce + 0.7 * kl, 5);
    }));
    model.dispose();
  });

  it('VwLmm.create checks its config: a bad one is refused naming the key, before any forward', () => {
    const base = tinyConfig(32);
    const bad: [string, (c: any) => void, string][] = [
      ['no numKvHeads', (c) => delete c.llm.numKvHeads, 'config: llm.numKvHeads must be a positive integer, got undefined'],
      ['no vision', (c) => delete c.vision, 'config: vision must be an object, got undefined'],
      ['3 KV heads for 2', (c) => (c.llm.numKvHeads = 3), 'config: llm.numHeads 2 must be a multiple of llm.numKvHeads 3'],
      ['an odd head size', (c) => (c.llm.hiddenSize = 18, c.llm.numHeads = 6, c.llm.numKvHeads = 6), 'config: llm.hiddenSize 18 must split into 6 heads of an even size'],
      ['relu', (c) => (c.vision.hiddenAct = 'relu'), 'config: vision.hiddenAct "relu" is not supported (quick_gelu | gelu)'],
      ['an unknown template', (c) => (c.template = 'chatml'), "config: unknown conversation template 'chatml'"],
      ['selectLayer -5 of 2 layers', (c) => (c.selectLayer = -5), 'config: mm_vision_select_layer -5 is out of range for a 2-layer tower'],
      ['image size 64 for a 75-px tower', (c) => (c.image.size = 64), 'config: image_size 64 (the preprocessing) differs from vision_config.image_size 75'],
    ];
    for (const [what, edit, msg] of bad) {
      const c = structuredClone(base);
      edit(c);
      expect(() => VwLmm.create(c, 0), what).toThrow(msg);
    }
    VwLmm.create(base, 0).dispose();
  });

  it('plain LLaVA mode has no vm_head and a CE-only loss', () => {
    const { tokenizer } = tinyData(1);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize, 0), 1);
    expect(model.vm_head).toBeNull();
    expect([...model.namedParameters().keys()].some((k) => k.startsWith('vm_head'))).toBe(false);
    model.dispose();
  });

  it('a frozen tower leaves only its features for the backward, however deep it is; a trainable one keeps its graph', () => {
    const { tokenizer, split, samples } = tinyData(3);
    const batch = batchOf(samples.slice(0, 3), split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD });
    const nImages = batch.imagePositions.length / 25;
    // bytes live after imageFeatures under autograd (the projector trains), and the projector's gradient
    const held = (numLayers: number, towerTrains: boolean) => {
      const c = tinyConfig(tokenizer.vocabSize);
      const model = VwLmm.create({ ...c, vision: { ...c.vision, numLayers } }, 5);
      for (const p of model.visionTower.parameters()) p.requiresGrad = towerTrains;
      const before = memoryStats().cpu.liveBytes;
      let bytes = 0;
      const grad = scope(() => {
        const f = model.imageFeatures(batch.pixelValues!, nImages);
        bytes = memoryStats().cpu.liveBytes - before;
        F.sum(f).backward();
        return Array.from(model.model.mm_projector.parameters()[0].grad!.toArray());
      });
      model.dispose();
      return { bytes, grad };
    };
    // selectLayer -2: 1 layer run of 2, 4 of 5; the layers are identical in what they produce
    const shallow = held(2, false), deep = held(5, false);
    expect(deep.bytes).toBe(shallow.bytes);
    expect(shallow.grad.some((g) => g !== 0)).toBe(true);
    // trained, each extra layer's activations stay for its backward ([nImages, 26, 12] float32 is one of them)
    expect(held(5, true).bytes - held(2, true).bytes).toBeGreaterThan(3 * nImages * 26 * 12 * 4);
  });

  it('checkpoint round trip: LLaVA names, identical outputs after loading', () => {
    const { tokenizer, json, split, samples } = tinyData(2);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 2);
    const names = [...model.namedParameters().keys()];
    for (const n of ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.norm.weight', 'model.mm_projector.0.weight', 'model.mm_projector.2.bias',
      'model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight', 'lm_head.weight', 'vm_head.weight']) expect(names).toContain(n);
    const dir = path.join(tmp(), 'ckpt');
    saveCheckpoint(dir, model, { tokenizer: json });
    const cfgJson = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(cfgJson.model_type).toBe('llava');
    expect(cfgJson.mm_projector_type).toBe('mlp2x_gelu');
    expect(cfgJson.mm_vision_select_layer).toBe(-2);
    const loaded = loadCheckpoint(dir);
    expect(loaded.tokenizerPath).toBe(path.join(dir, 'tokenizer.json'));
    const batch = batchOf(samples, split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD });
    const a = noGrad(() => scope(() => model.loss(batch).loss.item()));
    const b = noGrad(() => scope(() => loaded.model.loss(batch).loss.item()));
    expect(b).toBe(a);
    model.dispose();
    loaded.model.dispose();
    expect(() => loadCheckpoint(path.join(dir, 'nope'))).toThrow(/is not a directory/);
  });

  it('saveCheckpoint replaces an earlier checkpoint folder whole, but never deletes a file or a folder of other files', () => {
    const m = VwLmm.create(tinyConfig(32), 1), d = tmp();
    const ck = path.join(d, 'ck');
    saveCheckpoint(ck, m);
    fs.writeFileSync(path.join(ck, 'trainer_state.json'), '{}');
    saveCheckpoint(ck, m); // an earlier checkpoint, of a checkpoint's files: replaced
    expect(fs.existsSync(path.join(ck, 'trainer_state.json'))).toBe(false);
    // a user's notes beside the weights would go with them: refused, and so is a folder of other files
    fs.writeFileSync(path.join(ck, 'notes.txt'), 'keep me');
    expect(() => saveCheckpoint(ck, m)).toThrow(`saveCheckpoint: ${ck} holds files that are not a checkpoint's (notes.txt): a save replaces its folder whole`);
    expect(fs.readFileSync(path.join(ck, 'notes.txt'), 'utf8')).toBe('keep me');
    const notes = path.join(d, 'notes');
    fs.mkdirSync(path.join(notes, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(notes, 'notes.txt'), 'keep me');
    expect(() => saveCheckpoint(notes, m)).toThrow(`saveCheckpoint: ${notes} holds files that are not a checkpoint's (notes.txt, sub)`);
    expect(fs.readFileSync(path.join(notes, 'notes.txt'), 'utf8')).toBe('keep me');
    // a project's config.json (no weights a save wrote): not a checkpoint to replace
    const project = path.join(d, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'config.json'), '{"name": "my project"}');
    expect(() => saveCheckpoint(project, m)).toThrow(`saveCheckpoint: ${project} is not a checkpoint vwlmm saved (no config.json with a model.safetensors carrying a save's checksum, or a trainer_state.json)`);
    expect(fs.readFileSync(path.join(project, 'config.json'), 'utf8')).toBe('{"name": "my project"}');
    const file = path.join(d, 'file');
    fs.writeFileSync(file, 'data');
    expect(() => saveCheckpoint(file, m)).toThrow(`saveCheckpoint: ${file} exists and is not a directory`);
    expect(fs.readFileSync(file, 'utf8')).toBe('data');
    const empty = path.join(d, 'empty');
    fs.mkdirSync(empty);
    saveCheckpoint(empty, m);
    expect(fs.existsSync(path.join(empty, 'model.safetensors'))).toBe(true);
    m.dispose();
  });

  it('resume continues the loss curve exactly', () => {
    const { tokenizer, json, split, samples } = tinyData(8);
    const bopts = { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD };
    const stages = () => [
      { name: 'a', size: samples.length, makeBatch: (idx: number[]) => batchOf(idx.map((i) => samples[i]), split, bopts), steps: 4, batchSize: 2, lr: 3e-3, trainable: { visionTower: false, projector: true, llm: false, vmHead: true } },
      { name: 'b', size: samples.length, makeBatch: (idx: number[]) => batchOf(idx.map((i) => samples[i]), split, bopts), steps: 4, batchSize: 3, gradAccum: 2, lr: 2e-3, trainable: { visionTower: true, projector: true, llm: true, vmHead: true } },
    ];
    const losses = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'train').map((r) => r.loss as number);
    const full = tmp();
    const m1 = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    new Trainer(m1, stages(), { seed: 9, outDir: full, checkpointFiles: { tokenizer: json } }).run();
    m1.dispose();
    // stopped after 7 steps (inside stage b; stopAfterSteps writes its checkpoint there, as an interruption does), then resumed
    const part = tmp();
    const m2 = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    new Trainer(m2, stages(), { seed: 9, outDir: part, saveEvery: 3, stopAfterSteps: 7, checkpointFiles: { tokenizer: json } }).run();
    m2.dispose();
    const ck = loadCheckpoint(path.join(part, 'checkpoint'));
    const st = readTrainerState(path.join(part, 'checkpoint'));
    expect(st.state.globalStep).toBe(7);
    new Trainer(ck.model, stages(), { seed: 9, outDir: part, checkpointFiles: { tokenizer: json } }).run(st);
    ck.model.dispose();
    expect(losses(part)).toEqual(losses(full));
    expect(losses(full).length).toBe(8);
  });

  it('stageBatches fills one pixel array for every batch, and trains exactly as fresh batches do', () => {
    const { tokenizer, split, samples } = tinyData(8);
    const bopts = { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD };
    const make = stageBatches(samples, split, bopts);
    const b1 = make([5, 1, 2]), b1Pixels = Float32Array.from(b1.pixelValues!);
    expect(b1).toEqual(batchOf([samples[5], samples[1], samples[2]], split, bopts));
    const b2 = make([0, 3]);
    expect(b2).toEqual(batchOf([samples[0], samples[3]], split, bopts));
    expect(b2.pixelValues!.buffer).toBe(b1.pixelValues!.buffer); // sized for 3 images by the first batch, then kept
    expect(make([4, 6, 7]).pixelValues!.buffer).toBe(b1.pixelValues!.buffer);
    expect(make([4, 6, 7, 0]).pixelValues!.buffer).not.toBe(b1.pixelValues!.buffer); // 4 images: grown
    expect(b1Pixels).toEqual(batchOf([samples[5], samples[1], samples[2]], split, bopts).pixelValues); // b1 was right when made
    // the trainer is done with a batch before it makes the next (gradient accumulation: one per micro-batch)
    const weights = (reuse: boolean) => {
      const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
      const makeBatch = reuse ? stageBatches(samples, split, bopts) : (idx: number[]) => batchOf(idx.map((i) => samples[i]), split, bopts);
      new Trainer(model, [{ name: 'a', size: samples.length, makeBatch, steps: 3, batchSize: 3, gradAccum: 2, lr: 3e-3, trainable: { visionTower: true, projector: true, llm: true, vmHead: true } }], { seed: 4 }).run();
      const w = [...model.namedParameters()].map(([, p]) => p.toArray());
      model.dispose();
      return w;
    };
    expect(weights(true)).toEqual(weights(false));
  });

  it('generation: greedy is deterministic, and memory is flat across calls', () => {
    const { tokenizer, split, samples } = tinyData(2);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
    const b = batchOf([samples[0]], split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD });
    const prompt = { tokenIds: b.tokenIds.slice(0, 60), imagePositions: b.imagePositions, pixelValues: b.pixelValues };
    expect(() => model.generate([{ ...prompt, tokenIds: prompt.tokenIds.slice(0, 40) }], { maxNewTokens: 1 })).toThrow(/image position 40 outside its 40 tokens/);
    const g1 = model.generate([prompt, prompt], { maxNewTokens: 5 });
    const before = liveMemory();
    const g2 = model.generate([prompt], { maxNewTokens: 5 });
    expect(liveMemory()).toEqual(before);
    expect(g1[0]).toEqual(g2[0]);
    expect(g1[1]).toEqual(g1[0]);
    expect(g1[0].length).toBe(5);
    const s = model.generate([prompt], { maxNewTokens: 5, temperature: 1, topP: 0.9, seed: 1 });
    expect(s[0].length).toBeLessThanOrEqual(5);
    model.dispose();
  });
});

// VwLmm.generate batches prompts of different lengths with left padding (key mask over the padding, image positions
// shifted, RoPE positions shifted by the pad): tokens must equal those of each prompt run alone, and every step's
// logits must agree with the unpadded run to float rounding.
describe('VW-LMM generate: mixed-length batches', () => {
  type Prompt = { tokenIds: Int32Array; imagePositions: Int32Array; pixelValues: Float32Array | null };
  const MAX_NEW = 6;

  function setup() {
    const { tokenizer, split, samples } = tinyData(4);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
    const one = (i: number) => batchOf([samples[i]], split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD });
    // image positions 32..56 in every sample
    const withImage = (i: number, L: number): Prompt => {
      const b = one(i);
      return { tokenIds: b.tokenIds.slice(0, L), imagePositions: b.imagePositions, pixelValues: b.pixelValues };
    };
    const textOnly = (i: number, from: number, L: number): Prompt => ({ tokenIds: one(i).tokenIds.slice(from, from + L), imagePositions: new Int32Array(0), pixelValues: null });
    return { model, V: tokenizer.vocabSize, withImage, textOnly, full: (i: number) => withImage(i, one(i).T) };
  }

  /** Tokens and each step's logits row of every prompt (onLogits: the rows of a batch in the caller's indices). */
  function run(model: VwLmm, V: number, prompts: Prompt[], opts: { batchSize?: number; eosId?: number } = {}) {
    const logits: Float32Array[][] = prompts.map(() => []);
    const tokens = model.generate(prompts, { maxNewTokens: MAX_NEW, ...opts, onLogits: (l, rows) => rows.forEach((i, b) => logits[i].push(l.slice(b * V, (b + 1) * V))) });
    return { tokens, logits };
  }

  /** Each prompt alone (B = 1, no padding): the reference. */
  function singles(model: VwLmm, V: number, prompts: Prompt[], opts: { eosId?: number } = {}) {
    const r = prompts.map((p) => run(model, V, [p], opts));
    return { tokens: r.map((x) => x.tokens[0]), logits: r.map((x) => x.logits[0]) };
  }

  /** Largest |a - b| / max |b| over every step's logits row of every prompt. */
  function maxRelError(a: Float32Array[][], b: Float32Array[][]): number {
    expect(a.map((x) => x.length)).toEqual(b.map((x) => x.length));
    let worst = 0;
    a.forEach((steps, i) => steps.forEach((row, s) => {
      const ref = b[i][s];
      let diff = 0, scale = 0;
      row.forEach((v, j) => {
        expect(Number.isFinite(v)).toBe(true);
        diff = Math.max(diff, Math.abs(v - ref[j]));
        scale = Math.max(scale, Math.abs(ref[j]));
      });
      worst = Math.max(worst, diff / scale);
    }));
    return worst;
  }

  it('greedy, images and text-only mixed: the tokens of each prompt alone, logits within 1e-5 relative, in the caller\'s order', () => {
    const { model, V, withImage, textOnly } = setup();
    // lengths 60, 20, 70, 5, 58, 60, 20: unsorted, with ties; text-only rows beside image rows in one batch
    const prompts = [withImage(0, 60), textOnly(0, 0, 20), withImage(1, 70), textOnly(2, 57, 5), withImage(2, 58), withImage(3, 60), textOnly(1, 0, 20)];
    const ref = singles(model, V, prompts);
    const before = liveMemory();
    const batched = run(model, V, prompts);
    expect(liveMemory()).toEqual(before);
    expect(batched.tokens).toEqual(ref.tokens);
    expect(batched.tokens.every((t) => t.length === MAX_NEW)).toBe(true);
    expect(batched.logits.every((x) => x.length === MAX_NEW)).toBe(true); // the prefill and every decode step
    expect(maxRelError(batched.logits, ref.logits)).toBeLessThan(1e-5);
    // the rows do differ, so the order check has teeth
    expect(new Set(ref.tokens.map((t) => t.join())).size).toBeGreaterThan(2);
    const reversed = model.generate([...prompts].reverse(), { maxNewTokens: MAX_NEW });
    expect(reversed).toEqual([...ref.tokens].reverse());
    // eos: a row that finishes early keeps being fed in its batch (its tokens ignored); the others are unaffected
    const eosId = ref.tokens[2][1];
    const withEos = run(model, V, prompts, { eosId });
    const refEos = singles(model, V, prompts, { eosId });
    expect(withEos.tokens).toEqual(refEos.tokens);
    expect(withEos.tokens[2]).toEqual(ref.tokens[2].slice(0, 1));
    model.dispose();
  });

  it('one prompt much longer than the other (113 positions of padding)', () => {
    const { model, V, full, textOnly } = setup();
    const prompts = [textOnly(1, 60, 4), full(0)];
    expect(prompts[1].tokenIds.length - prompts[0].tokenIds.length).toBeGreaterThan(10);
    const ref = singles(model, V, prompts);
    const batched = run(model, V, prompts);
    expect(batched.tokens).toEqual(ref.tokens);
    expect(maxRelError(batched.logits, ref.logits)).toBeLessThan(1e-5);
    model.dispose();
  });

  it('decode steps into reserved cache room (grown 1, 2 or 9 positions at a time) match concatenating every step', () => {
    const { model, V, withImage, textOnly } = setup();
    const prompts = [withImage(1, 64), textOnly(0, 3, 9), withImage(0, 57)];
    const gen = (cacheReserve: number) => {
      const logits: Float32Array[][] = prompts.map(() => []);
      const tokens = model.generate(prompts, { maxNewTokens: 9, cacheReserve, onLogits: (l, rows) => rows.forEach((i, b) => logits[i].push(l.slice(b * V, (b + 1) * V))) });
      return { tokens, logits };
    };
    const concat = gen(0);
    const before = liveMemory();
    for (const reserve of [1, 2, 9]) {
      const r = gen(reserve);
      expect(r.tokens, `reserve ${reserve}`).toEqual(concat.tokens);
      expect(maxRelError(r.logits, concat.logits), `reserve ${reserve}`).toBeLessThan(1e-6);
    }
    expect(liveMemory()).toEqual(before); // the cache's buffers and step masks are freed with it
    expect(() => model.generate(prompts, { maxNewTokens: 2, cacheReserve: -1 })).toThrow(/cacheReserve must be a non-negative integer, got -1/);
    model.dispose();
  });

  it('batchSize 1, 3 and larger than the number of prompts give the same tokens and logits', () => {
    const { model, V, withImage, textOnly } = setup();
    const prompts = [withImage(1, 64), textOnly(0, 3, 9), withImage(0, 57), textOnly(3, 70, 30), withImage(2, 61)];
    const ref = singles(model, V, prompts);
    for (const batchSize of [1, 3, 64]) {
      const batched = run(model, V, prompts, { batchSize });
      expect(batched.tokens, `batchSize ${batchSize}`).toEqual(ref.tokens);
      expect(maxRelError(batched.logits, ref.logits), `batchSize ${batchSize}`).toBeLessThan(1e-5);
    }
    expect(() => model.generate(prompts, { maxNewTokens: 1, batchSize: 0 })).toThrow(/batchSize must be a positive integer, got 0/);
    // sampling: one Generator in a fixed order, so the same seed gives the same answers
    const s1 = model.generate(prompts, { maxNewTokens: MAX_NEW, temperature: 1, topP: 0.9, seed: 7, batchSize: 2 });
    const s2 = model.generate(prompts, { maxNewTokens: MAX_NEW, temperature: 1, topP: 0.9, seed: 7, batchSize: 2 });
    expect(s2).toEqual(s1);
    model.dispose();
  });
});
