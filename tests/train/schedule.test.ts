// The learning-rate schedule against transformers' get_cosine_schedule_with_warmup as HF Trainer steps it
// (tests/fixtures/schedule/cosine.json, scripts/make_schedule_fixture.py): the lr of every update.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cosineWithWarmup } from '../../src/train/schedule';

const fx = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'schedule', 'cosine.json'), 'utf8')) as {
  cases: { totalSteps: number; warmupRatio: number; baseLr: number; lr: number[] }[];
};

describe('cosine schedule with warmup', () => {
  it("every update's lr as transformers gives it (1e-12 relative; float64 on both sides)", () => {
    for (const c of fx.cases) {
      c.lr.forEach((want, step) => {
        const got = cosineWithWarmup(step, c.totalSteps, c.warmupRatio, c.baseLr);
        expect(Math.abs(got - want), `total ${c.totalSteps} ratio ${c.warmupRatio} step ${step}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-12 * c.baseLr);
      });
    }
  });

  it('a one-step stage without warmup trains at the full lr; the last update of a stage is not at 0', () => {
    expect(cosineWithWarmup(0, 1, 0, 2e-5)).toBe(2e-5);
    expect(cosineWithWarmup(99, 100, 0.03, 1e-3)).toBeGreaterThan(0);
  });
});
