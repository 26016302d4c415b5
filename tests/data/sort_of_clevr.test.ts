import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/random';
import {
  COLOURS, answerFor, captionFor, encodePng, generateScene, questionsFor, renderScene, Scene,
  sortOfClevrSplit, writeSortOfClevr, SORT_OF_CLEVR_MAX_IMAGES, SORT_OF_CLEVR_OUTPUTS,
} from '../../src/data/sort_of_clevr';
import { makeSplit } from '../../src/demo/task';

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-soc-')); });
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

function fixedScene(): Scene {
  // Hand-made scene: red at the top left, yellow at the bottom right, others spread.
  return {
    objects: [
      { colour: 'red', shape: 'circle', cx: 10, cy: 10 },
      { colour: 'green', shape: 'square', cx: 60, cy: 60 },
      { colour: 'blue', shape: 'circle', cx: 37, cy: 38 },
      { colour: 'orange', shape: 'square', cx: 38, cy: 37 + 20 },
      { colour: 'gray', shape: 'circle', cx: 21, cy: 10 },
      { colour: 'yellow', shape: 'square', cx: 69, cy: 5 },
    ],
  };
}

describe('Sort-of-CLEVR scenes', () => {
  it('generates six objects in colour order with integer centres in [5, 70), >= 10 px apart', () => {
    const s = generateScene(new Generator(1));
    expect(s.objects.map((o) => o.colour)).toEqual([...COLOURS]);
    for (const o of s.objects) {
      expect(Number.isInteger(o.cx) && Number.isInteger(o.cy)).toBe(true);
      expect(o.cx).toBeGreaterThanOrEqual(5); expect(o.cx).toBeLessThan(70);
      expect(['square', 'circle']).toContain(o.shape);
    }
  });

  it('is reproducible from the seed', () => {
    expect(generateScene(new Generator(42))).toEqual(generateScene(new Generator(42)));
    expect(generateScene(new Generator(42))).not.toEqual(generateScene(new Generator(43)));
  });

  it('renders exact squares (121 px) and circles (81 px) on white', () => {
    const img = renderScene(fixedScene());
    expect(img.length).toBe(75 * 75 * 3);
    const px = (x: number, y: number) => Array.from(img.subarray((y * 75 + x) * 3, (y * 75 + x) * 3 + 3));
    expect(px(0, 74)).toEqual([255, 255, 255]);
    // red circle at (10, 10): (15, 10) inside, (14, 14) outside (16 + 16 > 25), (13, 14) inside (9 + 16).
    expect(px(15, 10)).toEqual([255, 0, 0]);
    expect(px(13, 14)).toEqual([255, 0, 0]);
    expect(px(14, 14)).toEqual([255, 255, 255]);
    // green square at (60, 60): corners (55, 55) and (65, 65) inside, (66, 60) outside.
    expect(px(55, 55)).toEqual([0, 255, 0]);
    expect(px(65, 65)).toEqual([0, 255, 0]);
    expect(px(66, 60)).toEqual([255, 255, 255]);
    // yellow square at (69, 5) reaches the right edge (74) and the top edge (0).
    expect(px(74, 0)).toEqual([255, 255, 0]);
    let green = 0, red = 0;
    for (let p = 0; p < 75 * 75; p++) {
      if (img[3 * p] === 0 && img[3 * p + 1] === 255 && img[3 * p + 2] === 0) green++;
      if (img[3 * p] === 255 && img[3 * p + 1] === 0 && img[3 * p + 2] === 0) red++;
    }
    expect(green).toBe(121);
    expect(red).toBe(81);
  });

  it('answers every kind as the table says (hand-checked scene)', () => {
    const s = fixedScene();
    expect(answerFor(s, 'shape', 0)).toBe('circle');
    expect(answerFor(s, 'left', 2)).toBe('yes'); // cx 37 < 37.5
    expect(answerFor(s, 'left', 3)).toBe('no'); // cx 38
    expect(answerFor(s, 'top', 3)).toBe('no');
    expect(answerFor(s, 'top', 2)).toBe('no'); // cy 38
    expect(answerFor(s, 'top', 5)).toBe('yes');
    expect(answerFor(s, 'closest', 0)).toBe('circle'); // gray at distance 11
    expect(answerFor(s, 'furthest', 0)).toBe('square'); // green at (60, 60)
    expect(answerFor(s, 'count', 0)).toBe('3');
    expect(answerFor(s, 'count', 1)).toBe('3');
  });

  it('breaks closest/furthest ties towards the lower colour index', () => {
    const s: Scene = {
      objects: [
        { colour: 'red', shape: 'circle', cx: 30, cy: 30 },
        { colour: 'green', shape: 'square', cx: 50, cy: 30 }, // distance 20
        { colour: 'blue', shape: 'circle', cx: 10, cy: 30 }, // distance 20 (tie with green)
        { colour: 'orange', shape: 'circle', cx: 30, cy: 60 }, // 30
        { colour: 'gray', shape: 'square', cx: 30, cy: 0 + 5 }, // 25
        { colour: 'yellow', shape: 'circle', cx: 60, cy: 30 }, // 30 (tie with orange)
      ],
    };
    expect(answerFor(s, 'closest', 0)).toBe('square'); // green beats blue
    expect(answerFor(s, 'furthest', 0)).toBe('circle'); // orange beats yellow (both circles here)
    s.objects[3].shape = 'square';
    expect(answerFor(s, 'furthest', 0)).toBe('square'); // orange (index 3) wins over yellow (index 5)
  });

  it('draws questions per group with the exact templates', () => {
    const s = generateScene(new Generator(3));
    const qs = questionsFor(s, new Generator(4), { nonRelational: 30, relational: 30 });
    expect(qs.length).toBe(60);
    const patterns: Record<string, RegExp> = {
      shape: /^What shape is the (\w+) object\?$/,
      left: /^Is the (\w+) object on the left\?$/,
      top: /^Is the (\w+) object on the top\?$/,
      closest: /^What shape is the object closest to the (\w+) object\?$/,
      furthest: /^What shape is the object furthest from the (\w+) object\?$/,
      count: /^How many objects have the same shape as the (\w+) object\?$/,
    };
    qs.forEach((q, k) => {
      expect(q.group).toBe(k < 30 ? 'non-relational' : 'relational');
      expect(k < 30 ? ['shape', 'left', 'top'] : ['closest', 'furthest', 'count']).toContain(q.category);
      const m = patterns[q.category].exec(q.question);
      expect(m).not.toBeNull();
      const idx = COLOURS.indexOf(m![1] as (typeof COLOURS)[number]);
      expect(idx).toBeGreaterThanOrEqual(0);
      expect(q.answer).toBe(answerFor(s, q.category, idx));
    });
    expect(questionsFor(s, new Generator(4), { nonRelational: 30, relational: 30 })).toEqual(qs);
    expect(questionsFor(s, new Generator(4))).toHaveLength(20);
  });

  it('captions every object in colour order: "<colour> <shape> <left|right> <top|bottom>" joined by " , "', () => {
    expect(captionFor(fixedScene())).toBe(
      'red circle left top , green square right bottom , blue circle left bottom , '
      + 'orange square right bottom , gray circle left top , yellow square right top',
    );
  });
});

