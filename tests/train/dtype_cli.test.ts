// --dtype on `vwlmm train`: bf16 trains (with LoRA adapters too) to weights close to the fp32 run's but not
// equal to them (the products were rounded), the checkpoint holds fp32 master weights, and a bad value fails
// with a message naming --dtype; generate and eval take it too. --residual-dtype bf16 trains close to the fp32
// stream and is refused without bf16 compute.
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/io/safetensors';
import { cli, writeCliFixture } from './support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('dtypecli');

describe('vwlmm train --dtype', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let dir: string;
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir, { images: 4 });
  });

  const runs = new Map<string, ReturnType<typeof readSafetensors>>();
  /** A 3-step LoRA run with `flags`; its checkpoint's tensors (each distinct run once). */
  const run = (...flags: string[]) => {
    const key = flags.join(' ');
    if (!runs.has(key)) {
      const out = path.join(dir, `run${runs.size}`);
      const r = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '3', '--batch-size', '2',
        '--lora-r', '2', '--trainable', 'projector,vm,lora', '--lr', '1e-2', ...flags);
      expect(r.status, r.stderr).toBe(0);
      runs.set(key, readSafetensors(path.join(out, 'checkpoint', 'model.safetensors')));
    }
    return runs.get(key)!;
  };
  // The updates point the same way (AdamW's normalised steps amplify small gradient differences, so the
  // tolerances of one step are tests/model/mixed_precision.test.ts's; this checks the flag reaches training).
  const closeNotEqual = (a: ReturnType<typeof run>, b: ReturnType<typeof run>) => {
    const init = readSafetensors(path.join(fx.init, 'model.safetensors'));
    const cosine = (x: number[], y: number[]) => x.reduce((s, v, i) => s + v * y[i], 0) / Math.sqrt(x.reduce((s, v) => s + v * v, 0) * y.reduce((s, v) => s + v * v, 0));
    for (const name of ['model.mm_projector.0.weight', 'vm_head.weight', 'model.layers.0.mlp.down_proj.lora_B.weight']) {
      const ta = a.get(name)!, tb = b.get(name)!;
      expect(ta.dtype, name).toBe('float32');
      expect(Array.from(ta.data).some((v, i) => v !== tb.data[i]), name).toBe(true);
      const start = init.get(name)?.data ?? new Float32Array(ta.data.length); // lora_B starts at zero
      const da = Array.from(ta.data, (v, i) => v - start[i]), db = Array.from(tb.data, (v, i) => v - start[i]);
      expect(cosine(da, db), name).toBeGreaterThan(0.98);
    }
  };

  it('bf16 and fp32 runs (with LoRA) end close but not equal; the checkpoint is float32', () => {
    closeNotEqual(run('--dtype', 'bf16'), run('--dtype', 'fp32'));
  });

  it('--residual-dtype bf16 (with gradient checkpointing) trains close to the fp32 stream; it needs bf16 compute', () => {
    closeNotEqual(run('--dtype', 'bf16', '--residual-dtype', 'bf16', '--gradient-checkpointing'), run('--dtype', 'bf16'));
    const bad = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'bad-residual'), '--steps', '1', '--residual-dtype', 'bf16');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/vwlmm: --residual-dtype bf16 needs bf16 compute \(--dtype bf16; the default on cpu is fp32\)/);
    const badValue = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'bad-residual2'), '--steps', '1', '--residual-dtype', 'fp16');
    expect(badValue.status).toBe(2);
    expect(badValue.stderr).toMatch(/vwlmm: --residual-dtype: expected 'bf16' or 'fp32'/);
  });

  it('generate, eval and answer take --dtype too (one autocast region per generate call)', () => {
    const g = cli('generate', '--checkpoint', fx.init, '--prompt', 'what shape is the red object?', '--max-new-tokens', '3', '--dtype', 'bf16');
    expect(g.status, g.stderr).toBe(0);
    const e = cli('eval', '--checkpoint', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--limit', '4', '--max-new-tokens', '2', '--dtype', 'bf16', '--json');
    expect(e.status, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout.trim().split('\n').pop()!).count).toBe(4);
    const bad = cli('generate', '--checkpoint', fx.init, '--prompt', 'x', '--dtype', 'half');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/vwlmm: --dtype: expected 'bf16' or 'fp32'/);
  });

  it('a bad --dtype fails before training, naming the flag', () => {
    const r = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'bad'), '--steps', '1', '--dtype', 'fp16');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/vwlmm: --dtype: expected 'bf16' or 'fp32' \('bfloat16' \/ 'float32'\) for dtype but received 'fp16'/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
