// safetensors reader/writer: round trips, files made by the Python safetensors library (tests/fixtures, see
// scripts/make_fixtures.py), dtype conversion, every malformed-file error, sharded checkpoints, atomic writes.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HostTensor, SafetensorsError, readSafetensors, readSafetensorsHeader,
  readSafetensorsWithMetadata, writeSafetensors,
} from '../../src/io/safetensors';
import { readCheckpointWeights } from '../../src/model/checkpoint';
import { rngFor } from '../support/random';

const FIX = path.resolve(__dirname, '..', 'fixtures');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-safetensors-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

let counter = 0;
function tmpFile(name = 'x.safetensors'): string {
  const d = path.join(tmp, `case${counter++}`);
  fs.mkdirSync(d);
  return path.join(d, name);
}

function f32(shape: number[], values?: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(values ?? Array.from({ length: n }, (_, i) => Math.sin(i + 1) * 10 ** ((i % 7) - 3)));
  return { dtype: 'float32', shape, data };
}
function i32(shape: number[], values?: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Int32Array(values ?? Array.from({ length: n }, (_, i) => (i * 2654435761) | 0));
  return { dtype: 'int32', shape, data };
}

/** Raw file: 8-byte length (default: the header's), header text, data bytes. */
function rawFile(file: string, header: string | object, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): string {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.byteLength));
  fs.writeFileSync(file, Buffer.concat([len, h, Buffer.from(data)]));
  return file;
}

function bits(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
}

function get(m: Map<string, HostTensor>, name: string): HostTensor {
  const t = m.get(name);
  if (!t) throw new Error(`missing tensor ${name}`);
  return t;
}

/** max |a - b| / max |b| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-300);
}

/**
 * bfloat16 rounding in float64 arithmetic, independent of src/bf16.ts's bit tricks: 8 significant bits (the smallest
 * exponent's spacing for subnormals), ties to even, past bfloat16's largest value infinity; NaN, +-0 and +-inf as they are.
 */
function bf16Reference(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const ax = Math.abs(x);
  let e = Math.floor(Math.log2(ax));
  if (2 ** e > ax) e--;
  if (2 ** (e + 1) <= ax) e++;
  const ulp = 2 ** (Math.max(e, -126) - 7);
  const q = ax / ulp, f = Math.floor(q), r = q - f;
  const y = (r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f) * ulp;
  return Math.sign(x) * (y >= 2 ** 128 ? Infinity : y);
}

