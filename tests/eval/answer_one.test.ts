// answerOne is `vwlmm answer`'s text for one question (the same prompt, generation and strip), and the evaluation
// entry points check their options at run time: an unknown key, a missing modelId, a bad scale or grid is an error
// naming it.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { clipPreprocessOptions } from '../../src/model/config';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { TextTokenizer } from '../../src/data/tokenizer';
import { loadImage, preprocessClip } from '../../src/data/images';
import { answerOne, answerQuestions } from '../../src/eval/answer';
import { evaluateFile } from '../../src/eval/llava_eval';
import { drawVisualWords } from '../../src/eval/visual_words';
import { writeCliFixture } from '../train/support/tiny';

const tmp = tempDirs('eval-answer-one');

describe('answerOne', () => {
  let dir = '', fx: ReturnType<typeof writeCliFixture>, image = '', model: VwLmm, tok: TextTokenizer;
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir);
    image = path.join('images', fs.readdirSync(path.join(fx.imageFolder, 'images')).find((f) => f.endsWith('.png'))!);
    const ck = loadCheckpoint(fx.init);
    model = ck.model;
    tok = new TextTokenizer(ck.tokenizerPath!);
    return () => model.dispose();
  }, 120_000);

  it("gives answerQuestions' text for the same question: with an image or none, either template, surrounding spaces", async () => {
    const pixels = await preprocessClip(await loadImage(path.join(fx.imageFolder, image)), clipPreprocessOptions(model.config));
    const questions = [
      { question_id: 1, image, text: 'what shape is the red object ?  ' },
      { question_id: 2, text: '  what color is the big object ?' },
    ];
    let nonEmpty = 0;
    for (const template of ['plain', 'vicuna_v1'] as const) {
      const file = path.join(dir, `${template}.jsonl`), answers = path.join(dir, `${template}_answers.jsonl`);
      fs.writeFileSync(file, questions.map((q) => JSON.stringify(q) + '\n').join(''));
      await answerQuestions(model, tok, { questions: file, imageFolder: fx.imageFolder, answers, modelId: 'm', template, maxNewTokens: 6 });
      const lines = fs.readFileSync(answers, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { question_id: number; text: string });
      for (const q of questions) {
        const one = answerOne(model, tok, q.text, q.image ? pixels : null, { template, maxNewTokens: 6 });
        expect(one, `${template} ${q.question_id}`).toBe(lines.find((l) => l.question_id === q.question_id)!.text);
        if (one !== '') nonEmpty++;
      }
    }
    expect(nonEmpty).toBeGreaterThan(0); // the comparison is of answers, not of empty strings
    // the template defaults to the model's; sampling options go to generate (topK 1 samples the greedy answer)
    const greedy = answerOne(model, tok, 'what shape ?', pixels, { maxNewTokens: 5, template: model.config.template });
    expect(answerOne(model, tok, 'what shape ?', pixels, { maxNewTokens: 5 })).toBe(greedy);
    expect(answerOne(model, tok, 'what shape ?', pixels, { maxNewTokens: 5, temperature: 3, topK: 1, seed: 4 })).toBe(greedy);
  });

  it('refuses a question holding "<image>", unknown options and pixels that are not an image', () => {
    expect(() => answerOne(model, tok, '<image>\nwhat shape ?', new Float32Array(3 * 75 * 75))).toThrow('answerOne: the question holds "<image>": the prompt would hold 2 image placeholders for one image');
    expect(() => answerOne(model, tok, 'what shape ?', null, { max_new_tokens: 2 } as never)).toThrow(/^answerOne: unknown option 'max_new_tokens' \(did you mean 'maxNewTokens'\?\)/);
    expect(() => answerOne(model, tok, 'what shape ?', [0.5] as never)).toThrow('answerOne: expected a Float32Array of one preprocessed image, or null (no image) for pixels but received array(1)');
    expect(() => answerOne(model, tok, 'what shape ?', new Float32Array(10))).toThrow('answerOne: expected one image of 3 x 75 x 75 = 16875 values (preprocessClip(image, clipPreprocessOptions(model.config))) for pixels but received Float32Array(10)');
  });

  it('answerQuestions and evaluateFile check their options at run time', async () => {
    const file = path.join(dir, 'q.jsonl');
    fs.writeFileSync(file, JSON.stringify({ question_id: 1, image, text: 'what shape ?' }) + '\n');
    const answers = path.join(dir, 'checked.jsonl');
    const base = { questions: file, imageFolder: fx.imageFolder, answers, modelId: 'm', maxNewTokens: 2 };
    const { modelId: _, ...noModel } = base;
    await expect(answerQuestions(model, tok, noModel as never)).rejects.toThrow("answerQuestions: expected a non-empty string (the answer lines' model_id) for modelId but received undefined");
    await expect(answerQuestions(model, tok, { ...base, max_new_tokens: 2 } as never)).rejects.toThrow(/^answerQuestions: unknown option 'max_new_tokens' \(did you mean 'maxNewTokens'\?\); known: questions, /);
    await expect(answerQuestions(model, tok, { ...base, format: 'vqa' as never })).rejects.toThrow("answerQuestions: expected 'vqa_loader' | 'science' | 'mmbench' for format but received 'vqa' (string)");
    await expect(answerQuestions(model, tok, { ...base, batchSize: 0 })).rejects.toThrow('answerQuestions: expected an integer >= 1 for batchSize but received 0 (number)');
    expect(fs.existsSync(answers)).toBe(false); // refused before anything is written
    await expect(evaluateFile(model, tok, fx.data, fx.imageFolder, { max_new_tokens: 2 } as never)).rejects.toThrow(/^evaluateFile: unknown option 'max_new_tokens' \(did you mean 'maxNewTokens'\?\); known: maxNewTokens, /);
  });
});

