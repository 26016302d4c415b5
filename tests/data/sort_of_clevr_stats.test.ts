// Statistics of the Sort-of-CLEVR generator, and every answer recomputed independently from the rendered
// PIXELS (no use of the generator's scene objects or answer code for the recomputation).
import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/random';
import { generateScene, questionsFor, renderScene } from '../../src/data/sort_of_clevr';

const S = 75;
const PALETTE: [string, number, number, number][] = [
  ['red', 255, 0, 0], ['green', 0, 255, 0], ['blue', 0, 0, 255],
  ['orange', 255, 156, 0], ['gray', 128, 128, 128], ['yellow', 255, 255, 0],
];

interface Recovered { cx: number; cy: number; shape: 'square' | 'circle' }

function inShape(shape: 'square' | 'circle', dx: number, dy: number): boolean {
  return shape === 'square' ? Math.max(Math.abs(dx), Math.abs(dy)) <= 5 : dx * dx + dy * dy <= 25;
}

/**
 * Recover each object from the pixels: label map (-1 white, else colour index); for colour c, every
 * (centre, shape) hypothesis whose pixels cover all of c's pixels and whose remaining pixels are painted by
 * later colours (objects are drawn in colour order). Returns one hypothesis per colour, or null when some
 * object is ambiguous (e.g. all four square corners hidden by later objects).
 */
function recoverFromPixels(img: Uint8Array): Recovered[] | null {
  const label = new Int8Array(S * S);
  for (let p = 0; p < S * S; p++) {
    const r = img[3 * p], g = img[3 * p + 1], b = img[3 * p + 2];
    if (r === 255 && g === 255 && b === 255) { label[p] = -1; continue; }
    const c = PALETTE.findIndex(([, R, G, B]) => R === r && G === g && B === b);
    if (c < 0) throw new Error(`pixel ${p} has a colour outside the palette: ${r},${g},${b}`);
    label[p] = c;
  }
  const out: Recovered[] = [];
  for (let c = 0; c < 6; c++) {
    let minX = S, maxX = -1, minY = S, maxY = -1, count = 0;
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) {
      if (label[y * S + x] !== c) continue;
      count++;
      minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
    }
    if (count === 0) throw new Error(`colour ${PALETTE[c][0]} is not visible`);
    const found: Recovered[] = [];
    for (let cx = maxX - 5; cx <= minX + 5; cx++) for (let cy = maxY - 5; cy <= minY + 5; cy++) {
      for (const shape of ['square', 'circle'] as const) {
        let ok = true, inside = 0;
        for (let dy = -5; dy <= 5 && ok; dy++) for (let dx = -5; dx <= 5 && ok; dx++) {
          if (!inShape(shape, dx, dy)) continue;
          const x = cx + dx, y = cy + dy;
          if (x < 0 || y < 0 || x >= S || y >= S) { ok = false; break; }
          const l = label[y * S + x];
          if (l === c) inside++;
          else if (l <= c) ok = false; // white or an earlier colour where this shape would have painted
        }
        if (ok && inside === count) found.push({ cx, cy, shape });
      }
    }
    if (found.length !== 1) return null;
    out.push(found[0]);
  }
  return out;
}

function answerFromPixels(objs: Recovered[], kind: string, i: number): string {
  const o = objs[i];
  const d2 = (a: Recovered, b: Recovered) => (a.cx - b.cx) ** 2 + (a.cy - b.cy) ** 2;
  switch (kind) {
    case 'shape': return o.shape;
    case 'left': return o.cx < 37.5 ? 'yes' : 'no';
    case 'top': return o.cy < 37.5 ? 'yes' : 'no';
    case 'closest':
    case 'furthest': {
      const others = objs.map((p, j) => ({ j, d: d2(o, p) })).filter((e) => e.j !== i);
      others.sort((a, b) => (kind === 'closest' ? a.d - b.d : b.d - a.d) || a.j - b.j);
      return objs[others[0].j].shape;
    }
    case 'count': return String(objs.filter((p) => p.shape === o.shape).length);
    default: throw new Error(kind);
  }
}

