// Write failures during training name the file, what was being written, the system's reason (its code kept) and where
// the run can be resumed from: a metrics append on a full disk (here a file-size limit in a child process: writes past
// it fail with EFBIG as they fail with ENOSPC on a full disk) leaves no half-written line, and says which checkpoint
// holds which step; the metrics rewrite on resume fails without touching the log; metrics.jsonl as a directory is
// named; writeFileAtomic names the file it was writing, and fsyncs the folder after its rename.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { syncBuiltinESMExports } from 'module';
import { describe, expect, it } from 'vitest';
import { fsyncFolder, writeFileAtomic, writeFileDurable } from '../../src/io/atomic_file';
import { VwLmm } from '../../src/model/vwlmm';
import { Trainer } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData, tinyStages, trainLosses } from './support/tiny';

const tmp = tempDirs('write-errors');
const root = path.join(__dirname, '..', '..');
const child = path.join(__dirname, 'support', 'metrics_child.ts');
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The child under a file-size limit of `kib` KiB (bash's ulimit -f; no limit: 'unlimited'), SIGXFSZ ignored. */
function trainLimited(out: string, steps: number, saveEvery: number, kib: number | 'unlimited') {
  const cmd = [process.execPath, '--import', 'tsx', child, out, String(steps), String(saveEvery)].map((a) => `'${a}'`).join(' ');
  return spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f ${kib}; exec ${cmd}`], { cwd: root, encoding: 'utf8', timeout: 120_000 });
}
const lines = (file: string) => fs.readFileSync(file, 'utf8');

describe('write failures during training', () => {
  it('a metrics append that fails (EFBIG, as ENOSPC): the file and the last checkpoint named, no half-written line; the resume goes on', () => {
    const out = tmp(), metrics = path.join(out, 'metrics.jsonl');
    // 80 KiB: the checkpoint's files (model.safetensors ~73 KB) fit, the log fills up after ~300 records
    const r = trainLimited(out, 400, 50, 80);
    expect(r.status, r.stderr).toBe(1);
    const m = new RegExp(`^error: Trainer: appending the train record of global step (\\d+) to ${escape(metrics)} failed: EFBIG: file too large, write; the last checkpoint, ${escape(path.join(out, 'checkpoint'))}, holds global step (\\d+): once the cause is fixed \\(a full disk\\? a file-size limit\\?\\), resume from it \\(vwlmm train with --resume; the API: autoResume, or run\\(readTrainerState\\(dir\\)\\)\\)\\ncode: EFBIG\\n`).exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const [failed, saved] = [Number(m![1]), Number(m![2])];
    expect(saved % 50).toBe(0);
    expect(failed).toBeGreaterThan(saved);
    // whole records only, up to the one before the failed step
    const text = lines(metrics);
    expect(text.endsWith('\n')).toBe(true);
    const records = text.trim().split('\n').map((l) => JSON.parse(l) as { globalStep: number });
    expect(records.at(-1)!.globalStep).toBe(failed - 1);
    // resumed without the limit: from the checkpoint, the log rewritten from there, the run ends as the uninterrupted one
    const again = trainLimited(out, 400, 50, 'unlimited');
    expect(again.status, again.stderr).toBe(0);
    const ref = tmp();
    expect(trainLimited(ref, 400, 50, 'unlimited').status).toBe(0);
    expect(trainLosses(out)).toEqual(trainLosses(ref));
  }, 180_000);

  it("the metrics rewrite on resume that fails leaves the log as it was and names it, with the checkpoint's step", () => {
    const out = tmp(), metrics = path.join(out, 'metrics.jsonl');
    expect(trainLimited(out, 60, 30, 'unlimited').status).toBe(0);
    const before = lines(metrics);
    expect(before.length).toBeGreaterThan(2048);
    // the rewritten log (the same records) is larger than 2 KiB: the rewrite fails, the log stays whole
    const cut = tmp();
    fs.cpSync(out, cut, { recursive: true });
    const r = trainLimited(cut, 60, 30, 2);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error: Trainer: rewriting ${escape(path.join(cut, 'metrics.jsonl'))} failed: EFBIG: file too large, write; the last checkpoint, ${escape(path.join(cut, 'checkpoint'))}, holds global step 60: once the cause is fixed`));
    expect(lines(path.join(cut, 'metrics.jsonl'))).toBe(before);
    expect(fs.readdirSync(cut).filter((n) => n.includes('.tmp-'))).toEqual([]);
  }, 120_000);

  it('metrics.jsonl as a directory: named, as the run starts and as it resumes', () => {
    const { tokenizer, json, samples, makeBatch } = tinyData(8);
    const out = tmp(), metrics = path.join(out, 'metrics.jsonl');
    fs.mkdirSync(metrics);
    const stages = tinyStages(makeBatch, samples.length, 3).slice(0, 1);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    try {
      const t = () => new Trainer(m, stages, { seed: 9, outDir: out, autoResume: true, checkpointFiles: { tokenizer: json } });
      expect(() => t().run()).toThrow(new RegExp(`^Trainer: starting ${escape(metrics)} failed: EISDIR: it is a directory, not a file; no checkpoint of this run has been written yet: once the cause is fixed, start the run again$`));
      fs.rmdirSync(metrics);
      // a directory in its place halfway: the next append fails, naming it and the checkpoint of step 2
      let swapped = false;
      const halfway = new Trainer(m, stages, {
        seed: 9, outDir: out, saveEvery: 2, checkpointFiles: { tokenizer: json },
        onLog: (r) => {
          if (r.type === 'train' && r.globalStep === 2 && !swapped) {
            swapped = true;
            fs.rmSync(metrics);
            fs.mkdirSync(metrics);
          }
        },
      });
      expect(() => halfway.run()).toThrow(new RegExp(`^Trainer: appending the train record of global step 3 to ${escape(metrics)} failed: EISDIR: it is a directory, not a file; the last checkpoint, ${escape(path.join(out, 'checkpoint'))}, holds global step 2: once the cause is fixed`));
      expect(() => t().run()).toThrow(new RegExp(`^Trainer: reading ${escape(metrics)} failed: EISDIR: it is a directory, not a file; the last checkpoint, ${escape(path.join(out, 'checkpoint'))}, holds global step 2`));
    } finally {
      m.dispose();
    }
  });
});

