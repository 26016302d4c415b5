// benchmarks/support.ts's numArg, the numeric flags of the benchmark scripts: a value within its bounds comes back
// unchanged (the default when the flag is absent); anything else (not a number, empty, not an integer, below the
// least or above the greatest value) exits 2 with one line saying what the flag takes. In this process: argv set per
// case, process.exit stubbed to throw (so nothing after the refusal runs) and console.error captured.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { declareFlags, numArg, NumArgBounds } from '../../benchmarks/support';
import { MAX_SEED } from '../../src/random';

const argv = process.argv;
let errors: string[] = [];

beforeEach(() => {
  errors = [];
  vi.spyOn(console, 'error').mockImplementation((...xs: unknown[]) => void errors.push(xs.join(' ')));
  vi.spyOn(process, 'exit').mockImplementation((code) => {
    throw new Error(`exit ${code}`);
  });
});
afterEach(() => {
  process.argv = argv;
  vi.restoreAllMocks();
});

/** numArg(name, dflt, bounds) with the command line `bench.ts ...args` (declared, so arg() knows the flag). */
function run(args: string[], name: string, dflt: number, bounds?: NumArgBounds): number {
  process.argv = ['node', '/somewhere/bench.ts', ...args];
  declareFlags([name]);
  return numArg(name, dflt, bounds);
}

/** The one line a refusal prints, after checking that it exited with status 2. */
function refusal(args: string[], name: string, dflt: number, bounds?: NumArgBounds): string {
  expect(() => run(args, name, dflt, bounds)).toThrow('exit 2');
  expect(errors).toHaveLength(1);
  return errors[0];
}

describe('numArg (benchmarks/support.ts)', () => {
  it('gives the default when the flag is absent, and a valid value unchanged', () => {
    const count = { integer: true, min: 1 };
    expect(run([], 'steps', 8, count)).toBe(8);
    expect(run(['--steps', '3'], 'steps', 8, count)).toBe(3);
    expect(run(['--steps', '1e3'], 'steps', 8, count)).toBe(1000);
    expect(run(['--warmup', '0'], 'warmup', 3, { integer: true, min: 0 })).toBe(0);
    expect(run(['--scale', '0.001'], 'scale', 0.25, { min: 0, minExclusive: true })).toBe(0.001);
    expect(run(['--mfu', '1'], 'mfu', 0.4, { min: 0, minExclusive: true, max: 1 })).toBe(1);
    expect(run(['--seed', String(MAX_SEED)], 'seed', 0, { integer: true, min: 0, max: MAX_SEED })).toBe(MAX_SEED);
    expect(run(['--x', '-2.5'], 'x', 0)).toBe(-2.5); // no bounds: any finite number
    expect(errors).toEqual([]);
  });

  it('refuses what is not a number, or not an integer, naming the flag and the value', () => {
    const count = { integer: true, min: 1 };
    expect(refusal(['--steps', 'abc'], 'steps', 8, count)).toBe("bench.ts: --steps takes an integer >= 1, got 'abc'");
    errors = [];
    expect(refusal(['--steps', ''], 'steps', 8, count)).toBe("bench.ts: --steps takes an integer >= 1, got ''");
    errors = [];
    expect(refusal(['--steps', '2.5'], 'steps', 8, count)).toBe("bench.ts: --steps takes an integer >= 1, got '2.5'");
    errors = [];
    expect(refusal(['--x', 'Infinity'], 'x', 0)).toBe("bench.ts: --x takes a number, got 'Infinity'");
  });

  it('refuses a value out of its bounds: below min, at an exclusive min, above max', () => {
    expect(refusal(['--steps', '0'], 'steps', 8, { integer: true, min: 1 })).toBe("bench.ts: --steps takes an integer >= 1, got '0'");
    errors = [];
    expect(refusal(['--reps', '-3'], 'reps', 3, { integer: true, min: 1 })).toBe("bench.ts: --reps takes an integer >= 1, got '-3'");
    errors = [];
    expect(refusal(['--scale', '0'], 'scale', 0.25, { min: 0, minExclusive: true })).toBe("bench.ts: --scale takes a number > 0, got '0'");
    errors = [];
    expect(refusal(['--mfu', '1.5'], 'mfu', 0.4, { min: 0, minExclusive: true, max: 1 })).toBe("bench.ts: --mfu takes a number > 0 and <= 1, got '1.5'");
    errors = [];
    expect(refusal(['--seed', String(MAX_SEED + 1)], 'seed', 0, { integer: true, min: 0, max: MAX_SEED }))
      .toBe(`bench.ts: --seed takes an integer >= 0 and <= ${MAX_SEED}, got '${MAX_SEED + 1}'`);
  });
});
