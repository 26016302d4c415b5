// The reductions of the engine ops (sum_rows, the dw/db of layer_norm_backward, embedding_backward /
// scatter_add_rows, sum_squares) split their work by the sizes alone, never by the thread count: the same
// inputs give the same bits with 1 thread or many. Checked in child processes (VWLMM_NUM_THREADS is read
// once, when the thread pool starts), which call the addon directly.
import { spawnSync } from 'child_process';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native';

const addonPath: string = process.env.VWLMM_ADDON ?? (require('node-gyp-build') as { path(dir: string): string }).path(packageRoot);

// Runs the reductions on fixed pseudo-random inputs and prints one hex digest per result.
const script = `
const a = require(${JSON.stringify(addonPath)});
const crypto = require('crypto');
let s = 12345;
const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
const buf = (arr) => { const b = new a.NativeBuffer(arr.byteLength); if (arr.length) b.write(arr); return b; };
const f = (n) => buf(new Float32Array(n).map(rnd));
const read = (b, n) => { const o = new Float32Array(n); b.read(o); return o; };
const hash = (b, n) => crypto.createHash('sha1').update(Buffer.from(read(b, n).buffer)).digest('hex');
const out = [];
for (const [R, C] of [[40000, 5], [3000, 300], [50, 1000], [1 << 20, 1]]) {
  const y = f(C);
  a.callOp('sum_rows', [f(R * C)], ['float32'], [y], ['float32'], [R, C, 0], []);
  out.push(hash(y, C));
}
{
  const R = 5000, C = 77, x = f(R * C), w = f(C), b = f(C), dw = f(C), db = f(C), mean = f(R), rstd = f(R);
  a.callOp('layer_norm_forward', [x, w, b], ['float32', 'float32', 'float32'], [f(R * C), mean, rstd], ['float32', 'float32', 'float32'], [R, C], [1e-5]);
  a.callOp('layer_norm_backward', [f(R * C), x, w, mean, rstd], Array(5).fill('float32'), [f(R * C), dw, db], Array(3).fill('float32'), [R, C], []);
  out.push(hash(dw, C), hash(db, C));
}
{
  const n = 20000, V = 5, D = 64, ids = buf(Int32Array.from({ length: n }, (_, i) => (i * 7919) % V)), dW = f(V * D);
  a.callOp('embedding_backward', [ids, f(n * D)], ['int32', 'float32'], [dW], ['float32'], [n, V, D], []);
  out.push(hash(dW, V * D));
}
{
  const sum = f(1);
  a.callOp('sum_squares', [f(1 << 20), f(12345)], ['float32', 'float32'], [sum], ['float32'], [2, 1 << 20, 12345], []);
  out.push(hash(sum, 1));
}
console.log(out.join(' '));
`;

function digests(threads: number): string {
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, VWLMM_NUM_THREADS: String(threads) }, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`child with ${threads} threads failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe('engine reductions are bit-identical across thread counts', () => {
  it('1, 2 and 5 threads', () => {
    const one = digests(1);
    expect(one.split(' ')).toHaveLength(8);
    expect(digests(2)).toBe(one);
    expect(digests(5)).toBe(one);
  });
});