describe('writeFileAtomic', () => {
  it('names the file it was writing (the error keeps its code), and leaves no temporary file', () => {
    const dir = tmp();
    const missing = path.join(dir, 'no', 'such', 'f.json');
    expect(() => writeFileAtomic(missing, 'x')).toThrow(new RegExp(`^writing ${escape(missing)} failed: ENOENT: no such file or directory`));
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder);
    let err: NodeJS.ErrnoException | null = null;
    try {
      writeFileAtomic(folder, 'x');
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.message).toBe(`writing ${folder} failed: EISDIR: it is a directory, not a file`);
    expect(err?.code).toBe('EISDIR');
    expect(fs.readdirSync(dir).sort()).toEqual(['folder']);
    expect(() => writeFileDurable(folder, 'x')).toThrow(`writing ${folder} failed: EISDIR: it is a directory, not a file`);
  });

  it('fsyncs the folder after the rename (so that a power loss cannot undo it)', () => {
    const dir = tmp(), file = path.join(dir, 'f.json');
    const events: string[] = [];
    const fds = new Map<number, string>();
    // the fs functions as atomic_file.ts calls them (its namespace import is synced from fs's CommonJS exports)
    const cjs = require('fs') as typeof fs;
    const orig = { openSync: cjs.openSync, fsyncSync: cjs.fsyncSync, renameSync: cjs.renameSync };
    cjs.openSync = ((p: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode) => {
      const fd = orig.openSync(p, flags ?? "r", mode);
      fds.set(fd, String(p));
      return fd;
    }) as typeof fs.openSync;
    cjs.fsyncSync = (fd: number) => {
      const p = fds.get(fd) ?? '?';
      events.push(`fsync ${p === dir ? 'folder' : path.basename(p).startsWith('.f.json.tmp-') ? 'tmp' : p}`);
      orig.fsyncSync(fd);
    };
    cjs.renameSync = (a: fs.PathLike, b: fs.PathLike) => {
      events.push('rename');
      orig.renameSync(a, b);
    };
    syncBuiltinESMExports();
    try {
      writeFileAtomic(file, 'data');
    } finally {
      Object.assign(cjs, orig);
      syncBuiltinESMExports();
    }
    expect(events).toEqual(['fsync tmp', 'rename', 'fsync folder']);
    expect(fs.readFileSync(file, 'utf8')).toBe('data');
    // a folder that cannot be opened is left to the OS where the platform says so; a missing one is an error naming it
    expect(() => fsyncFolder(path.join(dir, 'gone'))).toThrow(new RegExp(`^opening the folder ${escape(path.join(dir, 'gone'))} failed: ENOENT`));
  });
});