describe('drawVisualWords checks its arguments', () => {
  it('an unknown option, a scale or grid that is not a positive integer, patches outside the grid', async () => {
    const dir = tmp();
    const rgb = new Uint8Array(75 * 75 * 3).fill(128);
    const file = path.join(dir, 'w.png');
    const patches = Array.from({ length: 25 }, (_, i) => ({ row: Math.floor(i / 5), col: i % 5, words: [{ token: 'red', text: 'red', id: 3, prob: 0.5 }] }));
    await expect(drawVisualWords(rgb, 75, 75, patches, 5, file, { scal: 2 } as never)).rejects.toThrow(/^drawVisualWords: unknown option 'scal'( \(did you mean 'scale'\?\))?; known: scale, view/);
    for (const scale of [0, -2, NaN, 1.5])
      await expect(drawVisualWords(rgb, 75, 75, patches, 5, file, scale), String(scale)).rejects.toThrow(`drawVisualWords: expected an integer >= 1 (picture pixels per image pixel) for scale but received ${scale} (number)`);
    await expect(drawVisualWords(rgb, 75, 75, patches, 0, file)).rejects.toThrow('drawVisualWords: expected an integer >= 1 (patches per side: image size / patch size) for grid but received 0 (number)');
    await expect(drawVisualWords(rgb, 75, 75, [{ ...patches[0], row: 5 }, ...patches.slice(1)], 5, file)).rejects.toThrow('drawVisualWords: expected patches[0] in the 5 x 5 grid (row and col in [0, 5)) but received row 5, col 0');
    await expect(drawVisualWords(rgb.subarray(3), 75, 75, patches, 5, file)).rejects.toThrow(/^drawVisualWords: expected a Uint8Array of 75 x 75 x 3 = 16875 RGB bytes for rgb but received Uint8Array\(16872\)/);
    await expect(drawVisualWords(rgb, 75, 75, patches, 5, file, { view: { size: 75, aspect: 'pad', means: [0.5, 0.5, 0.5] } as never })).rejects.toThrow(/^drawVisualWords: unknown key of view 'means'( \(did you mean 'mean'\?\))?; known: size, mean, aspect/);
    expect(fs.existsSync(file)).toBe(false); // nothing written
    await drawVisualWords(rgb, 75, 75, patches, 5, file, 2);
    expect(fs.existsSync(file)).toBe(true);
  });
});