describe('writeSafetensors / readSafetensors round trip', () => {
  it('round-trips odd shapes, empty tensors and scalars bit for bit, with metadata', () => {
    const file = tmpFile();
    const special = f32([2, 3], [NaN, -0, Infinity, -Infinity, 1.401298464324817e-45, 3.4028234663852886e38]);
    const tensors = new Map<string, HostTensor>([
      ['odd', f32([3, 5, 7])],
      ['z.scalar', f32([], [-2.75])],
      ['empty', f32([0])],
      ['empty3d', i32([2, 0, 3])],
      ['a.int', i32([7, 1, 3])],
      ['int.scalar', i32([], [-2147483648])],
      ['special', special],
      ['unicode.é✓', f32([1], [42])],
    ]);
    writeSafetensors(file, tensors, { format: 'pt', note: 'ünïcode ok' });
    const { tensors: back, metadata } = readSafetensorsWithMetadata(file);
    expect(metadata).toEqual({ format: 'pt', note: 'ünïcode ok' });
    expect([...back.keys()].sort()).toEqual([...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const r = get(back, name);
      expect(r.dtype, name).toBe(t.dtype);
      expect(r.shape, name).toEqual(t.shape);
      expect(r.data.constructor, name).toBe(t.data.constructor);
      if (t.dtype === 'float32') expect(bits(r.data as Float32Array), name).toEqual(bits(t.data as Float32Array));
      else expect(Array.from(r.data), name).toEqual(Array.from(t.data));
    }
    expect(get(back, 'z.scalar').shape).toEqual([]);
    expect(Array.from(get(back, 'z.scalar').data)).toEqual([-2.75]);
  });

  it('accepts a plain record, writes no __metadata__ without metadata, and reads subarray views correctly', () => {
    const file = tmpFile();
    const big = new Float32Array([9, 1, 2, 3, 4, 9]);
    writeSafetensors(file, { b: { dtype: 'float32', shape: [2, 2], data: big.subarray(1, 5) }, a: i32([1], [5]) });
    const { tensors, metadata } = readSafetensorsWithMetadata(file);
    expect(metadata).toEqual({});
    expect(Array.from(get(tensors, 'b').data)).toEqual([1, 2, 3, 4]);
    expect(Array.from(get(tensors, 'a').data)).toEqual([5]);
  });

  it('writes the format: 8-byte aligned header, names sorted, contiguous offsets, F32/I32 dtypes', () => {
    const file = tmpFile();
    writeSafetensors(file, { zeta: f32([3]), alpha: i32([1, 1]), mid: f32([2, 2]), e: f32([0]) }, { k: 'v' });
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const headerText = buf.subarray(8, 8 + n).toString('utf8');
    const header = JSON.parse(headerText);
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names).toEqual(['alpha', 'e', 'mid', 'zeta']);
    expect(header.__metadata__).toEqual({ k: 'v' });
    expect(header.alpha).toEqual({ dtype: 'I32', shape: [1, 1], data_offsets: [0, 4] });
    expect(header.e).toEqual({ dtype: 'F32', shape: [0], data_offsets: [4, 4] });
    expect(header.mid).toEqual({ dtype: 'F32', shape: [2, 2], data_offsets: [4, 20] });
    expect(header.zeta).toEqual({ dtype: 'F32', shape: [3], data_offsets: [20, 32] });
    expect(buf.byteLength).toBe(8 + n + 32);
    // the header entries are in the same order as the data
    expect(readSafetensorsHeader(file).entries.map((e) => e.name)).toEqual(['alpha', 'e', 'mid', 'zeta']);
  });

  it("floatDtype 'bfloat16': float32 tensors stored as BF16 words rounded as torch (nearest even, NaN kept), int32 as they are; the checksum verifies", () => {
    const file = tmpFile();
    // 1 + 2^-8 ties to 1 (even), 1 + 3 x 2^-8 to 1 + 2^-6; a subnormal, -0, infinities, NaN; an odd offset view
    const values = new Float32Array([0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1e-40, -0, Infinity, -Infinity, NaN, 3.14159, -65504.7]);
    const backing = new Float32Array(values.length + 1);
    backing.set(values, 1);
    writeSafetensors(file, { w: { dtype: 'float32', shape: [2, 5], data: backing.subarray(1) }, n: i32([2], [7, -8]) }, undefined, { checksum: true, floatDtype: 'bfloat16' });
    const header = JSON.parse(fs.readFileSync(file).subarray(8, 8 + Number(fs.readFileSync(file).readBigUInt64LE(0))).toString('utf8'));
    expect(header.n).toEqual({ dtype: 'I32', shape: [2], data_offsets: [0, 8] });
    expect(header.w).toEqual({ dtype: 'BF16', shape: [2, 5], data_offsets: [8, 28] });
    const back = readSafetensors(file); // verifies the checksum of the bytes as written
    expect(Array.from(get(back, 'w').data)).toEqual(Array.from(values, bf16Reference));
    expect(Array.from(get(back, 'w').data.subarray(1, 3))).toEqual([1, 1 + 2 ** -6]); // the ties, by hand
    expect(Object.is(get(back, 'w').data[4], -0)).toBe(true);
    expect(Array.from(get(back, 'n').data)).toEqual([7, -8]);
    // random values over float32's whole range, subnormals and overflow to inf included
    const rng = rngFor('safetensors:bf16');
    const wide = Float32Array.from(rng.normals(4000, 1), (v, i) => v * 10 ** ((i % 80) - 42));
    const wideFile = tmpFile();
    writeSafetensors(wideFile, { w: { dtype: 'float32', shape: [wide.length], data: wide } }, undefined, { floatDtype: 'bfloat16' });
    expect(Array.from(get(readSafetensors(wideFile), 'w').data)).toEqual(Array.from(wide, bf16Reference));
    expect(() => writeSafetensors(tmpFile(), { w: f32([1]) }, undefined, { floatDtype: 'float16' as never })).toThrow(/floatDtype must be 'float32' or 'bfloat16', got "float16"/);
  });

  it('rejects bad tensors before touching the file system', () => {
    const file = tmpFile();
    expect(() => writeSafetensors(file, { a: { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) } }))
      .toThrow(/tensor 'a'.*4 elements but data has 3/);
    expect(() => writeSafetensors(file, { a: { dtype: 'float32', shape: [2], data: new Int32Array(2) } }))
      .toThrow(TypeError);
    expect(() => writeSafetensors(file, { a: { dtype: 'bfloat16' as never, shape: [2], data: new Float32Array(2) } }))
      .toThrow(/dtype must be/);
    expect(() => writeSafetensors(file, { a: { dtype: 'int32', shape: [-1], data: new Int32Array(0) } }))
      .toThrow(RangeError);
    expect(() => writeSafetensors(file, { __metadata__: f32([1]) })).toThrow(/invalid tensor name/);
    expect(() => writeSafetensors(file, { a: f32([1]) }, { x: 3 as unknown as string })).toThrow(/metadata value for 'x'/);
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
  });

  it('LazyHostTensor: read once, as it is written, the same file as the data given at once; a bad read leaves the file as it was', () => {
    const rng = rngFor('lazy');
    const a = Float32Array.from({ length: 6 }, () => rng.normal()), b = Int32Array.from([3, -1, 7]);
    const reads: string[] = [];
    const lazy = (name: string, t: HostTensor) => ({ dtype: t.dtype as 'float32' | 'int32', shape: t.shape, read: () => (reads.push(name), t.data) });
    for (const floatDtype of ['float32', 'bfloat16'] as const) {
      const eager = tmpFile(), late = tmpFile();
      writeSafetensors(eager, { a: { dtype: 'float32', shape: [2, 3], data: a }, b: { dtype: 'int32', shape: [3], data: b } }, { k: 'v' }, { checksum: true, floatDtype });
      reads.length = 0;
      writeSafetensors(late, { b: lazy('b', { dtype: 'int32', shape: [3], data: b }), a: lazy('a', { dtype: 'float32', shape: [2, 3], data: a }) }, { k: 'v' }, { checksum: true, floatDtype });
      expect(reads).toEqual(['a', 'b']); // once each, in the file's order
      expect(fs.readFileSync(late).equals(fs.readFileSync(eager)), floatDtype).toBe(true);
    }
    // a read of the wrong length, or one that fails: the tensor named, the old file in place, no temporary file
    const file = tmpFile();
    writeSafetensors(file, { a: f32([1, 2]) });
    const before = fs.readFileSync(file), dir = fs.readdirSync(path.dirname(file));
    expect(() => writeSafetensors(file, { a: { dtype: 'float32', shape: [2, 2], read: () => new Float32Array(3) } }))
      .toThrow(`writeSafetensors(${file}): tensor 'a': shape [2, 2] has 4 elements but data has 3`);
    expect(() => writeSafetensors(file, { a: { dtype: 'float32', shape: [2], read: () => { throw new Error('the tensor has been disposed'); } } }))
      .toThrow(`writeSafetensors(${file}): tensor 'a': reading it failed: the tensor has been disposed`);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(path.dirname(file))).toEqual(dir);
  });
});

