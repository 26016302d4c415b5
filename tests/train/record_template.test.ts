// A record's own conversation_template (the demo's stage 2 mixes vicuna_v1 questions with plain captions in one
// file): prepareFile tokenises each record with it, the others with the checkpoint's template; a name that is no
// template skips the record with a reason naming it, and --strict fails on it.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tokenizeConversation, Turn } from '../../src/data/conversation';
import { TextTokenizer } from '../../src/data/tokenizer';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { prepareFile } from '../../src/train/from_file';
import { tempDirs } from '../support/tmp';
import { cli, writeCliFixture } from './support/tiny';

const tmp = tempDirs('record-template');

describe('conversation_template of a record', () => {
  it('tokenises that record with it; an unknown name is a skipped record, or an error with strict', async () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 1 });
    const [a, b, c] = (JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { id: string; conversations: Turn[] }[]).slice(0, 3);
    const file = path.join(dir, 'mixed.json');
    fs.writeFileSync(file, JSON.stringify([a, { ...b, conversation_template: 'plain' }, { ...c, conversation_template: 'vicuna' }]));
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(fx.tokenizer);
    const p = await prepareFile(ck.model, tok, file, fx.imageFolder, false);
    expect(ck.config.template).toBe('vicuna_v1');
    expect(p.samples.map((s) => Array.from(s.inputIds))).toEqual([
      tokenizeConversation(a.conversations, tok, 'vicuna_v1').inputIds,
      tokenizeConversation(b.conversations, tok, 'plain').inputIds,
    ]);
    expect(p.skipped).toEqual([{ id: c.id, index: 2, reason: `record '${c.id}': conversation_template "vicuna" is not a template (plain, vicuna_v1, v1, llava_v1, v1_mmtag, mistral, mistral_instruct)` }]);
    await expect(prepareFile(ck.model, tok, file, fx.imageFolder, true)).rejects.toThrow(/conversation_template "vicuna" is not a template .*\(--strict\)/);
    ck.model.dispose();
  });
});

describe('vwlmm train --template (LLaVA --version)', () => {
  it("trains the file's records with it and records it in the checkpoint; v1 is vicuna_v1; another name is refused", () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 1 });
    const config = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'config.json'), 'utf8')).conversation_template;
    expect(JSON.parse(fs.readFileSync(path.join(fx.init, 'config.json'), 'utf8')).conversation_template).toBe('vicuna_v1');
    const plain = path.join(dir, 'plain');
    // the fixture's records are (image question, answer) pairs: LLaVA's pretraining template takes them as captions
    const r = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', plain, '--steps', '1', '--batch-size', '2', '--template', 'plain');
    expect(r.status, r.stderr).toBe(0);
    expect(config(plain)).toBe('plain');
    const v1 = path.join(dir, 'v1');
    const back = cli('train', '--init', path.join(plain, 'checkpoint'), '--data', fx.data, '--image-folder', fx.imageFolder, '--out', v1, '--steps', '1', '--batch-size', '2', '--template', 'v1', '--image-aspect-ratio', 'pad');
    expect(back.status, back.stderr).toBe(0);
    expect(config(v1)).toBe('vicuna_v1');
    // LLaVA's fine-tuning pads its images square (expand2square): recorded too
    expect(JSON.parse(fs.readFileSync(path.join(v1, 'checkpoint', 'config.json'), 'utf8')).image_aspect_ratio).toBe('pad');
    expect(JSON.parse(fs.readFileSync(path.join(plain, 'checkpoint', 'config.json'), 'utf8')).image_aspect_ratio).toBe('square');
    // and the length its samples were cut to (LLaVA's tokenizer_model_max_length): the next stage's default, not the
    // --init checkpoint's
    const maxLength = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'config.json'), 'utf8')).tokenizer_model_max_length;
    expect(maxLength(plain)).toBe(2048);
    const cut = path.join(dir, 'cut');
    expect(cli('train', '--init', path.join(v1, 'checkpoint'), '--data', fx.data, '--image-folder', fx.imageFolder, '--out', cut, '--steps', '1', '--batch-size', '2', '--model-max-length', '300').status).toBe(0);
    expect(maxLength(cut)).toBe(300);
    const next = path.join(dir, 'next');
    expect(cli('train', '--init', path.join(cut, 'checkpoint'), '--data', fx.data, '--image-folder', fx.imageFolder, '--out', next, '--steps', '1', '--batch-size', '2').status).toBe(0);
    expect(maxLength(next)).toBe(300);
    const bad = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'bad'), '--template', 'llava_v2');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--template must be one of plain, vicuna_v1, v1, llava_v1, v1_mmtag, mistral, mistral_instruct (LLaVA's --version), got 'llava_v2'");
  });
});
