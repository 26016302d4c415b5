// Arguments a user trial got wrong without a word, or with a message that did not name the problem: misspelt option
// keys (applyLora's targetModule put adapters on every Linear; initProcessGroup's torch spelling timeout; a
// tokenizer's and OpProgram.record's), runDemo's options (a scale of -1 made a 1,001-step stage), seeds that were
// truncated or wrapped (1.5 acted as 1, -1 as 2^32 - 1, 2^32 as 0), clipGradNorm's negative maxNorm (every gradient's
// sign flipped), AdamW's int32 and disposed parameters, a replay's input of another element type (its bytes
// reinterpreted), and "Invalid typed array length" for a negative Linear size or a huge preprocessClip size.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, Generator, initProcessGroup, nn, OpProgram, preprocessClip, runDemo, scope, Tensor, TextTokenizer, VwLmm, writeSortOfClevr } from '../../src';
import { applyLora, loraConfigOf, saveLoraAdapter } from '../../src/model/lora';
import { writeWordLevelTokenizer } from '../../src/data/word_level_tokenizer';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('argument-checks');
const fixtures = path.join(__dirname, '..', 'fixtures');

function tinyLlama(): nn.LlamaForCausalLM {
  const cfg = nn.llamaConfigFromHF(JSON.parse(fs.readFileSync(path.join(fixtures, 'tiny_llama', 'config.json'), 'utf8')));
  return new nn.LlamaForCausalLM(cfg, { generator: new Generator(0) });
}

