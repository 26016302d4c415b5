// Seeded random numbers for parameter initialisation and data shuffling: reproducible across runs and
// machines (no Math.random). mulberry32 for uniforms, Box-Muller for normals.
import { typeError } from './errors';

/** One step of mulberry32: the next state and a uniform in [0, 1) (shared with the tests' input generator). */
export function mulberry32(state: number): { state: number; value: number } {
  let t = (state = (state + 0x6d2b79f5) >>> 0);
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return { state, value: ((t ^ (t >>> 14)) >>> 0) / 4294967296 };
}

/** The largest seed: the generators are 32-bit (a larger seed would repeat a smaller one's stream). */
export const MAX_SEED = 0xffffffff;

/**
 * Checks a seed given to a public function: an integer in [0, MAX_SEED], else a TypeError (not a number) or a
 * RangeError (1.5 would act as 1, -1 as 2^32 - 1, 2^32 as 0) naming `where` and `name`.
 */
export function checkSeed(where: string, name: string, seed: unknown): number {
  if (typeof seed !== 'number' || Number.isNaN(seed)) throw typeError(where, name, `an integer seed in [0, ${MAX_SEED}]`, seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED)
    throw new RangeError(`${where}: expected an integer seed in [0, ${MAX_SEED}] (the generators are 32-bit) for ${name} but received ${seed}`);
  return seed;
}

export class Generator {
  private state: number;
  private spare: number | null = null;

  /** A stream of `seed`: an integer in [0, 2^32 - 1] (anything else is refused, naming the seed). */
  constructor(seed: number) {
    // internal seeds (fork's, the LoRA dropout streams') are 32-bit integers too
    checkSeed('Generator', 'seed', seed);
    this.state = (seed ^ 0x9e3779b9) >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    const r = mulberry32(this.state);
    this.state = r.state;
    return r.value;
  }

  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = Math.max(this.uniform(), 1e-300), v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  normals(n: number, std = 1, mean = 0): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + std * this.normal();
    return a;
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }

  /** The generator's position in its stream (gradient checkpointing replays a layer's draws from it). */
  saveState(): { state: number; spare: number | null } {
    return { state: this.state, spare: this.spare };
  }

  /** Goes back (or forward) to a position saveState() returned. */
  restoreState(s: { state: number; spare: number | null }): void {
    this.state = s.state;
    this.spare = s.spare;
  }

  /** A child generator whose stream depends on this one's state and a label (independent streams). */
  fork(label: string): Generator {
    let h = Math.floor(this.uniform() * 2 ** 31);
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
    return new Generator(h);
  }
}
