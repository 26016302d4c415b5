import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetItem, jsonListElements, LlavaDataset, LlavaRecord, readLlavaRecords, validateLlavaRecord } from '../../src/data/dataset';
import { rngFor, runSeed } from '../support/random';
import { encodePng } from '../../src/data/sort_of_clevr';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-dataset-'));
  fs.mkdirSync(path.join(tmp, 'images'));
  for (let i = 0; i < 20; i++) {
    // 4 x 2 images whose first byte is the image number.
    const data = new Uint8Array(4 * 2 * 3).fill(i);
    fs.writeFileSync(path.join(tmp, 'images', `img${i}.png`), encodePng(data, 4, 2));
  }
  fs.writeFileSync(path.join(tmp, 'images', 'broken.png'), 'garbage');
});
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

const rec = (id: string | number, image?: string, q = 'Q?', a = 'A'): Record<string, unknown> => ({
  id, ...(image ? { image } : {}),
  conversations: [{ from: 'human', value: `${image ? '<image>\n' : ''}${q}` }, { from: 'gpt', value: a }],
});

function write(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

describe('readLlavaRecords', () => {
  it('reads a JSON list and keeps extra fields', () => {
    const f = write('list.json', JSON.stringify([
      { ...rec('a', 'images/img0.png'), category: 'shape', group: 'non-relational' },
      { ...rec(7), answers: Array(10).fill('yes') },
    ]));
    const { records, skipped } = readLlavaRecords(f);
    expect(skipped).toEqual([]);
    expect(records.map((r) => r.id)).toEqual(['a', '7']);
    expect(records[0]).toMatchObject({ image: 'images/img0.png', category: 'shape', group: 'non-relational' });
    expect(records[1].image).toBeUndefined();
    expect(records[1].answers).toHaveLength(10);
  });

  it('reads JSONL, skipping malformed lines with their 1-based line numbers', () => {
    const lines = [
      JSON.stringify(rec('r1', 'images/img1.png')),
      '',
      '{"id": "r3", "conversations": [ oops',
      JSON.stringify(rec('r4')),
      JSON.stringify({ id: 'r5', conversations: [] }),
      '   ',
      JSON.stringify(rec('r7')) + '\r',
      '[1, 2]',
    ];
    const f = write('data.jsonl', lines.join('\n') + '\n');
    const { records, skipped } = readLlavaRecords(f);
    expect(records.map((r) => r.id)).toEqual(['r1', 'r4', 'r7']);
    expect(skipped.map((s) => s.line)).toEqual([3, 5, 8]);
    expect(skipped[0].reason).toMatch(/malformed JSON/);
    expect(skipped[1].reason).toMatch(/record 'r5': 'conversations' is empty/);
    expect(skipped[2].reason).toMatch(/array, not an object/);
    // No trailing newline, and a BOM.
    const g = write('nobom.jsonl', '\uFEFF' + JSON.stringify(rec('x')) + '\n' + JSON.stringify(rec('y')));
    expect(readLlavaRecords(g).records.map((r) => r.id)).toEqual(['x', 'y']);
  });

  it('validates records: roles, alternation, types, <image> without an image', () => {
    const bad: [unknown, RegExp][] = [
      [{ id: 'a' }, /missing 'conversations'/],
      [{ id: 'a', conversations: {} }, /'conversations' is object, expected an array/],
      [{ id: 'a', conversations: [{ from: 'gpt', value: 'x' }] }, /holds only a gpt turn/],
      [{ id: 'a', conversations: [{ from: 'gpt', value: 'x' }, { from: 'gpt', value: 'y' }] }, /turn 1 is from gpt/],
      [{ id: 'a', conversations: [{ from: 'human', value: 'x' }, { from: 'human', value: 'y' }] }, /turn 1 is from human/],
      [{ id: 'a', conversations: [{ from: 'bot', value: 'x' }] }, /from 'bot'/],
      [{ id: 'a', conversations: [{ from: 'human', value: 3 }] }, /'value' is number/],
      [{ id: 'a', conversations: [{ from: 'human' }] }, /'value' is undefined/],
      [{ id: 'a', conversations: ['hi'] }, /turn 0 is string/],
      [{ ...rec('a'), image: 5 }, /'image' is number/],
      [{ ...rec('a'), image: '' }, /'image' is an empty string/],
      [rec('a', undefined, '<image>\nQ'), /no 'image' but its conversation contains <image>/],
      [{ ...rec('a'), category: 1 }, /'category' is number/],
      [{ ...rec('a'), answers: ['x', 2] }, /'answers' must be a non-empty array of strings/],
      [{ ...rec('a'), id: { x: 1 } }, /id is object/],
      [null, /record is null/],
    ];
    for (const [raw, re] of bad) expect(validateLlavaRecord(raw, 'f#0')).toMatch(re);
    const ok = validateLlavaRecord({ conversations: [{ from: 'user', value: 'hi' }, { from: 'Assistant', value: 'yo' }, { from: 'human', value: 'eval?' }] }, 'f#3');
    expect(ok).toMatchObject({ id: 'f#3', conversations: [{ from: 'human' }, { from: 'gpt' }, { from: 'human' }] });
    // LLaVA's preprocess drops a first turn from gpt (if roles[source[0]['from']] != conv.roles[0]: source = source[1:])
    const opened = validateLlavaRecord({ conversations: [{ from: 'gpt', value: 'hello' }, { from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }, 'f#4');
    expect(opened).toMatchObject({ conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] });
    expect((opened as { conversations: unknown[] }).conversations).toHaveLength(2);
  });

  it('records invalid JSON-list entries by index and throws in strict mode naming file:line / file[index]', () => {
    const f = write('mixed.json', JSON.stringify([rec('ok'), { id: 'bad', conversations: [{ from: 'human', value: 'x' }, { from: 'human', value: 'y' }] }]));
    const { records, skipped } = readLlavaRecords(f);
    expect(records).toHaveLength(1);
    expect(skipped).toEqual([{ index: 1, reason: expect.stringMatching(/record 'bad': turn 1 is from human/) }]);
    expect(() => readLlavaRecords(f, { strict: true })).toThrow(`${f}[1]: record 'bad': turn 1 is from human`);
    const g = write('strict.jsonl', `${JSON.stringify(rec('a'))}\n\n{not json\n`);
    expect(() => readLlavaRecords(g, { strict: true })).toThrow(new RegExp(`${g.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: malformed JSON`));
    const h = write('strict2.jsonl', `${JSON.stringify(rec('a'))}\n${JSON.stringify({ id: 'z', conversations: [] })}\n`);
    expect(() => readLlavaRecords(h, { strict: true })).toThrow(/strict2\.jsonl:2: record 'z'/);
  });

  it('refuses text that is not UTF-8 (Python json.load raises), a JSONL line skipped and named, a JSON list whole', () => {
    const latin1 = (text: string) => Buffer.from(text, 'latin1'); // 'é' becomes the lone byte 0xE9
    const f = path.join(tmp, 'latin1.jsonl');
    fs.writeFileSync(f, Buffer.concat([Buffer.from(JSON.stringify(rec('a')) + '\n'), latin1(JSON.stringify(rec('b', undefined, 'Café?')) + '\n')]));
    const { records, skipped } = readLlavaRecords(f);
    expect(records.map((r) => r.id)).toEqual(['a']);
    expect(skipped).toEqual([{ line: 2, reason: expect.stringMatching(/not valid UTF-8/) }]);
    expect(() => readLlavaRecords(f, { strict: true })).toThrow(/latin1\.jsonl:2: not valid UTF-8/);
    const g = path.join(tmp, 'latin1.json');
    fs.writeFileSync(g, latin1(JSON.stringify([rec('a'), rec('b', undefined, 'Café?')])));
    expect(() => readLlavaRecords(g)).toThrow(/latin1\.json' is not valid JSON: record 1 .*not valid UTF-8/);
  });

  it(`jsonListElements splits random JSON lists exactly as JSON.parse reads them (seed ${runSeed})`, () => {
    const rng = rngFor('dataset:json-list');
    const pick = <T>(xs: T[]) => xs[Math.floor(rng.next() * xs.length)];
    const str = () => Array.from({ length: Math.floor(rng.next() * 6) }, () => pick(['a', '"', '\\', ']', '[', '}', '{', ',', 'é', '\u2028', '\n', ' ', '\\"'])).join('');
    const value = (depth: number): unknown => {
      const k = Math.floor(rng.next() * (depth > 2 ? 4 : 6));
      if (k === 0) return str();
      if (k === 1) return Math.round(rng.normal() * 1000) / 7;
      if (k === 2) return pick([true, false, null]);
      if (k === 3) return str() + str();
      if (k === 4) return Array.from({ length: Math.floor(rng.next() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rng.next() * 4) }, () => [str(), value(depth + 1)]));
    };
    const ws = () => pick(['', ' ', '\n', '\t ', '\r\n']);
    for (let trial = 0; trial < 200; trial++) {
      const list = Array.from({ length: Math.floor(rng.next() * 5) }, () => value(0));
      const text = `${ws()}[${ws()}${list.map((v) => JSON.stringify(v, null, pick([0, 1, 2]))).join(`${ws()},${ws()}`)}${ws()}]${ws()}`;
      const buf = Buffer.from(text);
      const parts = jsonListElements(buf).map(({ begin, end }) => JSON.parse(buf.subarray(begin, end).toString('utf8')) as unknown);
      expect(parts).toEqual(JSON.parse(text));
    }
  });

  it('fails clearly on a missing file, invalid JSON or a non-list', () => {
    expect(() => readLlavaRecords(path.join(tmp, 'none.json'))).toThrow(/none\.json': file not found/);
    expect(() => readLlavaRecords(write('broken.json', '[{"id": 1,'))).toThrow(/broken\.json' is not a valid JSON list: the list is not closed/);
    expect(() => readLlavaRecords(write('obj.json', JSON.stringify(rec('a'))))).toThrow(/obj\.json' is not a valid JSON list: it holds an object where a list of records/);
    expect(() => readLlavaRecords(write('empty.json', ' \n'))).toThrow(/it holds nothing where a list of records/);
    expect(() => readLlavaRecords(write('comma.json', `[${JSON.stringify(rec('a'))},]`))).toThrow(/element 1 is missing/);
    expect(() => readLlavaRecords(write('after.json', `[${JSON.stringify(rec('a'))}] x`))).toThrow(/text after the end of the list/);
    expect(() => readLlavaRecords(write('bad1.json', `[${JSON.stringify(rec('a'))}, {"id": tru}]`))).toThrow(/is not valid JSON: record 1 \(bytes/);
    expect(() => readLlavaRecords(write('lines.json', `${JSON.stringify(rec('a'))}\n${JSON.stringify(rec('b'))}`))).toThrow(/name the file \.jsonl/);
    expect(readLlavaRecords(write('sniff.txt', JSON.stringify([rec('a')]))).records).toHaveLength(1);
  });
});

describe('LlavaDataset', () => {
  const records = (): LlavaRecord[] => {
    const out: LlavaRecord[] = [];
    for (let i = 0; i < 20; i++) out.push(validateLlavaRecord(rec(`s${i}`, `images/img${i}.png`), '') as LlavaRecord);
    out.push(validateLlavaRecord(rec('text-only'), '') as LlavaRecord);
    out.push(validateLlavaRecord(rec('missing', 'images/does_not_exist.png'), '') as LlavaRecord);
    out.push(validateLlavaRecord(rec('corrupt', 'images/broken.png'), '') as LlavaRecord);
    return out;
  };

  it('gives a reproducible permutation per epoch, different across epochs and seeds', () => {
    const ds = new LlavaDataset(records(), tmp);
    const e0 = ds.epochOrder(0, 1), e1 = ds.epochOrder(1, 1);
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(new LlavaDataset(records(), tmp).epochOrder(0, 1)).toEqual(e0);
    expect(e1).not.toEqual(e0);
    expect(ds.epochOrder(0, 2)).not.toEqual(e0);
    expect(ds.epochOrder(0, 1)).toEqual(e0);
    e0.reverse(); // callers get a copy
    expect(ds.epochOrder(0, 1)).not.toEqual(e0);
  });

  it('loads images, returns undefined for text-only and null (counted) for broken ones with file + id', async () => {
    const ds = new LlavaDataset(records(), tmp);
    const img = await ds.loadImage(5);
    expect(img).toMatchObject({ width: 4, height: 2 });
    expect(img!.data[0]).toBe(5);
    expect(await ds.loadImage(20)).toBeUndefined();
    expect(await ds.loadImage(21)).toBeNull();
    expect(await ds.loadImage(22)).toBeNull();
    expect(ds.skippedImages).toBe(2);
    expect(ds.imageSkips[0]).toMatchObject({ index: 21, id: 'missing', file: path.join(tmp, 'images', 'does_not_exist.png') });
    expect(ds.imageSkips[0].reason).toMatch(/record 'missing'.*does_not_exist\.png.*file not found/);
    expect(ds.imageSkips[1].reason).toMatch(/record 'corrupt'.*broken\.png/);
    const strict = new LlavaDataset(records(), tmp, { strict: true });
    await expect(strict.loadImage(21)).rejects.toThrow(/record 'missing' \(index 21\): image '.*does_not_exist\.png' failed/);
  });

  it('batches an epoch in order, skipping broken images and refilling batches', async () => {
    const ds = new LlavaDataset(records(), tmp);
    const order = ds.epochOrder(3, 9);
    const batches: DatasetItem[][] = [];
    for await (const b of ds.batches({ batchSize: 4, epoch: 3, seed: 9 })) batches.push(b);
    const items = batches.flat();
    expect(batches.slice(0, -1).every((b) => b.length === 4)).toBe(true);
    expect(items.map((it) => it.index)).toEqual(order.filter((i) => i !== 21 && i !== 22));
    expect(items.map((it) => it.position)).toEqual(order.map((_, p) => p).filter((p) => order[p] !== 21 && order[p] !== 22));
    expect(ds.skippedImages).toBe(2);
    for (const it of items) {
      if (it.index === 20) expect(it.image).toBeUndefined();
      else expect(it.image!.data[0]).toBe(it.index);
      expect(it.record).toBe(ds.records[it.index]);
    }
    // Counted again on the next epoch; listed once.
    for await (const b of ds.batches({ batchSize: 5, epoch: 4, seed: 9, prefetch: 0 })) void b;
    expect(ds.skippedImages).toBe(4);
    expect(ds.imageSkips).toHaveLength(2);
  });

  it('continues exactly from startIndex: the resumed run equals the tail of the full epoch', async () => {
    const ds = new LlavaDataset(records(), tmp);
    const full: DatasetItem[][] = [];
    for await (const b of ds.batches({ batchSize: 3, epoch: 1, seed: 5 })) full.push(b);
    for (const k of [1, 3, 5]) {
      const resumeAt = full[k - 1][full[k - 1].length - 1].position + 1;
      const tail: DatasetItem[][] = [];
      for await (const b of new LlavaDataset(records(), tmp).batches({ batchSize: 3, epoch: 1, seed: 5, startIndex: resumeAt })) tail.push(b);
      const strip = (bs: DatasetItem[][]) => bs.map((b) => b.map((it) => [it.index, it.position, it.image?.data[0]]));
      expect(strip(tail)).toEqual(strip(full.slice(k)));
    }
    // Past the end: nothing.
    const none: DatasetItem[][] = [];
    for await (const b of ds.batches({ batchSize: 3, epoch: 1, seed: 5, startIndex: 23 })) none.push(b);
    expect(none).toEqual([]);
  });

  it('drops the last partial batch on request, and throws in strict mode when a broken image is reached', async () => {
    const ds = new LlavaDataset(records(), tmp);
    const sizes: number[] = [];
    for await (const b of ds.batches({ batchSize: 4, dropLast: true })) sizes.push(b.length);
    expect(sizes).toEqual([4, 4, 4, 4, 4]); // 21 good samples -> 5 full batches
    const strict = new LlavaDataset(records(), tmp, { strict: true });
    const run = async () => { for await (const b of strict.batches({ batchSize: 4 })) void b; };
    await expect(run()).rejects.toThrow(/record '(missing|corrupt)'/);
    await expect((async () => { for await (const b of ds.batches({ batchSize: 0 })) void b; })()).rejects.toThrow(/batchSize/);
  });

  it('builds from a file with fromFile', () => {
    const f = write('ds.jsonl', [JSON.stringify(rec('a', 'images/img0.png')), 'nope'].join('\n'));
    const { dataset, skipped } = LlavaDataset.fromFile(f, tmp);
    expect(dataset.length).toBe(1);
    expect(skipped).toEqual([{ line: 2, reason: expect.stringMatching(/malformed JSON/) }]);
    expect(dataset.imagePath(0)).toBe(path.join(tmp, 'images', 'img0.png'));
  });
});
