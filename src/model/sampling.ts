// Sampling for VwLmm.generate, as transformers' generate(do_sample=True) samples: its logits warpers in its order
// (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper) on one row of logits [V] at a time, in float64, then
// one draw with one uniform of the generation's Generator. Greedy decoding is argmax (ties to the lower id).
// No step sorts the vocabulary: top-k and top-p find their thresholds by binning (LogitsSampler), so a sampled step
// costs about what a greedy one does (tests/model/sampling.test.ts: the rule against a full-sort reference, the draws,
// the cost at V = 32000).
import { Generator } from '../random';

/** The index of the largest entry (the first of ties). */
export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

// Neither top-k nor top-p sorts the vocabulary. The scaled logits d are binned (BINS equal bins over their range, a
// pass over V), the bins counted (top-k) or their masses summed (top-p: from the bottom, as transformers sums the
// ascending probabilities), and only the bin where the count or the sum crosses the threshold stays a candidate:
// everything on one side of it is removed, everything on the other kept. Again over the candidates until at most
// SORT_AT_MOST remain, which are sorted. Bins are value ranges, so the result is a full sort's, ties included.
const BINS = 64;
const SORT_AT_MOST = 256;
/** Below this, exp() is 0 in float64: such entries have no mass. */
const EXP_UNDERFLOW = -746;

/** The bin of x among BINS over [lo, lo + BINS / scale): 0 below (and for NaN, -inf * 0), BINS - 1 above. */
function binOf(x: number, lo: number, scale: number): number {
  const t = (x - lo) * scale;
  return t >= 0 ? (t < BINS ? Math.floor(t) : BINS - 1) : 0;
}

/**
 * One row of logits [V] warped and sampled as transformers' generate does with do_sample (GenerateOptions), in float64:
 * d = (logit - max) / T (so a tiny T sends every non-max entry to -inf and the max to 0: the greedy limit, never a
 * NaN), top-k over d, softmax masses e = exp(d) of the entries kept, then top-p (the nucleus) when topP < 1. The draw
 * walks the kept entries in id order with one uniform. The scratch arrays are made once per generation batch and
 * reused for every row and step.
 * Used by VwLmm.generate (one per generation batch); tests/model/sampling.test.ts uses it directly.
 */
export class LogitsSampler {
  private readonly d: Float64Array;
  private readonly e: Float64Array;
  private readonly values: Float64Array;
  private readonly values2: Float64Array;
  private readonly ids: Int32Array;
  private readonly ids2: Int32Array;
  private readonly bins = new Float64Array(BINS);
  private readonly temperature: number;
  private readonly topK: number;
  private readonly topP: number;
  // the prepared row: the kept entries are those with e > 0 and d > dCut, plus the first keepTies (lowest ids) with d === dCut
  private dCut = -Infinity;
  private keepTies = Infinity;
  private mass = 0;

  constructor(readonly V: number, o: { temperature: number; topK?: number; topP?: number }) {
    this.temperature = o.temperature;
    this.topK = o.topK ?? 0;
    this.topP = o.topP ?? 1;
    this.d = new Float64Array(V);
    this.e = new Float64Array(V);
    this.values = new Float64Array(V);
    this.values2 = new Float64Array(V);
    this.ids = new Int32Array(V);
    this.ids2 = new Int32Array(V);
  }

  /** Warps `row` [V]; false when it holds a NaN or an infinity (nothing to sample from). */
  prepare(row: Float32Array): boolean {
    const { V, d, e, temperature: T, bins } = this;
    let m = -Infinity, min = Infinity;
    for (let i = 0; i < V; i++) {
      const x = row[i];
      if (x > m) m = x;
      if (x < min) min = x;
      if (x !== x) return false;
    }
    if (!Number.isFinite(m)) return false;
    for (let i = 0; i < V; i++) d[i] = (row[i] - m) / T;
    const dMin = Math.max((min - m) / T, EXP_UNDERFLOW);
    // TopKLogitsWarper: remove d < the k-th largest d (ties with it stay)
    const kth = this.topK > 0 && this.topK < V ? this.kthLargest(this.topK, dMin) : -Infinity;
    this.dCut = -Infinity;
    this.keepTies = Infinity;
    let z = 0;
    if (this.topP >= 1) {
      for (let i = 0; i < V; i++) {
        const x = d[i] >= kth ? Math.exp(d[i]) : 0;
        e[i] = x;
        z += x;
      }
      this.mass = z;
      return true;
    }
    // the first binning of the nucleus search, in the same pass
    const lo = Math.max(dMin, kth), scale = lo < 0 ? BINS / -lo : 0;
    bins.fill(0);
    for (let i = 0; i < V; i++) {
      const di = d[i];
      const x = di >= kth ? Math.exp(di) : 0;
      e[i] = x;
      z += x;
      if (x > 0) bins[binOf(di, lo, scale)] += x;
    }
    this.nucleus(z, lo, scale);
    return true;
  }

  /** One draw from the prepared row. */
  draw(gen: Generator): number {
    const { V, d, e, dCut, keepTies } = this;
    let u = gen.uniform() * this.mass, last = -1, ties = 0;
    for (let i = 0; i < V; i++) {
      const x = e[i];
      if (x === 0) continue;
      const di = d[i];
      if (di < dCut || (di === dCut && ties++ >= keepTies)) continue;
      if (u < x) return i;
      u -= x;
      last = i;
    }
    return last; // u at the very end of the mass (rounding): the last kept id
  }

