// Learning-rate schedule of LLaVA / HF Trainer: linear warmup over warmupRatio of the steps, then cosine
// decay to 0 (transformers.get_cosine_schedule_with_warmup). `step` is the 0-based index of the update
// about to happen; we evaluate the schedule at step + 1 so the first update is not wasted at lr 0.
export function cosineWithWarmup(step: number, totalSteps: number, warmupRatio: number, baseLr: number): number {
  const warm = Math.ceil(totalSteps * warmupRatio);
  const s = step + 1;
  if (s <= warm) return (baseLr * s) / Math.max(1, warm);
  const progress = Math.min(1, (s - warm) / Math.max(1, totalSteps - warm));
  return baseLr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