describe('Sort-of-CLEVR statistics', () => {
  it('holds the geometry constraints over 2,000 scenes', () => {
    const gen = new Generator(2024);
    let squares = 0, left = 0;
    for (let n = 0; n < 2000; n++) {
      const { objects } = generateScene(gen);
      expect(objects).toHaveLength(6);
      for (let i = 0; i < 6; i++) {
        const a = objects[i];
        if (!(Number.isInteger(a.cx) && Number.isInteger(a.cy) && a.cx >= 5 && a.cx < 70 && a.cy >= 5 && a.cy < 70)) {
          throw new Error(`scene ${n}: centre out of range ${a.cx},${a.cy}`);
        }
        if (a.shape === 'square') squares++;
        if (a.cx < 37.5) left++;
        for (let j = i + 1; j < 6; j++) {
          const b = objects[j];
          if ((a.cx - b.cx) ** 2 + (a.cy - b.cy) ** 2 < 100) throw new Error(`scene ${n}: objects ${i} and ${j} closer than 10 px`);
        }
      }
    }
    expect(squares / 12000).toBeGreaterThan(0.47);
    expect(squares / 12000).toBeLessThan(0.53);
    expect(left / 12000).toBeGreaterThan(0.46);
    expect(left / 12000).toBeLessThan(0.56);
  });

  it('answers match a recomputation from the rendered pixels, and the answer distributions are sane', () => {
    const gen = new Generator(99);
    const dist: Record<string, Record<string, number>> = {};
    let scenes = 0, ambiguous = 0, checked = 0, unoccluded = 0;
    for (let n = 0; n < 400; n++) {
      const scene = generateScene(gen);
      const qs = questionsFor(scene, gen, { nonRelational: 10, relational: 10 });
      for (const q of qs) {
        const d = (dist[q.category] ??= {});
        d[q.answer] = (d[q.answer] ?? 0) + 1;
      }
      const img = renderScene(scene);
      const rec = recoverFromPixels(img);
      scenes++;
      if (!rec) { ambiguous++; continue; }
      for (const q of qs) {
        const colour = PALETTE.findIndex(([name]) => q.question.includes(` ${name} object`));
        expect(colour).toBeGreaterThanOrEqual(0);
        expect(`${q.category}: ${q.question} -> ${q.answer}`).toBe(`${q.category}: ${q.question} -> ${answerFromPixels(rec, q.category, colour)}`);
        checked++;
      }
      // Pixel counts of objects nobody overlaps: exactly 121 (square) or 81 (circle).
      for (let c = 0; c < 6; c++) {
        let count = 0;
        for (let p = 0; p < S * S; p++) if (img[3 * p] === PALETTE[c][1] && img[3 * p + 1] === PALETTE[c][2] && img[3 * p + 2] === PALETTE[c][3]) count++;
        const o = scene.objects[c];
        const overlapped = scene.objects.some((p, j) => j > c && Math.abs(p.cx - o.cx) <= 10 && Math.abs(p.cy - o.cy) <= 10);
        if (!overlapped) { expect(count).toBe(o.shape === 'square' ? 121 : 81); unoccluded++; }
      }
    }
    expect(ambiguous / scenes).toBeLessThan(0.05);
    expect(checked).toBeGreaterThan(7000);
    expect(unoccluded).toBeGreaterThan(1500);
    const frac = (cat: string, ans: string) => (dist[cat][ans] ?? 0) / Object.values(dist[cat]).reduce((a, b) => a + b, 0);
    for (const [cat, ans] of [['left', 'yes'], ['top', 'yes'], ['shape', 'square'], ['closest', 'square'], ['furthest', 'square']]) {
      expect(frac(cat, ans), `${cat}=${ans}`).toBeGreaterThan(0.42);
      expect(frac(cat, ans), `${cat}=${ans}`).toBeLessThan(0.58);
    }
    expect(Object.keys(dist.count).sort()).toEqual(['1', '2', '3', '4', '5', '6']);
    // Binomial(5, 1/2) + 1: 3 and 4 are the most common counts.
    expect(frac('count', '3') + frac('count', '4')).toBeGreaterThan(0.5);
    // Each group's kinds are roughly uniform.
    const total = (cat: string) => Object.values(dist[cat]).reduce((a, b) => a + b, 0);
    for (const cat of ['shape', 'left', 'top', 'closest', 'furthest', 'count']) {
      expect(total(cat) / 4000).toBeGreaterThan(0.28);
      expect(total(cat) / 4000).toBeLessThan(0.39);
    }
  });
});
