// Seeded random numbers for parameter initialisation and data shuffling: reproducible across runs and
// machines (no Math.random). mulberry32 for uniforms, Box-Muller for normals.
/** One step of mulberry32: the next state and a uniform in [0, 1) (shared with the tests' input generator). */
export function mulberry32(state: number): { state: number; value: number } {
  let t = (state = (state + 0x6d2b79f5) >>> 0);
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return { state, value: ((t ^ (t >>> 14)) >>> 0) / 4294967296 };
}

export class Generator {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new TypeError(`Generator: seed must be a finite number, got ${seed}`);
    this.state = (Math.floor(seed) ^ 0x9e3779b9) >>> 0;
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
