// The collectives test's inputs: rank r's random values, the same wherever computed, so each rank makes its own
// and the test makes everyone's for the reference.
import { Generator } from '../../../src/random';

export function inputOf(seed: number, rank: number, n: number): Float32Array {
  const g = new Generator(seed).fork(`rank${rank}`);
  return Float32Array.from({ length: n }, () => g.normal() * 3);
}

/** What rank r hands to allGatherObject in the collectives mode (the test builds it too, as the reference). */
export function objectOf(rank: number): unknown {
  return { rank, text: rank === 0 ? 'é 日本 🙂 "quoted"\n' : 'x'.repeat(100_003) + 'ß', list: rank === 0 ? [] : [1.5, null, true, { a: [rank] }] };
}