  /** The prepared row's distribution [V] (the kept entries' masses, normalised): what draw samples from. */
  probabilities(): Float64Array {
    const { V, d, e, dCut } = this;
    const p = new Float64Array(V);
    let ties = 0;
    for (let i = 0; i < V; i++) {
      if (e[i] === 0 || d[i] < dCut || (d[i] === dCut && ties++ >= this.keepTies)) continue;
      p[i] = e[i] / this.mass;
    }
    return p;
  }

  /** The k-th largest d (1 <= k < V); `dMin` bounds the d that have mass from below. */
  private kthLargest(k: number, dMin: number): number {
    const { V, d, bins } = this;
    let vals = this.values, other = this.values2, n = 0;
    let lo = dMin, hi = 0;
    let first = true;
    for (;;) {
      const scale = hi > lo ? BINS / (hi - lo) : 0;
      // the first pass reads all of d, later ones the candidates
      const src = first ? d : vals, len = first ? V : n;
      bins.fill(0);
      for (let t = 0; t < len; t++) bins[binOf(src[t], lo, scale)]++;
      // from the top bin down to the one holding the k-th
      let b = BINS - 1;
      while (b > 0 && bins[b] < k) k -= bins[b--];
      let m = 0;
      for (let t = 0; t < len; t++) if (binOf(src[t], lo, scale) === b) other[m++] = src[t];
      [vals, other] = [other, vals];
      const shrunk = first || m < n;
      n = m;
      first = false;
      if (n <= SORT_AT_MOST || !shrunk) break;
      lo = Infinity;
      hi = -Infinity;
      for (let t = 0; t < n; t++) {
        if (vals[t] < lo) lo = vals[t];
        if (vals[t] > hi) hi = vals[t];
      }
      if (!(hi > lo)) return hi; // all tied
    }
    const sorted = vals.subarray(0, n).sort(); // ascending (typed arrays sort numerically)
    return sorted[n - k];
  }

  /**
   * TopPLogitsWarper on the masses e (total z), binned over [lo, 0] by prepare: sets dCut / keepTies to the nucleus.
   * transformers' rule, literally: the probabilities p = e / z sorted ascending and summed; an entry is removed when its
   * cumulative sum is <= 1 - topP, except the largest (min_tokens_to_keep = 1).
   */
  private nucleus(z: number, lo: number, scale: number): void {
    const { V, d, e, bins } = this;
    const cut = 1 - this.topP;
    let c = this.ids, other = this.ids2, n = 0;
    let below = 0; // the mass of the entries under the candidates' range: all removed
    let first = true;
    for (;;) {
      if (!first) {
        bins.fill(0);
        for (let t = 0; t < n; t++) bins[binOf(d[c[t]], lo, scale)] += e[c[t]];
      }
      let b = 0, acc = below;
      for (; b < BINS; b++) {
        if ((acc + bins[b]) / z > cut) break;
        acc += bins[b];
      }
      if (b === BINS) break; // rounding: the sums never pass the cut here; cutIn decides on the candidates
      let m = 0;
      if (first) {
        for (let i = 0; i < V; i++) if (e[i] > 0 && binOf(d[i], lo, scale) === b) other[m++] = i;
      } else {
        for (let t = 0; t < n; t++) if (binOf(d[c[t]], lo, scale) === b) other[m++] = c[t];
      }
      const shrunk = first || m < n;
      [c, other] = [other, c];
      n = m;
      below = acc;
      first = false;
      if (n <= SORT_AT_MOST || !shrunk) break;
      let hi = -Infinity;
      lo = Infinity;
      for (let t = 0; t < n; t++) {
        const x = d[c[t]];
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      if (!(hi > lo)) break; // all tied
      scale = BINS / (hi - lo);
    }
    if (first || !this.cutIn(c, n, below, z, cut)) {
      // rounding left the cut outside the candidates: decide on all of them
      n = 0;
      for (let i = 0; i < V; i++) if (e[i] > 0) c[n++] = i;
      this.cutIn(c, n, 0, z, cut);
    }
    let mass = 0, ties = 0;
    for (let i = 0; i < V; i++) {
      if (e[i] === 0 || d[i] < this.dCut || (d[i] === this.dCut && ties++ >= this.keepTies)) continue;
      mass += e[i];
    }
    this.mass = mass;
  }

  /**
   * The cut among candidates ids[0, n) (every other entry with mass lies below them, `below` their mass, or above):
   * sorted ascending and summed on from `below`; the first entry whose sum passes `cut` is the smallest kept. False when
   * none passes and the candidates do not hold the largest entry, which is kept regardless.
   */
  private cutIn(ids: Int32Array, n: number, below: number, z: number, cut: number): boolean {
    const d = this.d;
    const sorted = this.values.subarray(0, n);
    for (let t = 0; t < n; t++) sorted[t] = d[ids[t]];
    sorted.sort(); // ascending (typed arrays sort numerically)
    let acc = below, j = 0;
    for (; j < n; j++) {
      acc += Math.exp(sorted[j]);
      if (acc / z > cut) break;
    }
    if (j === n) {
      if (n === 0 || sorted[n - 1] !== 0) return false; // the largest entry is the max, d = 0
      j = n - 1; // min_tokens_to_keep: the largest stays
    }
    // sorted[j] is the smallest kept value; the tied entries before it are removed (the highest ids among the ties)
    let removed = 0, ties = 0;
    for (let t = j - 1; t >= 0 && sorted[t] === sorted[j]; t--) removed++;
    for (let t = 0; t < n; t++) if (sorted[t] === sorted[j]) ties++;
    this.dCut = sorted[j];
    this.keepTies = ties - removed;
    return true;
  }
}
