// Learning-rate schedule of LLaVA / HF Trainer: transformers.get_cosine_schedule_with_warmup with
// num_warmup_steps = ceil(totalSteps * warmupRatio): update `step` (0-based) runs at
//   baseLr * step / warm                                        while step < warm (so the first update is at 0
//                                                               when there is warmup, as in HF),
//   baseLr * 0.5 (1 + cos(pi (step - warm) / (total - warm)))   after (never 0 at the last update).
// tests/train/schedule.test.ts checks it against the values transformers produces.
export function cosineWithWarmup(step: number, totalSteps: number, warmupRatio: number, baseLr: number): number {
  const warm = Math.ceil(totalSteps * warmupRatio);
  if (step < warm) return baseLr * (step / Math.max(1, warm));
  const progress = (step - warm) / Math.max(1, totalSteps - warm);
  return baseLr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
}