describe('atomic write', () => {
  it('leaves only the target file behind and replaces an existing file', () => {
    const file = tmpFile('model.safetensors');
    writeSafetensors(file, { a: f32([4], [1, 2, 3, 4]) });
    writeSafetensors(file, { b: i32([2], [5, 6]) });
    expect(fs.readdirSync(path.dirname(file))).toEqual(['model.safetensors']);
    const back = readSafetensors(file);
    expect([...back.keys()]).toEqual(['b']);
    expect(Array.from(get(back, 'b').data)).toEqual([5, 6]);
  });

  it('a failed rename removes the tmp file and leaves the target untouched', () => {
    const file = tmpFile('target');
    fs.mkdirSync(file); // rename(tmp, <existing directory>) fails after the data was written
    fs.writeFileSync(path.join(file, 'keep'), 'x');
    expect(() => writeSafetensors(file, { a: f32([1000]) })).toThrow(SafetensorsError);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['target']);
    expect(fs.readdirSync(file)).toEqual(['keep']);
  });

  it('a missing parent directory is a clear error, not a crash', () => {
    const file = path.join(tmp, 'no', 'such', 'dir', 'x.safetensors');
    expect(() => writeSafetensors(file, { a: f32([1]) })).toThrow(/x\.safetensors: write failed: no such file/);
  });
});

