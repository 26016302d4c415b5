// A resume that would not train on what the checkpoint's run trained on is refused, naming the setting, before anything
// is written (metrics.jsonl untouched): the conversation template, image aspect ratio and model max length the data are
// prepared with, the prepared samples themselves (a digest: a data file with the same number of records but other
// answers, or in another order). Another compute dtype, frozen weights' storage or residual stream's dtype resumes with
// a warning (the checkpoint holds fp32 masters). A checkpoint that does not record them (written before they were) resumes unchecked; the unchanged command resumes.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { VwLmm } from '../../src/model/vwlmm';
import { checkDataSettings, readTrainerState, Stage, Trainer } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { cli, tinyConfig, tinyData, writeCliFixture } from './support/tiny';

const tmp = tempDirs('resume-settings');

describe('a resume refuses changed inputs that change training', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let dir: string;
  const args = (data: string, out: string, ...more: string[]) => ['train', '--init', fx.init, '--data', data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '4', '--batch-size', '2', '--lr', '3e-3', ...more];
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir, { images: 2 });
  });

  /** A finished run of `more` in a fresh --out: its folder. */
  const trained = (...more: string[]) => {
    const out = tmp();
    const r = cli(...args(fx.data, out, ...more));
    expect(r.status, r.stderr).toBe(0);
    return out;
  };
  /** A resume of `out` that must be refused with `message`, leaving metrics.jsonl and the checkpoint as they were. */
  const refused = (out: string, data: string, more: string[], message: RegExp) => {
    const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
    const state = fs.readFileSync(path.join(out, 'checkpoint', 'trainer_state.json'), 'utf8');
    const r = cli(...args(data, out, '--resume', ...more));
    expect(r.status, r.stdout).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(metrics);
    expect(fs.readFileSync(path.join(out, 'checkpoint', 'trainer_state.json'), 'utf8')).toBe(state);
  };
  const how = '\\(the run would not continue exactly: resume with the same';

  it('the template, image aspect ratio and model max length', () => {
    const out = trained();
    const ck = path.join(out, 'checkpoint').replace(/[.\\/]/g, '\\$&');
    refused(out, fx.data, ['--template', 'plain'], new RegExp(`^vwlmm: resume: stage 'train' had conversation template \\(--template\\) 'vicuna_v1' in the checkpoint's run \\(${ck}\\), this run has 'plain' ${how}`));
    refused(out, fx.data, ['--image-aspect-ratio', 'pad'], new RegExp(`had image aspect ratio \\(--image-aspect-ratio\\) 'square' in the checkpoint's run \\(${ck}\\), this run has 'pad' ${how}`));
    refused(out, fx.data, ['--model-max-length', '300'], new RegExp(`had model max length \\(--model-max-length\\) 2048 in the checkpoint's run \\(${ck}\\), this run has 300 ${how}`));
    // the checkpoint's model holds the template it was trained with: giving it again is no change
    const same = cli(...args(fx.data, out, '--resume', '--template', 'vicuna_v1'));
    expect(same.status, same.stderr).toBe(0);
    // any of LLaVA's templates trains (the CLI takes them all), and is what a resume must keep
    const llava = trained('--template', 'llava_v1');
    refused(llava, fx.data, ['--template', 'vicuna_v1'], /^vwlmm: resume: stage 'train' had conversation template \(--template\) 'llava_v1' in the checkpoint's run .*, this run has 'vicuna_v1' /);
  });

  it('the data: the same number of records with other answers, or in another order', () => {
    const out = trained();
    const records = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { conversations: { from: string; value: string }[] }[];
    // two records whose first answers differ swap them
    const j = records.findIndex((r) => r.conversations[1].value !== records[0].conversations[1].value);
    expect(j).toBeGreaterThan(0);
    const swapped = structuredClone(records);
    [swapped[0].conversations[1].value, swapped[j].conversations[1].value] = [records[j].conversations[1].value, records[0].conversations[1].value];
    const digest = `samples' digest \\(sha256 of the prepared samples' token ids, labels and image paths: the data file, or what it was prepared with, changed\\) '[0-9a-f]{64}' in the checkpoint's run, this run has '[0-9a-f]{64}' ${how}`;
    for (const [name, data] of [['swapped', swapped], ['reversed', [...records].reverse()]] as const) {
      const file = path.join(dir, `${name}.json`);
      fs.writeFileSync(file, JSON.stringify(data));
      refused(out, file, [], new RegExp(`^vwlmm: resume: stage 'train' had ${digest}`));
    }
    // the same records in a copy elsewhere (the images where they were): the same samples
    const copy = path.join(tmp(), 'copy.json');
    fs.copyFileSync(fx.data, copy);
    const r = cli(...args(copy, out, '--resume'));
    expect(r.status, r.stderr).toBe(0);
  });

  it('the image folder given another way (a symlink), with records that name their images by absolute path: the same samples', () => {
    const records = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { image?: string }[];
    const absolute = path.join(tmp(), 'absolute.json');
    fs.writeFileSync(absolute, JSON.stringify(records.map((r) => (r.image ? { ...r, image: path.join(fx.imageFolder, r.image) } : r))));
    const out = tmp();
    const first = cli(...args(absolute, out));
    expect(first.status, first.stderr).toBe(0);
    const link = path.join(tmp(), 'images-link');
    fs.symlinkSync(fx.imageFolder, link);
    const a = args(absolute, out, '--resume');
    a[a.indexOf('--image-folder') + 1] = link;
    const r = cli(...a);
    expect(r.status, r.stderr).toBe(0);
    // before, the digest hashed each image's path relative to the folder: another folder, another digest
    const b = args(absolute, out, '--resume');
    b[b.indexOf('--image-folder') + 1] = path.join(fx.imageFolder, 'images');
    const r2 = cli(...b);
    expect(r2.status, r2.stderr).toBe(0);
  });

  it('the compute dtype, the frozen weights\' dtype and the residual stream\'s: another one resumes, with a warning naming it', () => {
    // the checkpoint holds fp32 masters and AdamW state: a bf16 GPU run may go on in fp32 on the CPU, or the other way round
    const warned = (out: string, more: string[], message: RegExp) => {
      const r = cli(...args(fx.data, out, '--resume', ...more));
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(message);
    };
    const out = trained();
    warned(out, ['--dtype', 'bf16'], /vwlmm: resume: stage 'train' had compute dtype \(dtype, --dtype\) float32 in the checkpoint's run, this run has bfloat16: continuing from the fp32 master weights and AdamW state/);
    warned(out, ['--frozen-dtype', 'bf16'], /vwlmm: resume: stage 'train' had frozen weights stored in \(frozenDtype, --frozen-dtype\) float32 in the checkpoint's run, this run has bfloat16: continuing/);
    const bf16 = trained('--dtype', 'bf16', '--residual-dtype', 'bf16');
    warned(bf16, ['--dtype', 'bf16'], /vwlmm: resume: stage 'train' had residual stream in \(residualDtype, --residual-dtype\) bfloat16 in the checkpoint's run, this run has float32: continuing/);
    const r = cli(...args(fx.data, bf16, '--resume', '--dtype', 'bf16', '--residual-dtype', 'bf16'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/continuing from the fp32 master weights/);
  });

  it("another --init: a resume does not read it, and says so; the run's own, given another way, resumes", () => {
    const out = trained();
    const recorded = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'train_args.json'), 'utf8'));
    expect(recorded).toMatchObject({ init: path.resolve(fx.init), command: ['vwlmm', ...args(fx.data, out)], options: { init: fx.init, steps: 4 } });
    const other = path.join(tmp(), 'other-init');
    fs.cpSync(fx.init, other, { recursive: true });
    const a = args(fx.data, out, '--resume');
    a[a.indexOf('--init') + 1] = other;
    const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
    const r = cli(...a);
    expect(r.status, r.stdout).toBe(2);
    expect(r.stderr).toContain(`vwlmm: --resume continues the run in --out ${out}, which started from --init ${path.resolve(fx.init)} (${path.join(out, 'checkpoint', 'train_args.json')}); this command names --init ${other}, which a resume does not read: resume with --init ${path.resolve(fx.init)}, or start a new run from ${other} with another --out`);
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(metrics);
    // the same folder as a relative path, or through a symlink, resumes; a damaged record is named
    const rel = args(fx.data, out, '--resume');
    rel[rel.indexOf('--init') + 1] = path.relative(path.join(__dirname, '..', '..'), fx.init); // the CLI runs in the repository's root
    const ok = cli(...rel);
    expect(ok.status, ok.stderr).toBe(0);
    const link = path.join(tmp(), 'init-link');
    fs.symlinkSync(fx.init, link);
    const linked = args(fx.data, out, '--resume');
    linked[linked.indexOf('--init') + 1] = link;
    const viaLink = cli(...linked);
    expect(viaLink.status, viaLink.stderr).toBe(0);
    fs.writeFileSync(path.join(out, 'checkpoint', 'train_args.json'), '{"init": 3}');
    const bad = cli(...args(fx.data, out, '--resume'));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(`${path.join(out, 'checkpoint', 'train_args.json')}: expected an object whose init is the run's --init path, got {"init":3}`);
    // a checkpoint without the record (the library's Trainer, an older vwlmm) cannot tell: the resume goes on
    fs.rmSync(path.join(out, 'checkpoint', 'train_args.json'));
    const unrecorded = cli(...a);
    expect(unrecorded.status, unrecorded.stderr).toBe(0);
    expect(unrecorded.stdout).toContain('was already complete at global step 4: nothing to train');
  });

  it('a checkpoint that does not record them resumes unchecked', () => {
    const out = trained();
    const file = path.join(out, 'checkpoint', 'trainer_state.json');
    const st = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(st.stageSettings[0]).toMatchObject({ dtype: 'float32', frozenDtype: 'float32', residualDtype: null, gatherDtype: null, data: { template: 'vicuna_v1', imageAspectRatio: 'square', modelMaxLength: 2048, samples: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    for (const k of ['dtype', 'frozenDtype', 'residualDtype', 'data']) delete st.stageSettings[0][k];
    fs.writeFileSync(file, JSON.stringify(st));
    const r = cli(...args(fx.data, out, '--resume', '--template', 'plain', '--dtype', 'bf16'));
    expect(r.status, r.stderr).toBe(0);
  });
});

describe('Stage.dataSettings (the Trainer API)', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const stage = (dataSettings?: Stage['dataSettings']): Stage => ({ name: 's', size: samples.length, makeBatch, steps: 3, batchSize: 2, lr: 1e-3, trainable: { projector: true }, dataSettings });

  it('are recorded, compared on resume (a changed or dropped one refused, naming it), and checked at construction', () => {
    const out = tmp();
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 3);
    try {
      new Trainer(m, [stage({ corpus: 'a', version: 2 })], { seed: 1, outDir: out, checkpointFiles: { tokenizer: json } }).run();
      const st = readTrainerState(path.join(out, 'checkpoint'));
      expect(st.state.stageSettings![0].data).toEqual({ corpus: 'a', version: 2 });
      const resume = (d?: Stage['dataSettings']) => new Trainer(m, [stage(d)], { seed: 1, outDir: out }).run(st);
      expect(() => resume({ corpus: 'b', version: 2 })).toThrow(/^resume: stage 's' had corpus 'a' in the checkpoint's run, this run has 'b' \(the run would not continue exactly/);
      expect(() => resume({ corpus: 'a' })).toThrow(/had version 2 in the checkpoint's run, this run has unset/);
      expect(resume({ corpus: 'a', version: 2, added: true }).globalStep).toBe(3); // a key the checkpoint does not record
      // a caller's early check compares only the keys it gives
      expect(() => checkDataSettings(st.state, 's', { version: 2 }, { partial: true })).not.toThrow();
      expect(() => checkDataSettings(st.state, 's', { version: 3 }, { partial: true })).toThrow(/had version 2 in the checkpoint's run, this run has 3/);
      expect(() => new Trainer(m, [stage({ n: NaN })], { seed: 1 })).toThrow(/^Trainer: stage 's': expected a string, a finite number or a boolean .* for dataSettings\.n but received NaN/);
    } finally {
      m.dispose();
    }
  });
});