describe('writeSortOfClevr', () => {
  it('writes PNGs, LLaVA records, captions and meta, reproducibly', () => {
    const a = path.join(tmp, 'a'), b = path.join(tmp, 'b'), c = path.join(tmp, 'c');
    const sum = writeSortOfClevr(a, { train: 12, test: 3, seed: 7, nonRelational: 2, relational: 3 });
    expect(sum).toMatchObject({ train: 12, test: 3, trainRecords: 60, testRecords: 15, captionRecords: 12 });
    // what `data sort-of-clevr --overwrite-output-dir` removes before it writes again
    expect(fs.readdirSync(a).sort()).toEqual([...SORT_OF_CLEVR_OUTPUTS].sort());
    const train = JSON.parse(fs.readFileSync(path.join(a, 'train.json'), 'utf8'));
    const test = JSON.parse(fs.readFileSync(path.join(a, 'test.json'), 'utf8'));
    const caps = JSON.parse(fs.readFileSync(path.join(a, 'captions.json'), 'utf8'));
    const meta = JSON.parse(fs.readFileSync(path.join(a, 'meta.json'), 'utf8'));
    expect(train).toHaveLength(60);
    expect(test).toHaveLength(15);
    expect(caps).toHaveLength(12);
    expect(meta).toMatchObject({ seed: 7, generatorVersion: 2, counts: { trainImages: 12, testImages: 3, trainRecords: 60 } });
    expect(train[0].image).toBe('images/train_00000.png');
    expect(train[0].id).toBe('train_00000_q00');
    expect(train[0].conversations[0].value.startsWith('<image>\n')).toBe(true);
    expect(train[0].conversations[1].from).toBe('gpt');
    expect(train[0].group).toBe('non-relational');
    expect(train[4].group).toBe('relational');
    expect(test[14].image).toBe('images/test_00002.png');
    expect(caps[11]).toMatchObject({ id: 'train_00011_caption', image: 'images/train_00011.png', category: 'caption' });
    expect(caps[0].conversations).toHaveLength(2);
    expect(caps[0].conversations[0]).toEqual({ from: 'human', value: '<image>' });
    expect(caps[0].conversations[1].value).toMatch(/^red (square|circle) (left|right) (top|bottom) , green /);
    // The PNG decodes back to the rendered scene whose caption was written.
    const png = PNG.sync.read(fs.readFileSync(path.join(a, 'images', 'train_00003.png')));
    expect([png.width, png.height]).toEqual([75, 75]);
    // Reproducible; the test split does not depend on the number of training images.
    writeSortOfClevr(b, { train: 12, test: 3, seed: 7, nonRelational: 2, relational: 3 });
    expect(fs.readFileSync(path.join(b, 'train.json'))).toEqual(fs.readFileSync(path.join(a, 'train.json')));
    expect(fs.readFileSync(path.join(b, 'images', 'test_00001.png'))).toEqual(fs.readFileSync(path.join(a, 'images', 'test_00001.png')));
    writeSortOfClevr(c, { train: 5, test: 3, seed: 7, nonRelational: 2, relational: 3 });
    expect(fs.readFileSync(path.join(c, 'test.json'))).toEqual(fs.readFileSync(path.join(a, 'test.json')));
  });

  it('writes a split of more records than one written piece (10,000) as one JSON list; refuses splits past its limit', () => {
    const dir = path.join(tmp, 'pieces');
    // 51 images x 200 questions: 10,200 records, written in two pieces
    writeSortOfClevr(dir, { train: 51, test: 0, seed: 3, nonRelational: 100, relational: 100 });
    const text = fs.readFileSync(path.join(dir, 'train.json'), 'utf8');
    const train = JSON.parse(text) as { id: string }[];
    expect(train).toHaveLength(10_200);
    expect(train[10_000].id).toBe('train_00050_q00');
    expect(new Set(train.map((r) => r.id)).size).toBe(10_200);
    expect(text).toBe('[\n' + train.map((r) => JSON.stringify(r)).join(',\n') + '\n]\n');
    expect(fs.readFileSync(path.join(dir, 'test.json'), 'utf8')).toBe('[]\n');
    expect(() => writeSortOfClevr(path.join(tmp, 'huge'), { train: SORT_OF_CLEVR_MAX_IMAGES + 1 })).toThrow(/writeSortOfClevr: train must be at most 100000 images .* got 100001/);
    expect(fs.existsSync(path.join(tmp, 'huge'))).toBe(false);
  });

  it("holds what the demo trains on: its training split is the same stream's scenes, questions and pixels", () => {
    const dir = path.join(tmp, 'demo-data');
    writeSortOfClevr(dir, { train: 6, test: 2, seed: 5 });
    const train = JSON.parse(fs.readFileSync(path.join(dir, 'train.json'), 'utf8'));
    const captions = JSON.parse(fs.readFileSync(path.join(dir, 'captions.json'), 'utf8'));
    // the demo's training split (src/demo/recipe.ts: makeSplit(trainImages, new Generator(seed).fork('train')))
    const split = makeSplit(6, new Generator(5).fork('train'), { nonRelational: 10, relational: 10 });
    expect(train).toHaveLength(6 * 20);
    split.questions.forEach((qs, i) => qs.forEach((q, k) => {
      const rec = train[i * 20 + k];
      expect(rec.image).toBe(`images/train_0000${i}.png`);
      expect(rec.conversations[0].value).toBe(`<image>\n${q.question}`);
      expect(rec.conversations[1].value).toBe(q.answer);
    }));
    split.scenes.forEach((sc, i) => {
      expect(captions[i].conversations[1].value).toBe(captionFor(sc));
      const png = PNG.sync.read(fs.readFileSync(path.join(dir, 'images', `train_0000${i}.png`)));
      const rgb = split.rgb[i];
      for (let p = 0; p < 75 * 75; p++) for (let ch = 0; ch < 3; ch++) if (png.data[4 * p + ch] !== rgb[3 * p + ch]) throw new Error(`image ${i} differs at pixel ${p}`);
    });
    // and the same function makes both (no second generator to drift); the test stream is the root's second fork
    const root = new Generator(5);
    root.fork('train');
    expect(sortOfClevrSplit(root.fork('test'), 2).questions[1].map((q) => q.answer)).toEqual(
      JSON.parse(fs.readFileSync(path.join(dir, 'test.json'), 'utf8')).slice(20, 40).map((r: { conversations: { value: string }[] }) => r.conversations[1].value));
  });

  it('writes a PNG that decodes to the exact rendered pixels', () => {
    const rgb = renderScene(generateScene(new Generator(11)));
    const png = PNG.sync.read(encodePng(rgb, 75, 75));
    const back = new Uint8Array(75 * 75 * 3);
    for (let p = 0; p < 75 * 75; p++) for (let ch = 0; ch < 3; ch++) back[3 * p + ch] = png.data[4 * p + ch];
    expect(Buffer.from(back).equals(Buffer.from(rgb))).toBe(true);
  });

  it('rejects bad counts', () => {
    expect(() => writeSortOfClevr(path.join(tmp, 'x'), { train: -1 })).toThrow(/train must be a non-negative integer/);
    expect(() => questionsFor(generateScene(new Generator(0)), new Generator(0), { relational: 1.5 })).toThrow(/relational/);
  });
});
