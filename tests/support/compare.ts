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
