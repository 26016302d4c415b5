// Answer scoring of src/eval/llava_eval.ts: exact match after normalisation, and the VQA soft accuracy
// (min(1, matches among the other 9 / 3), averaged over the 10 leave-one-out subsets), on hand-worked cases.
import { describe, expect, it } from 'vitest';
import { exactMatch, normalizeAnswer, vqaSoftAccuracy } from '../../src';

describe('answer scoring', () => {
  it('normalizeAnswer folds case, punctuation and spacing', () => {
    expect(normalizeAnswer('  The  Red, square! ')).toBe('the red square');
    expect(normalizeAnswer('Ünïcode-Wörter')).toBe('ünïcode wörter');
  });

  it('exactMatch is 1 only for equal normalised answers', () => {
    expect(exactMatch('Yes.', 'yes')).toBe(1);
    expect(exactMatch('circle', 'Circle!')).toBe(1);
    expect(exactMatch('circles', 'circle')).toBe(0);
    expect(exactMatch('', 'no')).toBe(0);
  });

  it('vqaSoftAccuracy: 3 or more matching humans give 1, fewer give a fraction', () => {
    const ten = (k: number) => [...Array(k).fill('two'), ...Array(10 - k).fill('three')];
    // k matching answers: the 10 subsets leave out one matching (k of them) or one other answer
    const expected = (k: number) => (k * Math.min(1, (k - 1) / 3) + (10 - k) * Math.min(1, k / 3)) / 10;
    for (const k of [0, 1, 2, 3, 4, 10]) expect(vqaSoftAccuracy('Two', ten(k))).toBeCloseTo(expected(k), 12);
    expect(vqaSoftAccuracy('two', ten(1))).toBeCloseTo(0.3, 12);
    expect(vqaSoftAccuracy('two', ten(3))).toBeCloseTo(0.9, 12);
    expect(vqaSoftAccuracy('two', ten(4))).toBe(1);
  });
});
