// Error measures used by every kernel test. relErr is normwise: max |a - ref| / max |ref|, the measure
// that stays meaningful when many entries of a gradient are ~0 (elementwise relative error is not).
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) throw new Error(`length mismatch ${a.length} vs ${ref.length}`);
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - ref[i]);
    if (!(d <= diff)) diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
  }
  const scale = maxAbs(ref);
  return scale === 0 ? diff : diff / scale;
}

/**
 * ||a - ref||_2 / ||ref||_2 and the cosine of a and ref: for results that are cancelling sums (a gradient through a
 * randomly weighted loss), where max |a - ref| / max |ref| has a heavy tail over seeds. NaN gives Infinity / NaN.
 */
export function l2Err(a: ArrayLike<number>, ref: ArrayLike<number>): { rel: number; cosine: number } {
  if (a.length !== ref.length) throw new Error(`length mismatch ${a.length} vs ${ref.length}`);
  let dot = 0, na = 0, nr = 0, nd = 0;
  for (let i = 0; i < a.length; i++) (dot += a[i] * ref[i]), (na += a[i] * a[i]), (nr += ref[i] * ref[i]), (nd += (a[i] - ref[i]) ** 2);
  const rel = Math.sqrt(nd / nr);
  return { rel: Number.isNaN(rel) ? Infinity : rel, cosine: dot / Math.sqrt(na * nr) };
}

export function scalarRelErr(a: number, ref: number): number {
  if (!Number.isFinite(a)) return Infinity;
  return Math.abs(a - ref) / Math.max(Math.abs(ref), 1e-12);
}

/** max |a - ref| / max(mag): error against the condition-aware magnitude (see tests/support/reference.ts). */
export function magErr(a: ArrayLike<number>, ref: ArrayLike<number>, mag: ArrayLike<number>): number {
  if (a.length !== ref.length) throw new Error(`length mismatch ${a.length} vs ${ref.length}`);
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - ref[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
  }
  const scale = maxAbs(mag);
  return scale === 0 ? diff : diff / scale;
}

const F32_UNIT_ROUNDOFF = 2 ** -24;

/**
 * Error of an in-place float32 update, judged on the update p_new - p_old (~lr, far smaller than p) against the
 * reference update: max |(got - before) - (ref - before)| / max(mag), after taking off at each element the
 * 2^-24 (|p_old| + |p_new|) that storing p in float32 costs whatever the kernel does (one rounding of the decayed
 * p, one of the result). Without that allowance an update that nearly cancels (tiny m) would be judged on p's
 * own rounding, relative to nothing.
 */
export function updateErr(before: ArrayLike<number>, got: ArrayLike<number>, ref: ArrayLike<number>, mag: ArrayLike<number>): number {
  if (before.length !== got.length || got.length !== ref.length) throw new Error(`length mismatch ${before.length}, ${got.length}, ${ref.length}`);
  let diff = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - ref[i]) - F32_UNIT_ROUNDOFF * (Math.abs(before[i]) + Math.abs(got[i]));
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
  }
  const scale = maxAbs(mag);
  return scale === 0 ? diff : diff / scale;
}

/**
 * The parameters whose reference gradient is zero up to rounding: max |g| below `floor` times the model's largest
 * gradient entry. The attention key bias is one (softmax ignores a shift shared by a row's scores, so its gradient
 * is exactly 0), and two backends' rounding noise there need not agree: tests check such a gradient for being as
 * small on the other backend (below `bound` times the largest entry) instead, and leave out its optimizer update
 * (Adam turns noise of either sign into a full step of lr).
 */
export function zeroGradients(ref: Map<string, ArrayLike<number>>, floor = 1e-6): { names: Set<string>; largest: number } {
  let largest = 0;
  for (const g of ref.values()) largest = Math.max(largest, maxAbs(g));
  const names = new Set([...ref].filter(([, g]) => maxAbs(g) < floor * largest).map(([n]) => n));
  return { names, largest };
}
