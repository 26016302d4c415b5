// What prepareFile makes of records LLaVA's own code would misread or fail on halfway through training: each is
// trained as LLaVA trains it or skipped up front with the record named (--strict: an error), never left to fail in
// collate when its batch comes up. The model max length cuts as LLaVA's collator and
// prepare_inputs_labels_for_multimodal do (tokens, then positions with the image's features). A text-only batch
// while only the projector trains (no trainable parameter on its path) trains on, adding no gradient.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX, IMAGE_TOKEN_INDEX, tokenizeConversation, Turn } from '../../src/data/conversation';
import { TextTokenizer } from '../../src/data/tokenizer';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { configToJson } from '../../src/model/config';
import { describeSkipped, loadFileBatch, prepareFile, trainOnFile } from '../../src/train/from_file';
import { tempDirs } from '../support/tmp';
import { VwLmm } from '../../src/model/vwlmm';
import { tinyConfig, writeCliFixture } from './support/tiny';

const tmp = tempDirs('file-records');

interface Rec { id: string; image?: string; conversations: Turn[]; conversation_template?: string }

describe('prepareFile: records LLaVA would misread', () => {
  const dir = tmp();
  const fx = writeCliFixture(dir, { images: 1 });
  const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as Rec[];
  const [a, b] = recs;
  const write = (name: string, list: Rec[]) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, JSON.stringify(list));
    return f;
  };

  it('skips, naming them, two <image> placeholders, an image without one, and a record its template refuses', async () => {
    const two: Rec = { ...a, id: 'two', conversations: [...a.conversations, { from: 'human', value: '<image>\nIs the gray object on the left?' }, { from: 'gpt', value: 'no' }] };
    const none: Rec = { ...a, id: 'none', conversations: [{ from: 'human', value: 'Is the gray object on the top?' }, { from: 'gpt', value: 'yes' }] };
    const plain4: Rec = { ...a, id: 'plain4', conversation_template: 'plain', conversations: [...a.conversations, ...b.conversations] };
    const file = write('bad.json', [a, two, none, plain4, b]);
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    try {
      const p = await prepareFile(ck.model, tok, file, fx.imageFolder, false);
      expect(p.samples).toHaveLength(2);
      expect(p.skipped.map((s) => s.id)).toEqual(['two', 'none', 'plain4']);
      expect(p.skipped[0].reason).toMatch(/holds 2 <image> placeholders \(one image per record\)/);
      expect(p.skipped[1].reason).toMatch(/has an 'image' but no <image> in its conversation/);
      expect(p.skipped[2].reason).toMatch(/plain template: expected exactly 2 turns/);
      await expect(prepareFile(ck.model, tok, write('two.json', [a, two]), fx.imageFolder, true)).rejects.toThrow(/record 'two': its conversation holds 2 <image> placeholders .*\(--strict\)/);
      // tokenised on threads (fit_record.ts: LLaVA's 665K records take 45 minutes on one core): the same samples and
      // skips, in record order, over batches of 256 records spread on 3 threads (a bad template, a cut, text only too)
      const many = Array.from({ length: 700 }, (_, k) => {
        const r = [a, two, none, plain4, b][k % 5];
        const own = k % 7 === 0 ? { conversation_template: 'vicuna' } : k % 11 === 0 ? { image: undefined, conversations: b.conversations.map((t) => ({ ...t, value: t.value.replace('<image>\n', '') })) } : {};
        return { ...r, ...own, id: `${r.id}-${k}` } as Rec;
      });
      const manyFile = write('many.json', many);
      const here = await prepareFile(ck.model, tok, manyFile, fx.imageFolder, false, { fitThreads: 0, modelMaxLength: 60 });
      const seen: { records: number; recordsTotal: number; images: number; imagesTotal: number }[] = [];
      const threaded = await prepareFile(ck.model, tok, manyFile, fx.imageFolder, false, { fitThreads: 3, modelMaxLength: 60, onProgress: (p) => seen.push(p) });
      // progress as it goes, to the totals (700 records, the fixture's image)
      expect(seen.at(-1)).toEqual({ records: 700, recordsTotal: 700, images: 1, imagesTotal: 1 });
      for (let k = 1; k < seen.length; k++) expect(seen[k].records >= seen[k - 1].records && seen[k].images >= seen[k - 1].images).toBe(true);
      expect(seen.filter((p) => p.records > 0 && p.records < 700).length).toBeGreaterThan(0);
      const plainly = (d: typeof here) => ({ ...d, samples: d.samples.map((x) => ({ ...x, inputIds: Array.from(x.inputIds), labels: Array.from(x.labels) })) });
      expect(plainly(threaded)).toEqual(plainly(here));
      expect(new Set(here.skipped.map((x) => x.reason.replace(/'[^']*'/g, ''))).size).toBe(5);
      expect(here.samples.length).toBeGreaterThan(20);
      // image records the cut left nothing to supervise: kept for their KL, every label ignored
      expect(here.samples.filter((x) => x.image !== null && x.labels.every((l) => l === IGNORE_INDEX)).length).toBeGreaterThan(20);
      expect(threaded.samples[0].inputIds).toBeInstanceOf(Int32Array);
    } finally {
      ck.model.dispose();
    }
  });

  it('cuts a sample to the model max length with its image features counted, or skips it when its image or every supervised token would be cut', async () => {
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    try {
      const P = ck.model.numImageTokens;
      const full = tokenizeConversation(a.conversations, tok, 'vicuna_v1');
      const n = full.inputIds.length, q = full.inputIds.indexOf(IMAGE_TOKEN_INDEX), sup = full.labels.findIndex((l) => l !== IGNORE_INDEX);
      expect(q).toBeGreaterThan(0);
      expect(sup).toBeGreaterThan(q);
      const file = write('one.json', [a]);
      const at = async (L: number) => prepareFile(ck.model, tok, file, fx.imageFolder, false, { modelMaxLength: L });
      const whole = await at(n + P - 1); // exactly fits: nothing cut
      expect(Array.from(whole.samples[0].inputIds)).toEqual(full.inputIds);
      // held as typed arrays, outside the JS heap (LLaVA's 665K samples as number arrays overflowed Node's heap)
      expect(whole.samples[0].inputIds).toBeInstanceOf(Int32Array);
      expect(whole.samples[0].labels).toBeInstanceOf(Int32Array);
      expect(whole.truncated).toBe(0);
      const cut = await at(n + P - 2); // one position short: the last token goes
      expect(Array.from(cut.samples[0].inputIds)).toEqual(full.inputIds.slice(0, n - 1));
      expect(Array.from(cut.samples[0].labels)).toEqual(full.labels.slice(0, n - 1));
      expect(cut.truncated).toBe(1);
      // the cut leaves the tokens before the first supervised one: kept for its image's KL (LLaVA keeps it too)
      const noSup = await at(sup + P - 1);
      expect(noSup.samples).toHaveLength(1);
      expect(noSup.samples[0].image).not.toBeNull();
      expect(noSup.samples[0].labels.every((l) => l === IGNORE_INDEX)).toBe(true);
      // the same record without its image trains nothing so: left out, named
      const textOnly: Rec = { id: 'text', conversations: a.conversations.map((t) => ({ ...t, value: t.value.replace('<image>\n', '') })) };
      const tf = tokenizeConversation(textOnly.conversations, tok, 'vicuna_v1'), tsup = tf.labels.findIndex((l) => l !== IGNORE_INDEX);
      const noSupText = await prepareFile(ck.model, tok, write('text.json', [textOnly]), fx.imageFolder, false, { modelMaxLength: tsup });
      expect(noSupText.samples).toHaveLength(0);
      expect(noSupText.skipped[0].reason).toMatch(/no supervised token within the first \d+ positions \(truncated\) and no image/);
      const noImage = await at(q + P - 1); // the image's features would be split
      expect(noImage.skipped[0].reason).toMatch(new RegExp(`its image's ${P} features start at position ${q}: they would not fit in the ${q + P - 1} positions`));
      await expect(at(0)).rejects.toThrow(/modelMaxLength must be a positive integer/);
      // the default: the checkpoint's tokenizer_model_max_length (LLaVA's train.py saves model_max_length so)
      const init2 = path.join(dir, 'init-maxlen');
      fs.cpSync(fx.init, init2, { recursive: true });
      const cfg = JSON.parse(fs.readFileSync(path.join(init2, 'config.json'), 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(path.join(init2, 'config.json'), JSON.stringify({ ...cfg, tokenizer_model_max_length: n + P - 2 }));
      const ck2 = loadCheckpoint(init2);
      try {
        expect(ck2.config.modelMaxLength).toBe(n + P - 2);
        expect(Array.from((await prepareFile(ck2.model, tok, file, fx.imageFolder, false)).samples[0].inputIds)).toEqual(full.inputIds.slice(0, n - 1));
        expect(configToJson(ck2.config).tokenizer_model_max_length).toBe(n + P - 2);
      } finally {
        ck2.model.dispose();
      }
    } finally {
      ck.model.dispose();
    }
  });

  it("keeps a tokenization mismatch with an image (labels ignored, as LLaVA; its KL, as VW-LMM's code) and leaves out a text-only one", async () => {
    const humanOnly: Rec = { ...a, id: 'humanonly', conversations: [a.conversations[0]] }; // LLaVA's round split fails
    const humanOnlyText: Rec = { id: 'humanonly-text', conversations: [{ from: 'human', value: a.conversations[0].value.replace('<image>\n', '') }] };
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    try {
      const p = await prepareFile(ck.model, tok, write('mismatch.json', [a, humanOnly, humanOnlyText]), fx.imageFolder, false);
      expect(p.mismatched.map((m) => [m.id, m.kept])).toEqual([['humanonly', true], ['humanonly-text', false]]);
      expect(p.mismatches).toBe(2);
      expect(p.samples).toHaveLength(2);
      expect(p.samples[1].image).not.toBeNull();
      expect(p.samples[1].labels.every((l) => l === IGNORE_INDEX)).toBe(true);
      await expect(prepareFile(ck.model, tok, write('mismatch1.json', [humanOnly]), fx.imageFolder, true)).rejects.toThrow(/tokenization mismatch in record humanonly/);
    } finally {
      ck.model.dispose();
    }
    // nothing supervised anywhere: a model without the KL (vm_weight 0, plain LLaVA) would train on nothing
    const plain = VwLmm.create(tinyConfig(tok.vocabSize, 0), 5);
    try {
      await expect(trainOnFile(plain, tok, fx.tokenizer, {
        data: write('mismatch2.json', [humanOnly]), imageFolder: fx.imageFolder, outDir: path.join(dir, 'plain'), steps: 1, batchSize: 1, gradAccum: 1, lr: 1e-3, warmupRatio: 0, weightDecay: 0, maxGradNorm: 1, seed: 0, saveEvery: 0,
        trainable: { visionTower: false, projector: true, llm: true, vmHead: false }, strict: false,
      })).rejects.toThrow(/no trainable samples in .*mismatch2\.json: none has a supervised token \(1 kept with every label ignored: 1 tokenization mismatches.*\) and the model has no visual-word KL \(vm_weight 0\)/);
    } finally {
      plain.dispose();
    }
  });

  it("verifyImages 'header' reads only the headers: a file cut short is kept, and its batch fails naming it and the cure", async () => {
    const src = path.join(fx.imageFolder, a.image!), bytes = fs.readFileSync(src);
    fs.mkdirSync(path.join(dir, 'cut'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cut', 'x.png'), bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const file = write('cut.json', [{ ...a, id: 'cut', image: path.join(dir, 'cut', 'x.png') }, b]);
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    try {
      const decoded = await prepareFile(ck.model, tok, file, fx.imageFolder, false);
      expect(decoded.skipped.map((x) => x.id)).toEqual(['cut']);
      const header = await prepareFile(ck.model, tok, file, fx.imageFolder, false, { verifyImages: 'header' });
      expect(header.skipped).toEqual([]);
      expect(header.samples).toHaveLength(2);
      await expect(loadFileBatch(ck.model, tok, header, [0, 1])).rejects.toThrow(/x\.png could not be read during training \(only its header was checked before training: verifyImages 'decode'/);
      await expect(prepareFile(ck.model, tok, file, fx.imageFolder, false, { verifyImages: 'pixels' as never })).rejects.toThrow(/verifyImages must be 'decode' or 'header'/);
    } finally {
      ck.model.dispose();
    }
  });

  it('a text-only batch while only the projector trains adds no gradient and training goes on', async () => {
    const text = recs.slice(0, 4).map((r, i): Rec => ({ id: `t${i}`, conversations: r.conversations.map((t) => ({ ...t, value: t.value.replace('<image>\n', '') })) }));
    const file = write('text.json', text);
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    try {
      const before = [...ck.model.namedParameters()].map(([n, p]) => [n, p.toArray()] as const);
      const { state } = await trainOnFile(ck.model, tok, fx.tokenizer, {
        data: file, imageFolder: fx.imageFolder, outDir: path.join(dir, 'out'), steps: 2, batchSize: 2, gradAccum: 1, lr: 1e-3, warmupRatio: 0, weightDecay: 0, maxGradNorm: 1, seed: 0, saveEvery: 0,
        trainable: { visionTower: false, projector: true, llm: false, vmHead: false }, strict: true,
      });
      expect(state.globalStep).toBe(2);
      for (const [n, v] of before) expect(ck.model.namedParameters().get(n)!.toArray(), n).toEqual(v);
    } finally {
      ck.model.dispose();
    }
  });
});

describe('describeSkipped', () => {
  it("counts records by their problem, not by their name (a record's reason starts with it)", () => {
    const skipped = [
      { index: 0, reason: "record '1': 'conversations' is string, expected an array" },
      { index: 1, reason: "record '2': missing 'conversations'" },
      { index: 3, reason: "record '4': missing 'conversations'" },
      { line: 7, reason: 'malformed JSON: Unexpected token' },
    ];
    expect(describeSkipped({ skipped }, 'd.json')).toBe("4 skipped: 2 missing 'conversations' (first: d.json[1]); 1 'conversations' is string, expected an array (first: d.json[0]); 1 malformed JSON (first: d.json:7)");
  });
});