describe('files written by the Python safetensors library', () => {
  it('converts F16, BF16, F64 to float32 and I64, I16, I8, U8, BOOL to int32 (dtypes.safetensors)', () => {
    const file = path.join(FIX, 'dtypes.safetensors');
    const { tensors: m, metadata } = readSafetensorsWithMetadata(file);
    expect(metadata).toEqual({ format: 'pt' });
    const dtypes = Object.fromEntries(readSafetensorsHeader(file).entries.map((e) => [e.name, e.dtype]));
    expect(dtypes).toEqual({
      f32: 'F32', f16: 'F16', f16_nan: 'F16', bf16: 'BF16', f64: 'F64', i64: 'I64', i32: 'I32', i16: 'I16',
      i8: 'I8', u8: 'U8', bool: 'BOOL', scalar_f16: 'F16', empty_bf16: 'BF16',
    });
    const expectF = (name: string, shape: number[], values: number[]) => {
      const t = get(m, name);
      expect(t.dtype, name).toBe('float32');
      expect(t.data, name).toBeInstanceOf(Float32Array);
      expect(t.shape, name).toEqual(shape);
      expect(Array.from(t.data), name).toEqual(values); // toEqual distinguishes -0 and 0, NaN equals NaN
    };
    const expectI = (name: string, shape: number[], values: number[]) => {
      const t = get(m, name);
      expect(t.dtype, name).toBe('int32');
      expect(t.data, name).toBeInstanceOf(Int32Array);
      expect(t.shape, name).toEqual(shape);
      expect(Array.from(t.data), name).toEqual(values);
    };
    expectF('f32', [2, 3], [1.5, -2.25, 0, 3.0000000054977558e38, -1.401298464324817e-45, 7]);
    expectF('f16', [9], [1, -2, 0.5, 65504, 5.960464477539063e-8, -0, Infinity, -Infinity, 0.333251953125]);
    expectF('f16_nan', [1], [NaN]);
    expectF('bf16', [2, 3], [1, -3.5, 0.0078125, 3.3895313892515355e38, 9.183549615799121e-41, 1.2676506002282294e30]);
    expectF('f64', [6], [1, -0.5, 1024, 0.10000000149011612, 0.3333333432674408, Infinity]);
    expectF('scalar_f16', [], [2.5]);
    expectF('empty_bf16', [0, 3], []);
    expectI('i64', [2, 3], [0, -1, 2147483647, -2147483648, 123456789, -42]);
    expectI('i32', [3], [7, -7, 2147483647]);
    expectI('i16', [4], [-32768, 32767, 0, -5]);
    expectI('i8', [4], [-128, 127, 0, -1]);
    expectI('u8', [4], [0, 255, 128, 1]);
    expectI('bool', [5], [1, 0, 1, 1, 0]);
  });

  it('converts every F16 bit pattern like a float32 decode of the IEEE half format', () => {
    const file = tmpFile();
    const half = new Uint16Array(65536).map((_, i) => i);
    rawFile(file, { h: { dtype: 'F16', shape: [65536], data_offsets: [0, 131072] } }, new Uint8Array(half.buffer));
    const t = get(readSafetensors(file), 'h').data as Float32Array;
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const f = h & 0x3ff;
      const want = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
      if (!Object.is(t[h], want)) throw new Error(`half 0x${h.toString(16)}: got ${t[h]}, want ${want}`);
    }
  });

  it('reads tiny_llama: HF names and shapes, single file == sharded checkpoint (HF save_pretrained)', () => {
    const single = readCheckpointWeights(path.join(FIX, 'tiny_llama'));
    const sharded = readCheckpointWeights(path.join(FIX, 'tiny_llama_sharded'));
    const expected: Record<string, number[]> = {
      'model.embed_tokens.weight': [61, 32], 'model.norm.weight': [32], 'lm_head.weight': [61, 32],
    };
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}.`;
      Object.assign(expected, {
        [`${p}self_attn.q_proj.weight`]: [32, 32], [`${p}self_attn.k_proj.weight`]: [16, 32],
        [`${p}self_attn.v_proj.weight`]: [16, 32], [`${p}self_attn.o_proj.weight`]: [32, 32],
        [`${p}mlp.gate_proj.weight`]: [40, 32], [`${p}mlp.up_proj.weight`]: [40, 32],
        [`${p}mlp.down_proj.weight`]: [32, 40], [`${p}input_layernorm.weight`]: [32],
        [`${p}post_attention_layernorm.weight`]: [32],
      });
    }
    const shapes = (m: Map<string, HostTensor>) => Object.fromEntries([...m].map(([k, t]) => [k, t.shape]));
    expect(shapes(single)).toEqual(expected);
    expect(shapes(sharded)).toEqual(expected);
    const index = JSON.parse(fs.readFileSync(path.join(FIX, 'tiny_llama_sharded', 'model.safetensors.index.json'), 'utf8'));
    expect(new Set(Object.values(index.weight_map)).size).toBeGreaterThan(1);
    for (const [k, t] of single) {
      expect(t.dtype).toBe('float32');
      expect(bits(get(sharded, k).data as Float32Array), k).toEqual(bits(t.data as Float32Array));
    }
    // the filter option reads a subset
    const sub = readCheckpointWeights(path.join(FIX, 'tiny_llama_sharded'), { filter: (n) => n.startsWith('model.layers.1.') });
    expect(sub.size).toBe(9);
    const config = JSON.parse(fs.readFileSync(path.join(FIX, 'tiny_llama', 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      vocab_size: 61, hidden_size: 32, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
      tie_word_embeddings: false, hidden_act: 'silu', attention_bias: false, mlp_bias: false,
    });
  });

  it('tiny_llama io.safetensors follows the documented conventions (float64 checks in TS)', () => {
    const w = readCheckpointWeights(path.join(FIX, 'tiny_llama'));
    const io = readSafetensors(path.join(FIX, 'tiny_llama', 'io.safetensors'));
    const ids = get(io, 'input_ids');
    const mask = get(io, 'attention_mask');
    expect(ids.dtype).toBe('int32');
    expect(ids.shape).toEqual([2, 7]);
    expect(Array.from(mask.data)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    const [B, T, V, D] = [2, 7, 61, 32];
    expect(get(io, 'logits').shape).toEqual([B, T, V]);
    expect(get(io, 'R').shape).toEqual([B, T, V]);
    for (let k = 0; k <= 2; k++) expect(get(io, `hidden_states.${k}`).shape).toEqual([B, T, D]);
    expect(io.has('hidden_states.3')).toBe(false);
    for (const [name, t] of w) expect(get(io, `grad.${name}`).shape, name).toEqual(t.shape);

    // hidden_states.0 is the embedding output: exact rows of embed_tokens
    const E = get(w, 'model.embed_tokens.weight').data;
    const h0 = get(io, 'hidden_states.0').data;
    for (let r = 0; r < B * T; r++) {
      for (let d = 0; d < D; d++) expect(h0[r * D + d]).toBe(E[ids.data[r] * D + d]);
    }
    // R vanishes at the padded positions
    const R = get(io, 'R').data;
    for (let r = 0; r < B * T; r++) {
      if (mask.data[r] === 0) for (let v = 0; v < V; v++) expect(R[r * V + v]).toBe(0);
    }
    // logits = lm_head(hidden_states.2): the last hidden state already has the final norm applied
    const W = get(w, 'lm_head.weight').data;
    const h2 = get(io, 'hidden_states.2').data;
    const logits = new Float64Array(B * T * V);
    const gW = new Float64Array(V * D);
    for (let r = 0; r < B * T; r++) {
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += h2[r * D + d] * W[v * D + d];
        logits[r * V + v] = s;
        for (let d = 0; d < D; d++) gW[v * D + d] += R[r * V + v] * h2[r * D + d];
      }
    }
    expect(relErr(get(io, 'logits').data, logits)).toBeLessThan(1e-5);
    // d(sum(logits * R)) / d lm_head = R^T h
    expect(relErr(get(io, 'grad.lm_head.weight').data, gW)).toBeLessThan(1e-5);
    // the outputs are far from trivial
    let maxLogit = 0;
    for (const x of logits) maxLogit = Math.max(maxLogit, Math.abs(x));
    expect(maxLogit).toBeGreaterThan(2);
  });

  it('reads tiny_clip (hub names vision_model.*) and its io.safetensors conventions', () => {
    const w = readCheckpointWeights(path.join(FIX, 'tiny_clip'));
    const io = readSafetensors(path.join(FIX, 'tiny_clip', 'io.safetensors'));
    const [B, C, S, P, D] = [2, 3, 16, 4, 32];
    const G = S / P;
    const N = G * G + 1;
    expect(get(w, 'vision_model.embeddings.patch_embedding.weight').shape).toEqual([D, C, P, P]);
    expect(get(w, 'vision_model.embeddings.class_embedding').shape).toEqual([D]);
    expect(get(w, 'vision_model.embeddings.position_embedding.weight').shape).toEqual([N, D]);
    expect(w.has('vision_model.embeddings.patch_embedding.bias')).toBe(false);
    for (const n of ['pre_layrnorm', 'post_layernorm']) {
      expect(get(w, `vision_model.${n}.weight`).shape).toEqual([D]);
      expect(get(w, `vision_model.${n}.bias`).shape).toEqual([D]);
    }
    for (let l = 0; l < 3; l++) {
      const p = `vision_model.encoder.layers.${l}.`;
      for (const proj of ['q', 'k', 'v', 'out']) {
        expect(get(w, `${p}self_attn.${proj}_proj.weight`).shape).toEqual([D, D]);
        expect(get(w, `${p}self_attn.${proj}_proj.bias`).shape).toEqual([D]);
      }
      expect(get(w, `${p}mlp.fc1.weight`).shape).toEqual([48, D]);
      expect(get(w, `${p}mlp.fc2.weight`).shape).toEqual([D, 48]);
      expect(get(w, `${p}layer_norm1.weight`).shape).toEqual([D]);
      expect(get(w, `${p}layer_norm2.bias`).shape).toEqual([D]);
    }
    expect(w.size).toBe(3 + 4 + 3 * 16);

    const pix = get(io, 'pixel_values');
    expect(pix.shape).toEqual([B, C, S, S]);
    for (let k = 0; k <= 3; k++) expect(get(io, `hidden_states.${k}`).shape).toEqual([B, N, D]);
    expect(get(io, 'R').shape).toEqual([B, N, D]);
    expect(get(io, 'grad.pixel_values').shape).toEqual([B, C, S, S]);
    // the last hidden state is the encoder output without post_layernorm
    expect(bits(get(io, 'hidden_states.3').data as Float32Array)).toEqual(bits(get(io, 'last_hidden_state').data as Float32Array));
    // gradients: everything up to layer 1 (select_layer -2), nothing for layer 2 or post_layernorm
    const gradNames = [...io.keys()].filter((k) => k.startsWith('grad.vision_model.')).map((k) => k.slice(5)).sort();
    const expectedGrads = [...w.keys()]
      .filter((k) => !k.startsWith('vision_model.encoder.layers.2.') && !k.startsWith('vision_model.post_layernorm.')).sort();
    expect(gradNames).toEqual(expectedGrads);

    const layerNorm = (x: ArrayLike<number>, off: number, g: ArrayLike<number>, b: ArrayLike<number>) => {
      let mean = 0;
      for (let d = 0; d < D; d++) mean += x[off + d];
      mean /= D;
      let v = 0;
      for (let d = 0; d < D; d++) v += (x[off + d] - mean) ** 2;
      const inv = 1 / Math.sqrt(v / D + 1e-5);
      return Array.from({ length: D }, (_, d) => (x[off + d] - mean) * inv * g[d] + b[d]);
    };
    // pooler_output = post_layernorm(last_hidden_state[:, 0])
    const last = get(io, 'last_hidden_state').data;
    const pooled: number[] = [];
    for (let b = 0; b < B; b++) {
      pooled.push(...layerNorm(last, b * N * D, get(w, 'vision_model.post_layernorm.weight').data, get(w, 'vision_model.post_layernorm.bias').data));
    }
    expect(relErr(get(io, 'pooler_output').data, pooled)).toBeLessThan(1e-5);
    // hidden_states.0 = pre_layrnorm([class_embedding; conv patches row-major] + position_embedding)
    const Wp = get(w, 'vision_model.embeddings.patch_embedding.weight').data;
    const cls = get(w, 'vision_model.embeddings.class_embedding').data;
    const pos = get(w, 'vision_model.embeddings.position_embedding.weight').data;
    const emb = new Float64Array(B * N * D);
    for (let b = 0; b < B; b++) {
      for (let d = 0; d < D; d++) emb[b * N * D + d] = cls[d] + pos[d];
      for (let gy = 0; gy < G; gy++) {
        for (let gx = 0; gx < G; gx++) {
          const tok = 1 + gy * G + gx;
          for (let d = 0; d < D; d++) {
            let s = pos[tok * D + d];
            for (let c = 0; c < C; c++) {
              for (let ky = 0; ky < P; ky++) {
                for (let kx = 0; kx < P; kx++) {
                  s += Wp[((d * C + c) * P + ky) * P + kx] * pix.data[((b * C + c) * S + gy * P + ky) * S + gx * P + kx];
                }
              }
            }
            emb[(b * N + tok) * D + d] = s;
          }
        }
      }
    }
    const h0: number[] = [];
    for (let r = 0; r < B * N; r++) {
      h0.push(...layerNorm(emb, r * D, get(w, 'vision_model.pre_layrnorm.weight').data, get(w, 'vision_model.pre_layrnorm.bias').data));
    }
    expect(relErr(get(io, 'hidden_states.0').data, h0)).toBeLessThan(1e-5);
  });
});

describe('malformed files: errors name the file and the problem', () => {
  const expectError = (file: string, re: RegExp, cls: new (...a: never[]) => Error = SafetensorsError) => {
    let err: unknown;
    try {
      readSafetensors(file);
    } catch (e) {
      err = e;
    }
    expect(err, `no error for ${re}`).toBeInstanceOf(cls);
    const msg = (err as Error).message;
    expect(msg).toContain(file);
    expect(msg).toMatch(re);
  };
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('missing file, directory, short file', () => {
    expectError(path.join(tmp, 'does-not-exist.safetensors'), /cannot open: no such file/);
    expectError(tmp, /cannot open: is a directory|not a regular file/);
    const f = tmpFile();
    fs.writeFileSync(f, Buffer.from([1, 2, 3]));
    expectError(f, /3 bytes, shorter than the 8-byte header/);
    const e = tmpFile();
    fs.writeFileSync(e, Buffer.alloc(0));
    expectError(e, /0 bytes, shorter/);
  });

  it('header length beyond the file, header not JSON, header not an object', () => {
    expectError(rawFile(tmpFile(), ok, new Uint8Array(8), 1000n), /header length 1000 runs beyond the end of the file/);
    expectError(rawFile(tmpFile(), ok, new Uint8Array(8), 2n ** 63n), /header length \d+ runs beyond/);
    expectError(rawFile(tmpFile(), '{"a": {"dtype": "F32", ', new Uint8Array(8)), /header is not valid JSON/);
    expectError(rawFile(tmpFile(), '[1, 2, 3]'), /header is not a JSON object/);
    expectError(rawFile(tmpFile(), { __metadata__: { a: 1 } }), /__metadata__ value for 'a' is not a string/);
    expectError(rawFile(tmpFile(), { a: 5 }), /tensor 'a': header entry is not a JSON object/);
    // a name twice (JSON.parse would keep the last): refused, also when both entries are the same bytes, spelled
    // with an escape, or the metadata; names inside entries and values that look like keys are not names
    const entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}';
    expectError(rawFile(tmpFile(), `{"a": ${entry}, "a" : ${entry}}`, new Uint8Array(4)), /header names "a" twice/);
    expectError(rawFile(tmpFile(), `{"\\u0061\\"b": ${entry},\n "a\\"b"\t:${entry}}`, new Uint8Array(4)), /header names "a\\"b" twice/);
    expectError(rawFile(tmpFile(), `{"__metadata__": {"x": "1"}, "a": ${entry}, "__metadata__": {"x": "2"}}`, new Uint8Array(4)), /header names "__metadata__" twice/);
    const nested = rawFile(tmpFile(), `{"__metadata__": {"a": "a", "b": "{\\"a\\": 1}"}, "a": ${entry}}`, new Uint8Array(4));
    expect([...readSafetensors(nested).keys()]).toEqual(['a']);
  });

  it('offsets out of range, overlapping, or not matching shape x dtype', () => {
    expectError(rawFile(tmpFile(), ok, new Uint8Array(4)), /tensor 'a': data_offsets \[0, 8\] out of range: the data section has 4 bytes/);
    expectError(rawFile(tmpFile(), { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /tensor 'a': data_offsets \[0, 8\] span 8 bytes but shape \[3\] x F32 \(4 bytes\) needs 12/);
    expectError(rawFile(tmpFile(), { a: { dtype: 'I64', shape: [2, 2], data_offsets: [0, 16] } }, new Uint8Array(16)),
      /needs 32/);
    expectError(rawFile(tmpFile(), { a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, new Uint8Array(8)),
      /begin > end/);
    expectError(rawFile(tmpFile(), {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)), /tensors 'a' \[0, 8\) and 'b' \[4, 12\) overlap/);
    expectError(rawFile(tmpFile(), { a: { dtype: 'F32', shape: [2], data_offsets: [0] } }, new Uint8Array(8)),
      /data_offsets \[0\] is not a pair/);
    expectError(rawFile(tmpFile(), { a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /shape \[-2\] is not a list of non-negative integers/);
    expectError(rawFile(tmpFile(), { a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /shape \[1.5\]/);
  });

  it('unknown or unsupported dtype', () => {
    expectError(rawFile(tmpFile(), { w: { dtype: 'Q4_K', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /tensor 'w': unknown dtype 'Q4_K'/);
    expectError(rawFile(tmpFile(), { w: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)),
      /tensor 'w': unsupported dtype 'F8_E4M3'/);
    expectError(rawFile(tmpFile(), { w: { shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), /missing or non-string dtype/);
  });

  it('I64 (and U64/U32) values outside int32 are a RangeError naming the tensor', () => {
    const mk = (dtype: string, values: bigint[] | number[]) => {
      const data = dtype === 'U32' ? new Uint8Array(new Uint32Array(values as number[]).buffer)
        : dtype === 'U64' ? new Uint8Array(new BigUint64Array(values as bigint[]).buffer)
          : new Uint8Array(new BigInt64Array(values as bigint[]).buffer);
      return rawFile(tmpFile(), { ids: { dtype, shape: [values.length], data_offsets: [0, data.byteLength] } }, data);
    };
    expectError(mk('I64', [1n, 2147483648n]), /tensor 'ids': element 1 = 2147483648 does not fit in int32/, RangeError);
    expectError(mk('I64', [-2147483649n]), /tensor 'ids': element 0 = -2147483649 does not fit/, RangeError);
    expectError(mk('I64', [0n, 0n, -(2n ** 63n)]), /element 2 = -9223372036854775808/, RangeError);
    expectError(mk('U64', [2n ** 64n - 1n]), /element 0 = 18446744073709551615/, RangeError);
    expectError(mk('U32', [5, 4294967295]), /element 1 = 4294967295/, RangeError);
    expect(Array.from(get(readSafetensors(mk('I64', [-2147483648n, 2147483647n, -1n])), 'ids').data))
      .toEqual([-2147483648, 2147483647, -1]);
    expect(Array.from(get(readSafetensors(mk('U64', [0n, 2147483647n])), 'ids').data)).toEqual([0, 2147483647]);
  });

  it('accepts a minimal valid file with padding spaces, unaligned data and no tensors', () => {
    // data section starting at an odd offset: the reader must copy into aligned arrays
    const data = new Uint8Array(new Float32Array([1.25, -8]).buffer);
    const f = rawFile(tmpFile(), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data);
    expect((8 + Number(fs.readFileSync(f).readBigUInt64LE(0))) % 4).not.toBe(0);
    expect(Array.from(get(readSafetensors(f), 'a').data)).toEqual([1.25, -8]);
    const g = rawFile(tmpFile(), '{"__metadata__":{"format":"pt"}}      ');
    expect(readSafetensorsWithMetadata(g)).toEqual({ tensors: new Map(), metadata: { format: 'pt' } });
  });
});

describe('readCheckpointWeights errors', () => {
  const copyDir = (src: string) => {
    const d = path.join(tmp, `ckpt${counter++}`);
    fs.cpSync(src, d, { recursive: true });
    return d;
  };

  it('missing directory, empty directory, pickle-only directory', () => {
    expect(() => readCheckpointWeights(path.join(tmp, 'nope'))).toThrow(/nope: checkpoint directory: no such file/);
    const empty = path.join(tmp, `empty${counter++}`);
    fs.mkdirSync(empty);
    expect(() => readCheckpointWeights(empty)).toThrow(/no model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin or pytorch_model\.bin\.index\.json/);
    // PyTorch weights under another name are named, with how to load them
    fs.writeFileSync(path.join(empty, 'weights.pt'), 'x');
    expect(() => readCheckpointWeights(empty)).toThrow(/found weights\.pt: PyTorch weights load from pytorch_model\.bin/);
    // a pytorch_model.bin that is not one: the torch reader names the file and the problem
    fs.writeFileSync(path.join(empty, 'pytorch_model.bin'), 'x');
    expect(() => readCheckpointWeights(empty)).toThrow(/torch checkpoint: .*pytorch_model\.bin: .*not a zip archive/);
  });

  it('missing shards are listed', () => {
    const d = copyDir(path.join(FIX, 'tiny_llama_sharded'));
    fs.rmSync(path.join(d, 'model-00002-of-00003.safetensors'));
    fs.rmSync(path.join(d, 'model-00003-of-00003.safetensors'));
    expect(() => readCheckpointWeights(d))
      .toThrow(/missing shard files model-00002-of-00003\.safetensors, model-00003-of-00003\.safetensors \(of 3\)/);
  });

  it('a tensor listed for a shard but absent from it, a bad index, a broken shard', () => {
    const d = copyDir(path.join(FIX, 'tiny_llama_sharded'));
    const indexPath = path.join(d, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    index.weight_map['vm_head.weight'] = 'model-00001-of-00003.safetensors';
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expect(() => readCheckpointWeights(d)).toThrow(/model-00001-of-00003\.safetensors: tensor 'vm_head\.weight' is listed/);

    index.weight_map['vm_head.weight'] = '../outside.safetensors';
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expect(() => readCheckpointWeights(d)).toThrow(/not a relative shard file name/);

    fs.writeFileSync(indexPath, '{"weight_map": ');
    expect(() => readCheckpointWeights(d)).toThrow(/index\.json: cannot read the shard index/);
    fs.writeFileSync(indexPath, '{"metadata": {}}');
    expect(() => readCheckpointWeights(d)).toThrow(/no "weight_map" object/);

    delete index.weight_map['vm_head.weight'];
    fs.writeFileSync(indexPath, JSON.stringify(index));
    const shard = path.join(d, 'model-00003-of-00003.safetensors');
    fs.truncateSync(shard, 100);
    expect(() => readCheckpointWeights(d)).toThrow(/model-00003-of-00003\.safetensors: header length \d+ runs beyond/);
  });
});
