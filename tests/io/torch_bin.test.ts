// PyTorch checkpoints (src/io/torch_bin.ts) against fixtures torch.save wrote (scripts/make_torch_bin_fixture.py):
// every storage dtype, strided views and storage offsets, Parameters, 0-dim and empty tensors; a sharded
// pytorch_model.bin checkpoint equal to its safetensors twin; a pickle that would run os.system refused by name
// without anything run; the legacy format, truncated and garbled files refused with errors that name the problem.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/io/safetensors';
import { readTorchBin, unpickle } from '../../src/io/torch_bin';
import { readCheckpointWeights } from '../../src/model/checkpoint';
import { tempDirs } from '../support/tmp';

const fx = path.join(__dirname, '..', 'fixtures');
const dir = path.join(fx, 'torch_bin');
const tmp = tempDirs('torchbin');

describe('PyTorch .bin checkpoints', () => {
  it('every dtype, strided views, offsets, Parameters, 0-dim and empty tensors read as torch saved them', () => {
    const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8').replace(/\bInfinity\b/g, '1e999')) as Record<string, { shape: number[]; values: number[] }>;
    const got = readTorchBin(path.join(dir, 'state.bin'));
    expect([...got.keys()].sort()).toEqual(Object.keys(expected).sort()); // 'step' (an int) is not a tensor
    for (const [name, want] of Object.entries(expected)) {
      const t = got.get(name)!;
      expect(t.shape, name).toEqual(want.shape);
      const isInt = ['i64', 'bool'].includes(name);
      expect(t.dtype, name).toBe(isInt ? 'int32' : 'float32');
      // float32 of the stored value (f16, bf16 exact; f64 rounded once), ints exact
      expect(Array.from(t.data), name).toEqual(isInt ? want.values : Array.from(Float32Array.from(want.values)));
    }
    expect([...readTorchBin(path.join(dir, 'state.bin'), { filter: (n) => n.startsWith('f') }).keys()].sort()).toEqual(['f16', 'f32', 'f64']);
  });

  it('a sharded pytorch_model.bin checkpoint loads as its safetensors twin does', () => {
    const bin = readCheckpointWeights(path.join(dir, 'tiny_llama_bin'));
    const st = readSafetensors(path.join(fx, 'tiny_llama', 'model.safetensors'));
    expect([...bin.keys()].sort()).toEqual([...st.keys()].sort());
    for (const [n, t] of st) {
      expect(bin.get(n)!.shape, n).toEqual(t.shape);
      expect(Array.from(bin.get(n)!.data), n).toEqual(Array.from(t.data));
    }
  });

  it('a pickle that would run os.system is refused by name, and nothing runs', () => {
    const marker = '/tmp/vwlmm-evil-pickle-ran';
    fs.rmSync(marker, { force: true });
    expect(() => readTorchBin(path.join(dir, 'evil.bin'))).toThrow(/evil.bin: refuses the global (posix|os)\.system: a checkpoint's pickle may only rebuild tensors/);
    expect(fs.existsSync(marker)).toBe(false);
    // the same for globals written by hand: builtins.eval, and an allowed name with a forbidden call shape
    const pkl = (body: string) => Buffer.concat([Buffer.from([0x80, 2]), Buffer.from(body, 'latin1'), Buffer.from('.')]);
    expect(() => unpickle('x.pkl', pkl('cbuiltins\neval\n(X\u0004\u0000\u0000\u00001+1tR'))).toThrow(/refuses the global builtins\.eval/);
    expect(() => unpickle('x.pkl', pkl('ctorch\nFloatStorage\n)R'))).toThrow(/torch\.FloatStorage is a type here, not something to call/);
  });

  it('the legacy format, truncated, garbled and non-zip files give errors naming the file and the problem', () => {
    expect(() => readTorchBin(path.join(dir, 'legacy.bin'))).toThrow(/legacy.bin: the legacy torch.save format \(PyTorch < 1.6, not a zip archive\) is not supported/);
    const d = tmp();
    const src = fs.readFileSync(path.join(dir, 'state.bin'));
    const cut = path.join(d, 'cut.bin');
    fs.writeFileSync(cut, src.subarray(0, src.length - 200));
    expect(() => readTorchBin(cut)).toThrow(/cut.bin: .*(end-of-central-directory|truncated|runs past)/);
    const text = path.join(d, 'text.bin');
    fs.writeFileSync(text, 'not a checkpoint at all\n');
    expect(() => readTorchBin(text)).toThrow(/text.bin: .*not a zip archive/);
    expect(() => readTorchBin(path.join(d, 'missing.bin'))).toThrow(/missing.bin: .*(not found|no such file)/i);
    // a flipped byte inside data.pkl: a clear error, never a crash
    for (let k = 0; k < 40; k++) {
      const b = Buffer.from(src);
      const at = 40 + ((k * 97) % 600);
      b[at] ^= 0x5a;
      const f = path.join(d, `garbled${k}.bin`);
      fs.writeFileSync(f, b);
      try {
        readTorchBin(f);
      } catch (e) {
        expect((e as Error).message, `byte ${at}`).toMatch(/^(torch checkpoint|zip|safetensors): /);
      }
    }
  });
});
