// The CLI's progress lines off a terminal (src/train/progress.ts): every `every` steps and the last, the loss split
// into CE and KL for a VW-LMM, no split for a plain LLaVA (its KL is always 0: "KL 0.000" read as a broken loss), only
// the loss for a stage with its own loss.
import { describe, expect, it } from 'vitest';
import { Progress } from '../../src/train/progress';

const lines = (opts?: { kl?: boolean }, records: Record<string, unknown>[] = []) => {
  const out: string[] = [];
  const stream = { isTTY: false, write: (s: string) => (out.push(s), true) } as unknown as NodeJS.WriteStream;
  const p = new Progress(2, stream, opts);
  for (const r of records) p.update(r);
  return out;
};
const step = (step: number, more: Record<string, unknown> = {}) => ({ type: 'train', stage: 'finetune', step, steps: 3, loss: 1.5, ce: 1, kl: 0.5, tokensPerSec: 99.6, eta: 4.2, ...more });

describe('Progress off a terminal', () => {
  it('a line every `every` steps and the last, CE and KL for a VW-LMM; none for other records', () => {
    expect(lines(undefined, [step(1), step(2), { type: 'eval', step: 2 }, step(3)])).toEqual([
      '  finetune  step     2/3  loss 1.500 (CE 1.000, KL 0.500)  100 tok/s  ETA 4 s\n',
      '  finetune  step     3/3  loss 1.500 (CE 1.000, KL 0.500)  100 tok/s  ETA 4 s\n',
    ]);
  });
  it('no split for a model without the KL, and a stage with its own loss shows the loss alone', () => {
    expect(lines({ kl: false }, [step(3, { ce: 1.5, kl: 0 })])).toEqual(['  finetune  step     3/3  loss 1.500  100 tok/s  ETA 4 s\n']);
    expect(lines(undefined, [step(3, { ce: undefined, kl: undefined, tokensPerSec: undefined })])).toEqual(['  finetune  step     3/3  loss 1.500  ETA 4 s\n']);
  });
});