describe('argument checks', () => {
  it('applyLora and saveLoraAdapter refuse unknown option keys and a non-object config', () => {
    const m = tinyLlama();
    try {
      expect(() => applyLora(m, { r: 4, alpha: 8, dropout: 0, targetModule: ['q_proj'] } as never))
        .toThrow("applyLora: unknown option 'targetModule' (did you mean 'targetModules'?); known: r, alpha, dropout, targetModules, seed");
      expect(loraConfigOf(m)).toBeNull(); // nothing was added
      expect(() => applyLora(m, null as never)).toThrow('applyLora: expected an object { r, alpha, dropout, targetModules, seed } for config but received null');
      expect(() => applyLora(m, { r: 4, alpha: 8, targetModules: 'q_proj' as never })).toThrow(/^applyLora: expected an array of module names .* for targetModules but received 'q_proj' \(string\)$/);
      expect(() => applyLora(m, { r: 4, alpha: 8, seed: -1 })).toThrow(/^applyLora: expected an integer seed in \[0, 4294967295\] .*for seed but received -1$/);
      expect(applyLora(m, { r: 4, alpha: 8, targetModules: ['q_proj'] })).toBe(m.model.layers.items.length);
      const dir = path.join(tmp(), 'adapter');
      expect(() => saveLoraAdapter(dir, m, { baseModel: 'x' } as never)).toThrow(`saveLoraAdapter: ${dir}: unknown option 'baseModel'; known: baseModelNameOrPath, nonLoraTrainables, layout`);
      expect(() => saveLoraAdapter(dir, m, null as never)).toThrow(`saveLoraAdapter: ${dir}: expected an object`);
      expect(fs.existsSync(dir)).toBe(false);
      saveLoraAdapter(dir, m, { baseModelNameOrPath: 'x' });
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe('x');
    } finally {
      m.dispose();
    }
  });

  it('initProcessGroup refuses an unknown option before starting anything', async () => {
    await expect(initProcessGroup({ backend: 'mpi', timeout: 5 } as never)).rejects.toThrow("initProcessGroup: unknown option 'timeout' (did you mean 'timeoutMs'?); known: backend, timeoutMs, checkCollectives, library");
    await expect(initProcessGroup([] as never)).rejects.toThrow(/^initProcessGroup: expected an object/);
  });

  it('TextTokenizer refuses unknown option keys (constructor, encode, decode) and names a string token id', () => {
    const file = path.join(tmp(), 'tokenizer.json');
    writeWordLevelTokenizer(file, ['red', 'blue']);
    expect(() => new TextTokenizer(file, { modelMaxLenght: 5 } as never)).toThrow("TextTokenizer: unknown option 'modelMaxLenght'; known: config, bosToken, eosToken, unkToken, padToken, source");
    expect(() => new TextTokenizer(file, null as never)).toThrow(/^TextTokenizer: expected an object of options/);
    const tok = new TextTokenizer(file);
    expect(() => tok.encode('red', { addSpecialTokns: true } as never)).toThrow("TextTokenizer.encode: unknown option 'addSpecialTokns'; known: addBos");
    expect(() => tok.encode('red', { add_bos: true } as never)).toThrow("TextTokenizer.encode: unknown option 'add_bos' (did you mean 'addBos'?)");
    expect(() => tok.decode([1], { skipSpecials: false } as never)).toThrow("TextTokenizer.decode: unknown option 'skipSpecials' (did you mean 'skipSpecial'?)");
    expect(() => tok.decode(['3'] as never)).toThrow("TextTokenizer.decode: ids[0] is a string ('3'), expected an integer token id");
    expect(() => tok.decode([1, null] as never)).toThrow('TextTokenizer.decode: ids[1] is null, expected an integer token id');
    expect(() => tok.decode([1.5])).toThrow('TextTokenizer.decode: ids[0] = 1.5 is not an integer');
    const red = tok.encode('red');
    expect(tok.encode('red', {})).toEqual(red);
    expect(tok.decode(red, { skipSpecial: true })).toBe('red');
  });

  it('OpProgram.record refuses unknown options; replay refuses an input of another element type', () => {
    expect(() => OpProgram.record('cpu', [], () => {}, { grpah: false } as never)).toThrow("OpProgram.record: unknown option 'grpah' (did you mean 'graph'?); known: poolOf, graph");
    expect(() => OpProgram.tryRecord('cpu', [], () => {}, null as never)).toThrow(/^OpProgram\.record: expected an object of options/);
    const x = Float32Array.from([1, 2, 3, 4]);
    const p = OpProgram.record('cpu', [x], () => scope(() => void Tensor.fromArray(x, [4]))); // the upload of x: the program's input 0
    try {
      expect(() => p.replay([new Int32Array(4)])).toThrow('OpProgram.replay: expected the element type it was recorded with, Float32Array (another type\'s bytes would be read as Float32Array values) for inputs[0] but received Int32Array(4)');
      expect(() => p.replay([new Uint8Array(16)])).toThrow(/for inputs\[0\] but received Uint8Array\(16\)$/);
      p.replay([Float32Array.from([5, 6, 7, 8])]); // the recorded type replays
    } finally {
      p.dispose();
    }
  });

  it('runDemo refuses unknown keys, a scale outside (0, 100] and a seed outside [0, 2^32 - 1] before doing anything', async () => {
    const outDir = path.join(tmp(), 'demo');
    const o = { outDir, seed: 0, ablation: false, scale: 1, quiet: true };
    await expect(runDemo({ ...o, shedule: 'paper' } as never)).rejects.toThrow("runDemo: unknown option 'shedule' (did you mean 'schedule'?)");
    for (const scale of [0, -1, 1e9, 100.5, Infinity])
      await expect(runDemo({ ...o, scale })).rejects.toThrow(`runDemo: expected a number in (0, 100] for scale (the training steps' multiplier, as vwlmm demo --scale) but received ${scale}`);
    await expect(runDemo({ ...o, scale: NaN })).rejects.toThrow('runDemo: expected a number in (0, 100] for scale but received NaN (number)');
    await expect(runDemo({ ...o, scale: '1' as never })).rejects.toThrow(TypeError);
    for (const seed of [1.5, -1, 2 ** 32])
      await expect(runDemo({ ...o, seed })).rejects.toThrow(new RegExp(`^runDemo: expected an integer seed in \\[0, 4294967295\\] .*for seed but received ${seed}$`));
    await expect(runDemo({ ...o, quiet: 'yes' as never })).rejects.toThrow("runDemo: expected a boolean for quiet but received 'yes' (string)");
    await expect(runDemo({ ...o, reportTo: ['wandb'] as never })).rejects.toThrow(/^runDemo: expected \['tensorboard'\] or \[\] \(TrainerOptions\.reportTo\) for reportTo but received/);
    await expect(runDemo(null as never)).rejects.toThrow(/^runDemo: expected an object/);
    expect(fs.existsSync(outDir)).toBe(false);
  });

  it('Generator refuses a seed it would truncate or wrap; every 32-bit seed works as before', () => {
    for (const seed of [1.5, -1, 2 ** 32, Infinity])
      expect(() => new Generator(seed)).toThrow(new RegExp(`^Generator: expected an integer seed in \\[0, 4294967295\\] \\(the generators are 32-bit\\) for seed but received ${seed}$`));
    expect(() => new Generator(1.5)).toThrow(RangeError);
    expect(() => new Generator(NaN)).toThrow(TypeError);
    expect(() => new Generator('1' as never)).toThrow("Generator: expected an integer seed in [0, 4294967295] for seed but received '1' (string)");
    // the streams of valid seeds are unchanged (the start state is seed ^ 0x9e3779b9 as 32 bits)
    expect(new Generator(0).uniform()).toBe(0.3588899802416563);
    expect(new Generator(1).uniform()).toBe(0.18967728852294385);
    const top = new Generator(2 ** 32 - 1);
    expect(top.uniform()).toBeGreaterThanOrEqual(0);
    // forks derive 32-bit seeds, so they keep working
    expect(new Generator(2 ** 32 - 1).fork('x').fork('').uniform()).toBeLessThan(1);
    // the public functions that take a seed name themselves
    expect(() => writeSortOfClevr('/nonexistent-never-written', { train: 1, test: 1, seed: 1.5 })).toThrow(/^writeSortOfClevr: expected an integer seed .* for seed but received 1\.5$/);
    expect(() => VwLmm.create({} as never, -1)).toThrow(/^VwLmm\.create: expected an integer seed .* for seed but received -1$/);
  });

  it('clipGradNorm refuses a negative or NaN maxNorm; 0 zeroes the gradients', () => {
    scope(() => {
      const p = Tensor.fromArray(Float32Array.from([1, 2]), [2]);
      p.requiresGrad = true;
      p.grad = Tensor.fromArray(Float32Array.from([3, 4]), [2]);
      expect(() => clipGradNorm([p], -1)).toThrow('clipGradNorm: expected a number >= 0 for maxNorm (the largest global gradient norm to leave) but received -1');
      expect(() => clipGradNorm([p], NaN)).toThrow(TypeError);
      expect(() => clipGradNorm([p], 1, { error_if_nonfinite: false } as never)).toThrow("clipGradNorm: unknown option 'error_if_nonfinite' (did you mean 'errorIfNonfinite'?)");
      expect([...p.grad.toArray()]).toEqual([3, 4]); // untouched by the refused calls
      expect(clipGradNorm([p], Infinity)).toBe(5);
      expect([...p.grad.toArray()]).toEqual([3, 4]);
      expect(clipGradNorm([p], 0)).toBe(5);
      expect([...p.grad.toArray()]).toEqual([0, 0]);
      p.grad.dispose();
      p.grad = null;
    });
  });

  it('AdamW refuses a parameter that is not float32, and a step over a disposed parameter names it', () => {
    scope(() => {
      const ints = Tensor.fromArray(Int32Array.from([1, 2]), [2]);
      expect(() => new AdamW([ints], { lr: 0.1 })).toThrow('AdamW: expected a float32 tensor (a parameter to train) for params[0] but received int32 cpu tensor of shape [2]');
      const a = Tensor.fromArray(Float32Array.from([1, 2]), [2]), b = Tensor.fromArray(Float32Array.from([3]), [1]);
      a.requiresGrad = b.requiresGrad = true;
      expect(() => new AdamW([{ params: [a] }, { params: [b, ints] }], { lr: 0.1 })).toThrow('AdamW: expected a float32 tensor (a parameter to train) for params[1] of parameter group 1 but received int32 cpu tensor of shape [2]');
      expect(() => new AdamW([a, 3 as never], { lr: 0.1 })).toThrow(TypeError);
      const opt = new AdamW([{ params: [a] }, { params: [b] }], { lr: 0.1 });
      try {
        b.grad = Tensor.fromArray(Float32Array.from([1]), [1]);
        opt.step();
        expect(b.toArray()[0]).not.toBe(3);
        expect(() => opt.step({ grad_scale: 1 } as never)).toThrow("AdamW.step: unknown option 'grad_scale' (did you mean 'gradScale'?)");
        b.dispose();
        expect(() => opt.step()).toThrow('AdamW.step: parameter 1 (AdamW.params[1], a float32 tensor of shape [1]) has been disposed');
        const c = Tensor.fromArray(Float32Array.from([1]), [1]);
        c.dispose();
        expect(() => new AdamW([c], { lr: 0.1 })).toThrow('AdamW: params[0] (a float32 tensor of shape [1]) has been disposed');
      } finally {
        opt.dispose();
      }
    });
  });

  it('a layer of a negative or too large size, and a preprocessClip size too large, are named', async () => {
    const init = { generator: new Generator(0) };
    expect(() => new nn.Linear(-3, 2, { bias: false, std: 0.1, init })).toThrow('Linear: expected a non-negative integer for inFeatures but received -3 (number)');
    expect(() => new nn.Linear(2, 1.5, { bias: false, std: 0.1, init })).toThrow('Linear: expected a non-negative integer for outFeatures but received 1.5 (number)');
    expect(() => new nn.Linear(2 ** 20, 2 ** 20, { bias: false, std: 0.1, init })).toThrow('Linear: inFeatures 1048576 x outFeatures 1048576 make a weight of 1099511627776 values, more than one tensor holds (4294967295)');
    expect(() => new nn.Embedding(-1, 2, { std: 0.1, init })).toThrow('Embedding: expected a non-negative integer for num but received -1 (number)');
    expect(() => new nn.RMSNorm(-4, 1e-6, init)).toThrow('RMSNorm: expected a non-negative integer for dim but received -4 (number)');
    // a Generator where InitOptions go (it failed deep inside, reading 'normals' of undefined)
    expect(() => new nn.Linear(2, 3, { bias: false, std: 0.1, init: new Generator(0) as never })).toThrow(/^nn: expected InitOptions \{ generator: Generator, device\?, uninitialized\?, \.\.\. \} \(pass \{ generator: it \}\) for init but received/);
    expect(() => new nn.RMSNorm(4, 1e-6, { generator: 3 } as never)).toThrow("nn: expected a Generator (or uninitialized: true) for init.generator but received 3 (number)");
    expect(() => new nn.Linear(2, 3, { bias: false, std: 0.1, init: null as never })).toThrow(/^nn: expected InitOptions .* for init but received null/);
    const img = { width: 2, height: 2, data: new Uint8Array(12) };
    await expect(preprocessClip(img, { size: 1e6 })).rejects.toThrow('preprocessClip: size must be at most 16384 (the output is 3 x size x size float32 values), got 1000000');
    // a long thin image resized to a large (allowed) size: named, not "Invalid typed array length"
    const thin = { width: 1, height: 300000, data: new Uint8Array(900000) };
    await expect(preprocessClip(thin, { size: 16384 })).rejects.toThrow(/^preprocessClip: size 16384 resizes the 1 x 300000 image's shortest side to 16384, a 16384 x 4915200000 image/);
    expect((await preprocessClip(img, { size: 4 })).length).toBe(3 * 4 * 4);
  });
});
