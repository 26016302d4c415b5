// Seeded random inputs. Each run draws a fresh seed (printed on failure via the test names) unless
// VWLMM_TEST_SEED pins it, so the kernels meet new inputs every run and a failure can be replayed.
import { mulberry32 } from '../../src/random';

export const runSeed = Number(process.env.VWLMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** Uniform in [0, 1): mulberry32. */
  next(): number {
    const r = mulberry32(this.s);
    this.s = r.state;
    return r.value;
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  normals(n: number, scale = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal() * scale;
    return a;
  }
}

/** An Rng for one test case: the run seed mixed with a per-case label. */
export function rngFor(label: string): Rng {
  let h = runSeed ^ 0x9e3779b9;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
  return new Rng(h >>> 0);
}
