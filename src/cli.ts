#!/usr/bin/env node
// The `vwlmm` command line: demo (the main job), train, eval, generate, visual-words, data sort-of-clevr,
// info. Every command validates its flags and paths and exits with a message naming the problem.
//
// SIGINT / SIGTERM during `train` or `demo`: the current step finishes, a checkpoint is written, and the
// process exits with 130 / 143 after printing the command that resumes (the same one with --resume).
// Both run the Trainer with runAsync + handleSignals (the demo's vision pretraining, stage 0, is a Trainer of
// its own on the same signals; it writes no checkpoint, so stopping there leaves nothing to resume).
// Outside training (generation, evaluation) the signals keep their default: the process ends at once, and
// every checkpoint written so far is complete.
//
// The library is used only through its public modules (./model, ./data, ./train, ./eval, ./demo, ./index:
// what a user of the package imports; tests/api/public_api.test.ts checks it), each imported lazily by the
// command that needs it.
import { Command, InvalidArgumentError } from 'commander';
import type { DeviceSpec } from './index';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// decimal text only: Number() also reads '0x10' as 16 and '' as 0
const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;
/** An integer option; `min` null: any integer (a layer index counted from the end is negative). */
const int = (name: string, min: number | null = 0) => (v: string) => {
  const n = DECIMAL.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || (min !== null && n < min)) throw new InvalidArgumentError(`${name} must be an integer${min !== null ? ` >= ${min}` : ''}`);
  return n;
};
// the random generators keep 32 bits of a seed: 2^32 would repeat seed 0's run while recording its own
const seedOption = (name: string) => (v: string) => {
  const n = int(name)(v);
  if (n > 0xffffffff) throw new InvalidArgumentError(`${name} must be an integer in [0, 4294967295] (the random generators are 32-bit: a larger seed would repeat a smaller one's run), got ${v}`);
  return n;
};
// finite in float32 too: every numeric option reaches a float32 kernel or tensor (--lr 1e39 is an infinite rate there)
const num = (name: string) => (v: string) => {
  const n = DECIMAL.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  if (!Number.isFinite(Math.fround(n))) throw new InvalidArgumentError(`${name} must be finite in float32 (at most 3.4e38), got ${v}`);
  return n;
};

// --device of every command that runs a model: checked (and the GPU made ready) before any work, with an error
// naming --device and, for CUDA, why it is unusable here
const DEVICE_HELP = 'where the model runs: cpu, cuda or cuda:N';
const DIST_TIMEOUT_HELP = "data-parallel: seconds the ranks' start and each collective may wait before the rank fails naming it (torch's init_process_group timeout; default: VWLMM_COLLECTIVE_TIMEOUT, else 600)";
const DTYPE_HELP = 'precision of the products: bf16 (bf16 GEMM operands; fp32 weights, optimizer, norms, softmax and loss) or fp32 (default: bf16 on cuda, fp32 on cpu)';
/** --dtype, checked by the library's parser (src/amp.ts); undefined: the device's default. */
async function computeDtypeOf(v: string | undefined, option = '--dtype'): Promise<'float32' | 'bfloat16' | undefined> {
  if (v === undefined) return undefined;
  const { parseComputeDtype } = await import('./index');
  return parseComputeDtype(option, v);
}
async function device(spec: string): Promise<DeviceSpec> {
  const { useDevice } = await import('./index');
  useDevice('--device', spec as DeviceSpec);
  return spec as DeviceSpec;
}

/**
 * --checkpoint on --device, with --adapter's LoRA applied when given. `dtype`: the command's --dtype; when the products
 * run in bf16 the LLM's and tower's Linear weights are loaded in bf16 (autocast would round them so anyway: the
 * results are the same, at half the memory).
 */
async function loadWithAdapter(checkpoint: string, dev: string, adapter: string | undefined, dtype?: 'float32' | 'bfloat16', pif?: boolean) {
  const { loadCheckpoint, loadLoraAdapter } = await import('./model');
  const { defaultComputeDtype } = await import('./index');
  if (adapter) existing(adapter, 'adapter', 'dir');
  const spec = await device(dev);
  // told before the load (minutes at 7B): config.json says it
  if (adapter && (await import('./model')).checkpointConfig(checkpoint, { pif }).lora)
    fail(`--adapter ${adapter}: ${checkpoint} has LoRA adapters of its own (trained with --lora-r); merge them first (vwlmm merge-adapter --checkpoint ${checkpoint} --out DIR), then give DIR with --adapter`);
  const loaded = loadCheckpoint(checkpoint, { device: spec, weightDtype: dtype ?? defaultComputeDtype(spec), pif });
  if (adapter) {
    try {
      loadLoraAdapter(adapter, loaded.model);
    } catch (e) {
      loaded.model.dispose();
      throw e;
    }
  }
  return loaded;
}

// --pif / --no-pif on the commands that load a checkpoint: which kind a released VW-LMM is, where its config has no
// vm_pif key (loadCheckpoint follows the official builder: a vwPifLlamaForCausalLM architecture, or "pif" in the
// model's name on a LLaMA base). Neither given: undefined, that rule.
const PIF_HELP = 'load the checkpoint as the PIF variant, whatever its name says (it needs a vm_head)';
const NO_PIF_HELP = 'load it as plain VW-LMM, whatever its name says (default: its config; else, as the official loader, PIF when the architecture is vwPifLlamaForCausalLM or the folder name holds "pif" on a LLaMA base)';

/**
 * A model folder: `p` itself, else, for a hub id with no such folder here, its snapshot in the Hugging Face cache
 * (hubCacheFolder: read offline, never downloaded), said on stderr.
 */
async function localModel(p: string, what: string): Promise<string> {
  if (fs.existsSync(p)) return existing(p, what, 'dir');
  const { hubCacheFolder, hubCacheRoot } = await import('./model');
  const cached = hubCacheFolder(p);
  if (!cached) fail(`${what} ${p} does not exist, nor is it a model in the Hugging Face cache (${hubCacheRoot()}; nothing is downloaded)`);
  process.stderr.write(`vwlmm: ${what} ${p}: the Hugging Face cache's ${cached}\n`);
  return cached!;
}

/** p must exist: as a file, a directory, or either ('path'). */
function existing(p: string, what: string, kind: 'file' | 'dir' | 'path'): string {
  if (!fs.existsSync(p)) fail(`${what} ${p} does not exist`);
  const st = fs.statSync(p);
  if (kind === 'dir' && !st.isDirectory()) fail(`${what} ${p} is not a directory`);
  if (kind === 'file' && !st.isFile()) fail(`${what} ${p} is not a file`);
  return p;
}

/**
 * --checkpoint: a folder, or a checkpoint a save killed between its two renames left as <dir>.old-* (loadCheckpoint
 * reads that one, and a run folder's error names <run>/checkpoint in that case).
 */
async function existingCheckpoint(p: string): Promise<string> {
  if (!fs.existsSync(p) && (await import('./model')).resolveCheckpointDir(p) !== null) return p;
  return existing(p, 'checkpoint', 'dir');
}

/** p absolute, with the symbolic links of the part that exists resolved: two spellings of one folder compare equal. */
function realPathOf(p: string): string {
  let head = path.resolve(p);
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...tail);
    } catch {
      const up = path.dirname(head);
      if (up === head) return path.resolve(p);
      tail.unshift(path.basename(head));
      head = up;
    }
  }
}

/** How folder a lies to folder b: the same folder, inside it, holding it, or apart (null). */
function nesting(a: string, b: string): 'is' | 'is inside' | 'holds' | null {
  const x = realPathOf(a), y = realPathOf(b);
  const under = (p: string, q: string) => p.startsWith(q.endsWith(path.sep) ? q : q + path.sep);
  return x === y ? 'is' : under(x, y) ? 'is inside' : under(y, x) ? 'holds' : null;
}

/**
 * --report-to as TrainerOptions.reportTo: transformers' spellings (a comma list; none; all, every integration there is:
 * tensorboard). --logging-dir is checked as an output folder, and only with tensorboard (it would otherwise do nothing).
 */
function reportToOption(v: string, loggingDir: string | undefined): 'tensorboard'[] {
  const out: 'tensorboard'[] = [];
  for (const x of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (x === 'tensorboard' || x === 'all') out.splice(0, 1, 'tensorboard');
    else if (x !== 'none')
      fail(`--report-to ${x}: the integrations are tensorboard (event files for \`tensorboard --logdir\`) and none; ${['wandb', 'mlflow', 'comet_ml', 'neptune', 'clearml', 'dvclive', 'azure_ml'].includes(x) ? `${x} is a service vwlmm does not talk to: ` : ''}metrics.jsonl in --out holds every logged record`);
  }
  if (loggingDir !== undefined) {
    if (out.length === 0) fail('--logging-dir is where --report-to tensorboard writes its event files: give --report-to tensorboard as well');
    outputFolder('--logging-dir', loggingDir);
  }
  return out;
}

/**
 * An output folder option, checked before any work: a folder, or a path one can be made at (no file on the way), that
 * this process may write in. Fails naming the option, not with a raw EEXIST / ENOTDIR / EACCES once the work is done.
 * `shown`: the option's value when dir is the folder of an output file (outputFile).
 */
function outputFolder(option: string, dir: string, shown = dir): string {
  const abs = path.resolve(dir), itself = shown === dir;
  let p = abs, st: fs.Stats | null = null;
  for (;;) {
    try {
      st = fs.statSync(p);
      break;
    } catch {
      // absent (ENOENT) or under a file (ENOTDIR): the part that exists decides
      if (path.dirname(p) === p) break;
      p = path.dirname(p);
    }
  }
  if (st && !st.isDirectory()) fail(p === abs && itself ? `${option} ${dir} is a file, not a folder: give a folder (it is made when absent)` : `${option} ${shown}: ${p} is a file, so nothing can be made under it`);
  try {
    fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    fail(`${option} ${shown}: ${p === abs && itself ? 'the folder' : `the folder ${p}`} is not writable (${(e as NodeJS.ErrnoException).code})`);
  }
  return dir;
}

/** An output file option: not a folder, and in a folder it can be written in or made at (outputFolder's checks). */
function outputFile(option: string, file: string): string {
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) fail(`${option} ${file} is a folder: give a file`);
  outputFolder(option, path.dirname(path.resolve(file)), file);
  return file;
}

/**
 * Creates `file` holding `text`, atomically and only if it does not exist: false when it does. The text is written to a
 * temporary file that is then hard-linked into place, so a lock is never seen, or left, empty: a full disk or a kill
 * between creating and writing it would leave an empty lock that names no process, which blocks every later run until
 * removed by hand. Where the file system has no hard links, an exclusive create, removed again if its write fails.
 */
function createLock(file: string, text: string, failWith: (e: Error) => never): boolean {
  const tmp = `${file}.new-${process.pid}`;
  const drop = (f: string) => {
    try {
      fs.unlinkSync(f);
    } catch {
      // already gone
    }
  };
  try {
    fs.writeFileSync(tmp, text);
  } catch (e) {
    drop(tmp);
    failWith(e as Error);
  }
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') {
      drop(tmp); // failWith exits the process, which skips the finally below
      failWith(e as Error);
    }
  } finally {
    drop(tmp);
  }
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    failWith(e as Error);
  }
  try {
    fs.writeSync(fd, text);
  } catch (e) {
    fs.closeSync(fd);
    drop(file);
    failWith(e as Error);
  }
  fs.closeSync(fd);
  return true;
}

/**
 * Holds <dir>/.vwlmm.lock until this process exits, by any path (the end, fail(), an error, a stop's process.exit): two
 * runs writing one --out would interleave its metrics and checkpoints. Created atomically (O_EXCL), holding pid, host
 * and start time; a run whose lock is held by a live process is refused naming it; a lock of a process gone on this
 * host is taken over, with a note. `dir` is made when absent.
 */
/**
 * Refuses a `dir` inside (or at) a folder a live vwlmm run holds locked (`data --out demo/data` while the demo writes
 * it deleted the demo's images mid-run): the locks of `dir` and of every folder above it are read, none is taken.
 */
async function refuseInsideLockedRun(option: string, dir: string, self = false): Promise<void> {
  const { processRuns } = await import('./distributed');
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    // (no lock there, or one being written: its own run's check takes it)
    const held = self || d !== path.resolve(dir) ? readLock(path.join(d, '.vwlmm.lock')) : null;
    if (held && held.pid !== process.pid && lockHolderRuns(held, processRuns))
      fail(`${option} ${dir} is ${d === path.resolve(dir) ? '' : `inside ${d}, which is `}being written by ${lockHolder(held)}: wait for it to end, or give another ${option}`);
    if (path.dirname(d) === d) return;
  }
}

/** What a .vwlmm.lock records (lockOutput); null when there is none or it cannot be read as one. */
type LockRecord = { pid?: unknown; host?: unknown; started?: unknown; procStart?: unknown; command?: unknown };
function readLock(file: string): LockRecord | null {
  try {
    const held = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return held !== null && typeof held === 'object' ? (held as LockRecord) : null;
  } catch {
    return null;
  }
}

/**
 * Whether the process a lock names runs on this host: its pid alive and, where /proc tells it, started when the lock
 * recorded (a reused pid is not the holder).
 */
function lockHolderRuns(held: LockRecord, processRuns: (pid: number, started: string | null) => boolean): boolean {
  return typeof held.pid === 'number' && held.host === os.hostname() && processRuns(held.pid, typeof held.procStart === 'string' ? held.procStart : null);
}

/**
 * Removes the lock `file` of `held`, a holder that is gone: moved aside first and checked, so that a live run's lock
 * that replaced it meanwhile is put back. False when the lock was not `held`'s any more.
 */
function removeGoneLock(file: string, held: LockRecord): boolean {
  const aside = `${file}.stale-${process.pid}`;
  try {
    fs.renameSync(file, aside);
  } catch {
    return false; // gone already
  }
  if (readLock(aside)?.pid !== held.pid) {
    fs.renameSync(aside, file);
    return false;
  }
  fs.rmSync(aside, { force: true });
  return true;
}

/** The run a lock names, for messages: "vwlmm train (pid 12 on host, started ...)". */
function lockHolder(held: LockRecord): string {
  return `${typeof held.command === 'string' ? held.command : 'vwlmm'} (pid ${String(held.pid)} on ${String(held.host)}, started ${String(held.started)})`;
}

async function lockOutput(option: string, dir: string, command: string): Promise<void> {
  const { processStartTime, processRuns } = await import('./distributed');
  await refuseInsideLockedRun(option, dir);
  const file = path.join(dir, '.vwlmm.lock');
  const me = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), procStart: processStartTime(process.pid) ?? null, command: `vwlmm ${command}` };
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    fail(`${option} ${dir}: cannot make the folder (${(e as Error).message})`);
  }
  for (let attempt = 0; ; attempt++) {
    if (createLock(file, JSON.stringify(me) + '\n', (e) => fail(`${option} ${dir}: cannot create the lock ${file} (${e.message})`))) break;
    const held = readLock(file);
    // (null: just created, its line not written yet, or removed meanwhile: look again)
    if (held === null || typeof held.pid !== 'number') {
      if (attempt < 20) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
        continue;
      }
      fail(`${option} ${dir}: its lock ${file} names no process: if no run writes there, remove it`);
    }
    const who = lockHolder(held);
    if (held.host !== os.hostname()) fail(`${option} ${dir} is locked by ${who}, another machine: a run writes there; if it is gone, remove ${file}`);
    if (lockHolderRuns(held, processRuns)) fail(`${option} ${dir} is being written by ${who}: wait for it to end, or give another ${option}`);
    // the holder is gone (killed without its exit handler): taken over, unless another run took it first (look again)
    if (!removeGoneLock(file, held)) continue;
    process.stderr.write(`vwlmm: ${option} ${dir}: taking over the lock of ${who}, which is gone\n`);
  }
  process.on('exit', () => {
    try {
      if ((JSON.parse(fs.readFileSync(file, 'utf8')) as { pid?: unknown }).pid === process.pid) fs.rmSync(file, { force: true });
    } catch {
      /* gone already */
    }
  });
}

/**
 * Tells the launcher of --nproc-per-node that rank 0 said why the run stopped (VWLMM_LAUNCHER_REPORT), so that it does
 * not say it again; without the mark it does (ranks killed by the signal before their handlers were in).
 */
function markStopSaid(): void {
  const said = process.env.VWLMM_LAUNCHER_REPORT;
  if (!said) return;
  try {
    fs.writeFileSync(said, 'interrupted\n');
  } catch {
    /* the launcher then says it */
  }
}

/**
 * What a --resume of this run would continue, once the run owns its --out (an old run's checkpoint removed, or a resume
 * checked): exitOnStopSignals names the resume command where it holds (the demo stopped in its final evaluation).
 */
let stopResumable: (() => boolean) | null = null;

/**
 * Ctrl-C or SIGTERM where no training step runs (preparing the data, calibrating, evaluating): without a handler Node
 * ends the process at once, silently, and its exit handlers do not run (the lock of --out was left behind). During
 * training the Trainer's own handler listens too, and this one leaves the signal to it (a checkpoint at the step's end).
 * Rank 0 speaks for a data-parallel run its launcher signalled as a whole.
 */
function exitOnStopSignals(stopCodes: { STOP_SIGNALS: readonly string[]; exitCodeFor: (s: string) => number }, env: { rank: number; worldSize: number; launcher: string | null }): void {
  for (const sig of stopCodes.STOP_SIGNALS) {
    process.on(sig, () => {
      if (process.listenerCount(sig) > 1) return;
      // under `--nproc-per-node` the launcher sends the signal to every rank and rank 0 speaks; under mpirun by hand (or
      // a signal to one rank) each says it, with its rank
      if (env.rank === 0 || !process.env.VWLMM_LAUNCHER_ARGS) {
        process.stderr.write(`\nvwlmm: ${env.worldSize > 1 ? `rank ${env.rank} of ${env.worldSize}: ` : ''}${sig}: stopped outside the training steps (no checkpoint written now; an earlier one stays as it was)\n`);
        if (env.rank === 0 && stopResumable?.()) process.stderr.write(`vwlmm: resume with: ${resumeCommand(env)}\n`);
        if (env.rank === 0) markStopSaid();
      }
      // a rank leaves with 1, a failure: 130 / 143 tell a launcher that every rank stops at one step by itself (a
      // checkpoint), and it would wait for the others, which wait in a collective until its timeout
      process.exit(env.worldSize > 1 ? 1 : stopCodes.exitCodeFor(sig));
    });
  }
}

/**
 * prepareFile's progress on stderr (LLaVA's 665K records take minutes before the first step): on a terminal one line
 * redrawn, else a line every 10 s; nothing for a file prepared within 2 s.
 */
function preparationReport(file: string): (p: { records: number; recordsTotal: number; images: number; imagesTotal: number }) => void {
  const tty = !!process.stderr.isTTY, start = Date.now();
  let last = start, shown = false, finished = false;
  return (p) => {
    const now = Date.now(), done = p.records === p.recordsTotal && p.images === p.imagesTotal;
    if (finished || (done ? !shown && now - start < 2000 : now - start < 2000 || now - last < (tty ? 250 : 10_000))) return;
    last = now;
    shown = true;
    finished = done;
    const line = `vwlmm: preparing ${file}: ${p.records}/${p.recordsTotal} records tokenised, ${p.images}/${p.imagesTotal} images checked`;
    process.stderr.write(tty ? `\r${line}${done ? '\n' : ''}` : `${line}\n`);
  };
}

/** "rank r of N: " in a data-parallel rank (set where train and demo read their launch environment), else empty. */
let rankTag = '';

function fail(msg: string): never {
  // each rank prints its own error: under mpirun the rank is otherwise named only by Open MPI's boilerplate
  process.stderr.write(`vwlmm: ${rankTag}${msg}\n`);
  process.exit(2);
}

/** What `vwlmm train` writes into each of its checkpoints: where the run started (--init, resolved), its command and options. */
const TRAIN_ARGS = 'train_args.json';

/** A checkpoint's train_args.json (null where it has none: a checkpoint of the library's Trainer, or an older one). */
function readTrainArgs(dir: string): { init?: string } | null {
  const file = path.join(dir, TRAIN_ARGS);
  if (!fs.existsSync(file)) return null;
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${file} cannot be read as JSON (${(e as Error).message}): the checkpoint's record of its run is damaged`);
  }
  const init = (json as { init?: unknown } | null)?.init;
  if (json === null || typeof json !== 'object' || Array.isArray(json) || (init !== undefined && typeof init !== 'string'))
    fail(`${file}: expected an object whose init is the run's --init path, got ${JSON.stringify(json).slice(0, 80)}`);
  return { init: init as string | undefined };
}

/**
 * The command line that continues this run: the same arguments plus --resume, less --overwrite-output-dir (which starts
 * a run over: train and demo refuse the two together). A rank started by `--nproc-per-node`
 * gives its launcher's (VWLMM_LAUNCHER_ARGS: with --nproc-per-node N, which its own lacks); one started by mpirun by
 * hand, the mpirun in front.
 */
function resumeCommand(env: { launcher: string | null; worldSize: number }): string {
  const q = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const prefix = !process.env.VWLMM_LAUNCHER_ARGS && env.launcher === 'mpirun' ? ['mpirun', '-np', String(env.worldSize)] : [];
  return [...prefix, 'vwlmm', ...commandArgs().filter((a) => a !== '--resume' && a !== '--overwrite-output-dir'), '--resume'].map(q).join(' ');
}

/**
 * The arguments of the command the user gave: this process's, or for a rank started by `--nproc-per-node` its
 * launcher's (VWLMM_LAUNCHER_ARGS: with --nproc-per-node N, which the rank's own lack).
 */
function commandArgs(): string[] {
  const launched = process.env.VWLMM_LAUNCHER_ARGS;
  if (launched) {
    try {
      const a = JSON.parse(launched) as unknown;
      if (Array.isArray(a) && a.every((x) => typeof x === 'string')) return a as string[];
    } catch {
      /* not ours: the rank's own arguments */
    }
  }
  return process.argv.slice(2);
}

/**
 * Whether stdout is a terminal, as the progress bar decides (src/train/progress.ts): under mpirun every rank writes to
 * a pseudo-terminal, so the launcher's VWLMM_STDOUT_TTY says.
 */
function stdoutIsTerminal(): boolean {
  const told = process.env.VWLMM_STDOUT_TTY;
  if (told !== undefined) return told === '1' && !!process.stdout.isTTY;
  return !!process.stdout.isTTY && process.env.OMPI_COMM_WORLD_SIZE === undefined;
}

/**
 * `vwlmm train|demo --nproc-per-node N`: this process only supervises the N ranks it starts (the same command line
 * without --nproc-per-node), and exits with the first failure's code, naming the rank (through mpirun, the failure is
 * mpirun's: its own report above names the rank). Ctrl-C / SIGTERM go to the
 * ranks (src/distributed/launch.ts), which write a checkpoint and leave with 130 / 143, rank 0 printing the resume
 * command (this command line, from VWLMM_LAUNCHER_ARGS); this process then leaves with the same code.
 */
async function launchRanksOf(command: string, nproc: number, backend: 'mpi' | 'nccl', out: string): Promise<never> {
  // a Ctrl-C from here until launchRanks forwards signals would end this process alone, silently, or (once mpirun runs)
  // leave mpirun and the ranks to notice by themselves: held here, said, and nothing started
  let early: string | null = null;
  const hold = (sig: string) => (early ??= sig);
  const held = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of held) process.on(s, hold);
  // mpirun starts every rank it is asked for (--oversubscribe): 100,000 of them filled the machine for minutes
  const cores = os.availableParallelism();
  if (nproc > 4 * cores) fail(`--nproc-per-node ${nproc} is more than 4 ranks per CPU core (${cores} here): one rank per core (or per GPU) is the usual choice`);
  const { launchRanks, processRuns } = await import('./distributed');
  const argv = process.argv.slice(2);
  const k = argv.findIndex((a) => a === '--nproc-per-node' || a.startsWith('--nproc-per-node='));
  const inline = k >= 0 && argv[k].includes('=');
  const rest = argv.filter((_, i) => i !== k && !(k >= 0 && !inline && i === k + 1));
  const batches = command === 'train' ? '--batch-size is per rank, the global batch is ' + nproc + 'x' : "the recipe's batches are split over them";
  process.stderr.write(`vwlmm ${command}: starting ${nproc} ranks (${backend}${backend === 'mpi' ? ', through mpirun' : ''}); ${batches}\n`);
  if (early) {
    process.stderr.write(`vwlmm: ${early}: stopped before the ranks started\n`);
    process.exit(early === 'SIGINT' ? 130 : 143); // SIGHUP as SIGTERM, as the ranks get it
  }
  // where rank 0 marks that it said the stop (exitInterrupted)
  const report = path.join(os.tmpdir(), `vwlmm-launch-${process.pid}-${Date.now()}`);
  // launchRanks installs its own forwarding before it starts anything: `hold` goes once it has (one synchronous run)
  const launched = launchRanks({ nproc, backend, command: [process.execPath, ...process.execArgv, process.argv[1], ...rest], env: { ...process.env, VWLMM_LAUNCHER_ARGS: JSON.stringify(argv), VWLMM_LAUNCHER_REPORT: report } });
  for (const s of held) process.removeListener(s, hold);
  const r = await launched;
  const said = fs.existsSync(report);
  fs.rmSync(report, { force: true });
  // a rank 0 that mpirun (or this launcher) had to kill left its lock of --out: the ranks are gone, so is the run
  const lock = path.join(out, '.vwlmm.lock'), holder = readLock(lock);
  if (holder && typeof holder.pid === 'number' && holder.host === os.hostname() && !lockHolderRuns(holder, processRuns)) removeGoneLock(lock, holder);
  if (r.interrupted) {
    // rank 0 said what was saved and how to resume; else the ranks died of the signal before their handlers were in
    if (!said) process.stderr.write(`vwlmm: data-parallel run stopped by ${r.interrupted} while the ranks were starting (no checkpoint written now; an earlier one stays as it was)\n`);
    process.exit(r.code);
  }
  if (r.failure && r.forwarded) {
    // stopped before the ranks could take the signal as training does (e.g. while they were starting); said by rank 0
    // where it stopped outside the training steps
    if (!said) process.stderr.write(`vwlmm: data-parallel run stopped by ${r.forwarded}: ${r.failure}\n`);
    process.exit(r.forwarded === 'SIGINT' ? 130 : 143);
  }
  if (r.failure) {
    // a rank's own code (137: killed by SIGKILL, 1: an error it printed), as a script that checks it expects; 2 when
    // the ranks never started (mpirun missing), as every usage error here
    process.stderr.write(`vwlmm: data-parallel run failed: ${r.failure}${r.started ? '; the other ranks were stopped' : ''}\n`);
    process.exit(r.started && r.code > 0 ? r.code : 2);
  }
  process.exit(0);
}

/**
 * The data-parallel flags a rank checks: --nproc-per-node under a launcher must be the number of ranks it started here
 * (a rank of `--nproc-per-node` never sees it: its launcher takes it off), and --dist-timeout.
 */
function checkRankFlags(o: { nprocPerNode?: number; distTimeout?: number }, env: { launcher: string | null; worldSize: number; localWorldSize: number; rank: number }): void {
  if (o.nprocPerNode !== undefined && env.launcher !== null && o.nprocPerNode !== env.localWorldSize)
    fail(`--nproc-per-node ${o.nprocPerNode}, but this process is one of ${env.localWorldSize} rank(s) on this machine that ${env.launcher === 'mpirun' ? `mpirun started (-np ${env.worldSize})` : 'torchrun-style variables describe (LOCAL_WORLD_SIZE, WORLD_SIZE)'}: give the number of ranks once (mpirun -np N without --nproc-per-node, or --nproc-per-node N alone)`);
  if (o.distTimeout !== undefined && !(o.distTimeout > 0)) fail('--dist-timeout must be a number of seconds > 0');
  if (o.distTimeout !== undefined && env.worldSize <= 1) fail('--dist-timeout is for data-parallel runs (--nproc-per-node, mpirun, torchrun-style variables); this run is one process');
  // a rank of `--nproc-per-node` whose launcher was killed (SIGKILL reaches no rank: they run in groups of their own)
  // stops as on SIGTERM: the step, a checkpoint, exit 143, every rank at the same step
  if (env.worldSize > 1) {
    void import('./distributed').then(({ watchLauncher }) => watchLauncher((pid) => {
      if (env.rank === 0) process.stderr.write(`\nvwlmm: the launcher (pid ${pid}) is gone: the ranks stop as on SIGTERM\n`);
      process.kill(process.pid, 'SIGTERM');
    }));
  }
}

/**
 * Reports an interrupted run (what was saved, how to resume), ends its process group and exits 130 / 143. In a
 * data-parallel run rank 0 alone reports, before the group ends: destroy waits for every rank (MPI_Finalize), so no rank
 * has left yet (mpirun drops what a rank writes once another has left with a non-zero code).
 */
async function exitInterrupted(e: { message: string; exitCode: number; checkpoint: string | null }, group: { destroy(): void } | null, resumableWithout?: string): Promise<never> {
  const { launchEnv } = await import('./distributed');
  const env = launchEnv();
  if (env.rank === 0) {
    if (stdoutIsTerminal()) process.stdout.write('\x1b[?25h\n'); // a progress bar cut short hid the cursor
    const again = resumeCommand(env);
    // started over: its --out may hold the stopped run's metrics, which train and demo refuse without the flag
    const fresh = (c: string) => c.replace(/ --resume$/, '') + (/ --overwrite-output-dir( |$)/.test(c) ? '' : ' --overwrite-output-dir');
    const everyRank = env.launcher === 'torchrun' && !process.env.VWLMM_LAUNCHER_ARGS ? ' (on every rank, with its RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT)' : '';
    process.stderr.write(`\nvwlmm: ${e.message}\n`);
    // resumableWithout: a run that resumes from what it wrote before this training (the demo's data, stage 0 again)
    process.stderr.write(e.checkpoint || resumableWithout ? `vwlmm: resume with: ${again}${everyRank}${resumableWithout ? ` (${resumableWithout})` : ''}\n` : `vwlmm: nothing to resume: run the same command again (${fresh(again)})${everyRank}\n`);
    markStopSaid();
  }
  group?.destroy();
  process.exit(e.exitCode);
}

/** Rejects a tokenizer that does not belong to the checkpoint (naming both vocabulary sizes). */
async function openTokenizer(tokenizerPath: string, vocabSize: number) {
  const { TextTokenizer } = await import('./data');
  const { checkTokenizerVocab } = await import('./model');
  const tok = new TextTokenizer(tokenizerPath);
  checkTokenizerVocab(tok.vocabSize, vocabSize, tokenizerPath);
  return tok;
}

const program = new Command();
program.name('vwlmm').description('Train, evaluate and inspect VW-LMM (visual-words) multimodal models').version(require('../package.json').version);
// A usage error (unknown option, bad value) exits 2 as every other error here does; help and --version exit 0.
// Set before the commands are added, which inherit it.
program.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
// A path option given as '' (an unset shell variable: --out "$OUT") names no file: Node reads '' as the current folder
// in some calls and as nothing in others (`data --out ''` wrote into the current folder, over its files)
program.hook('preAction', (_, command) => {
  for (const opt of command.options) {
    if (!/<(dir|file|path)>/.test(opt.flags)) continue;
    const v = command.getOptionValue(opt.attributeName());
    if (typeof v === 'string' && v.trim() === '') fail(`${opt.long} is empty: give a path`);
  }
});

program.command('info').description('show the native backends (CPU GEMM, SIMD build, threads, CUDA)').option('--json', 'print JSON').action(async (o: { json?: boolean }) => {
  const { backendInfo } = await import('./index');
  const info = backendInfo();
  if (o.json) console.log(JSON.stringify(info));
  else {
    console.log(`vwlmm ${require('../package.json').version}`);
    console.log(`CPU:  ${info.cpu.gemm}; row passes ${info.cpu.simd}; ${info.cpu.threads} threads`);
    console.log(`CUDA: ${info.cuda.available ? `${String(info.cuda.deviceName)} (compute ${String(info.cuda.computeCapability)})` : `unavailable: ${info.cuda.reason}`}`);
  }
});

program.command('init').description("a new checkpoint, the starting point of `vwlmm train --init`: randomly initialised from a LLaVA-layout config.json (HF initialisation, as from_config), or assembled from a LLaMA / Mistral language model and a CLIP tower as LLaVA's train.py builds one before its first stage (--llm, --vision-tower)")
  .option('--config <file>', "config.json in the LLaVA layout vwlmm saves (LLaMA keys, mm_* keys, vision_config; vm_weight > 0 gives a vm_head)")
  .option('--llm <dir>', "a LlamaForCausalLM / MistralForCausalLM directory (LLaVA's --model_name_or_path, e.g. vicuna-7b-v1.5): every weight loaded, its tokenizer used unless --tokenizer")
  .option('--vision-tower <dir>', "a CLIPVisionModel / CLIPModel directory (LLaVA's --vision_tower, e.g. clip-vit-large-patch14-336), embedded in the checkpoint")
  .option('--projector <file>', "a trained projector (LLaVA's --pretrain_mm_mlp_adapter: mm_projector.bin, or a .safetensors of its tensors); default: drawn as torch draws a new nn.Linear")
  .option('--mm-projector-type <t>', 'linear or mlp2x_gelu (with --llm)', 'mlp2x_gelu')
  .option('--mm-vision-select-layer <n>', 'the tower layer whose patch features are projected (with --llm)', int('--mm-vision-select-layer', null), -2)
  .option('--image-aspect-ratio <a>', "square (LLaVA's pretraining) or pad (its fine-tuning: expand2square) (with --llm)", 'square')
  .option('--template <t>', 'the conversation template: vicuna_v1 (LLaVA v1), plain (its pretraining), mistral, or another of LLaVA\'s (mistral_instruct, llava_v1, v1_mmtag) (with --llm; default: vicuna_v1, mistral for a Mistral base)')
  .option('--vm-weight <x>', 'with --llm: > 0 makes a VW-LMM (a vm_head, the visual-word KL at this weight; the paper: 1); 0: plain LLaVA', num('--vm-weight'), 0)
  .option('--tokenizer <file>', "tokenizer.json (its vocabulary must fit vocab_size); with --llm, default: the LLM's (tokenizer.json, or tokenizer.model converted)")
  .requiredOption('--out <dir>', 'the checkpoint folder to write (must not hold a checkpoint already)')
  .option('--seed <n>', 'initialisation seed (with --llm: of the projector unless given, and the vm_head)', seedOption('--seed'), 0)
  .action(async (o: { config?: string; llm?: string; visionTower?: string; projector?: string; mmProjectorType: string; mmVisionSelectLayer: number; imageAspectRatio: string; template?: string; vmWeight: number; tokenizer?: string; out: string; seed: number }, cmd: Command) => {
    if ((o.config === undefined) === (o.llm === undefined && o.visionTower === undefined))
      fail('give --config (a random model from a LLaVA-layout config.json) or --llm with --vision-tower (one assembled from its parts), not both or neither');
    if (o.llm !== undefined || o.visionTower !== undefined) {
      if (o.llm === undefined || o.visionTower === undefined) fail('--llm and --vision-tower go together (a LLaVA needs both)');
      // a hub id (lmsys/vicuna-7b-v1.5, as LLaVA's scripts name them): the copy in the Hugging Face cache, if any
      o.llm = await localModel(o.llm, 'LLM');
      o.visionTower = await localModel(o.visionTower, 'vision tower');
      if (o.projector !== undefined) existing(o.projector, 'projector', 'file');
      if (o.tokenizer !== undefined) existing(o.tokenizer, 'tokenizer', 'file');
      if (o.imageAspectRatio !== 'square' && o.imageAspectRatio !== 'pad') fail(`--image-aspect-ratio must be square or pad, got '${o.imageAspectRatio}'`);
      const { TEMPLATES } = await import('./data');
      if (o.template !== undefined && !(o.template in TEMPLATES)) fail(`--template must be one of ${Object.keys(TEMPLATES).join(', ')}, got '${o.template}'`);
      if (!(o.vmWeight >= 0)) fail(`--vm-weight must be a number >= 0, got ${o.vmWeight}`);
    } else {
      // a --config model takes these from its config.json: given here they would be dropped without a word
      const forParts: [keyof typeof o, string][] = [['projector', '--projector'], ['mmProjectorType', '--mm-projector-type'], ['mmVisionSelectLayer', '--mm-vision-select-layer'], ['imageAspectRatio', '--image-aspect-ratio'], ['template', '--template'], ['vmWeight', '--vm-weight']];
      const given = forParts.filter(([k]) => cmd.getOptionValueSource(k) === 'cli').map(([, flag]) => flag);
      if (given.length) fail(`${given.join(', ')} ${given.length > 1 ? 'are' : 'is'} for --llm with --vision-tower: a --config model takes ${given.length > 1 ? 'them' : 'it'} from its config.json (mm_projector_type, mm_vision_select_layer, image_aspect_ratio, conversation_template, vm_weight; a projector is drawn at random)`);
      existing(o.config!, 'config', 'file');
      if (o.tokenizer === undefined) fail('--config needs --tokenizer (the tokenizer.json the model is trained with)');
      existing(o.tokenizer, 'tokenizer', 'file');
    }
    outputFolder('--out', o.out);
    if (fs.existsSync(o.out) && fs.readdirSync(o.out).length > 0) fail(`--out ${o.out} is not empty: init writes a new checkpoint and never replaces one`);
    const { assembleLlava, configFromJson, saveCheckpoint, VwLmm } = await import('./model');
    let model: import('./model').VwLmm, tokenizer: string;
    if (o.llm !== undefined) {
      let made: ReturnType<typeof assembleLlava>;
      try {
        made = assembleLlava({ llm: o.llm, visionTower: o.visionTower!, projector: o.projector, projectorType: o.mmProjectorType, selectLayer: o.mmVisionSelectLayer,
          imageAspect: o.imageAspectRatio as 'square' | 'pad', template: o.template as 'vicuna_v1' | 'plain' | 'mistral' | undefined, vmWeight: o.vmWeight, seed: o.seed });
      } catch (e) {
        fail((e as Error).message.replace(/^assembleLlava: /, '').replace(/^selectLayer \(mm_vision_select_layer\)/, '--mm-vision-select-layer').replace(/^projectorType \(mm_projector_type\)/, '--mm-projector-type'));
      }
      model = made!.model;
      // the LLM's folder: its tokenizer.json or tokenizer.model, with the files beside it (generation_config.json)
      if (o.tokenizer === undefined && made!.tokenizerPath === null) fail(`${o.llm} has no tokenizer (tokenizer.json or tokenizer.model): give --tokenizer`);
      tokenizer = o.tokenizer ?? o.llm;
    } else {
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(fs.readFileSync(o.config!, 'utf8')) as Record<string, unknown>;
      } catch (e) {
        fail(`config ${o.config} is not valid JSON (${(e as Error).message})`);
      }
      // transformers would share one matrix between embed_tokens and lm_head; vwlmm's model holds two (a loaded
      // checkpoint's tied head is copied), so a random model of such a config would not be the config's model
      if (json!.tie_word_embeddings === true) fail(`${o.config}: tie_word_embeddings true is not supported for a new model (lm_head and embed_tokens are separate weights here): give false, as LLaMA / Vicuna / Mistral configs have it`);
      let config: import('./model').VwLmmConfig;
      try {
        config = configFromJson(json!);
      } catch (e) {
        fail(`${o.config}: ${(e as Error).message}`);
      }
      try {
        model = VwLmm.create(config!, o.seed);
      } catch (e) {
        // a config whose tensors cannot be allocated (a typed array past its length limit, or no memory for one)
        const c = config!;
        fail(`${o.config}: the model it describes could not be made (${(e as Error).message}): hidden_size ${c.llm.hiddenSize}, intermediate_size ${c.llm.intermediateSize}, num_hidden_layers ${c.llm.numLayers}, vocab_size ${c.llm.vocabSize}, vision_config.hidden_size ${c.vision.hiddenSize}`);
      }
      tokenizer = o.tokenizer!;
    }
    await openTokenizer(tokenizer, model.config.llm.vocabSize);
    saveCheckpoint(o.out, model, { tokenizer });
    const params = model.parameters().reduce((a, p) => a + p.size, 0);
    console.log(`${o.llm !== undefined ? `assembled ${o.llm} and ${o.visionTower}: ` : 'initialised '}${(params / 1e6).toFixed(2)}M parameters (seed ${o.seed}${model.config.vmWeight > 0 ? ', with vm_head' : ''}) into ${o.out}`);
    model.dispose();
  });

const data = program.command('data').description('data set generators');
data.command('sort-of-clevr').description('generate Sort-of-CLEVR (LLaVA JSON + PNG, captions, tokenizer.json)')
  .requiredOption('--out <dir>', 'output directory')
  .option('--train <n>', 'training images', int('--train', 1), 9800)
  .option('--test <n>', 'test images', int('--test', 1), 200)
  .option('--seed <n>', 'random seed (0 to 4294967295)', seedOption('--seed'), 0)
  .option('--overwrite-output-dir', 'replace the data set an --out holds (else a non-empty --out is refused)')
  .action(async (o: { out: string; train: number; test: number; seed: number; overwriteOutputDir?: boolean }) => {
    outputFolder('--out', o.out);
    await refuseInsideLockedRun('--out', o.out, true);
    const { writeSortOfClevr, writeWordLevelTokenizer, sortOfClevrVocabulary, SORT_OF_CLEVR_MAX_IMAGES, removeSortOfClevr } = await import('./data');
    for (const [flag, n] of [['--train', o.train], ['--test', o.test]] as const)
      if (n > SORT_OF_CLEVR_MAX_IMAGES) fail(`${flag} must be at most ${SORT_OF_CLEVR_MAX_IMAGES} (the generator holds a split's scenes and records in memory, ~12 KB an image), got ${n}`);
    // a second data set written over a first would leave the first's images beside the second's files; a folder of
    // anything else is not this command's to clear
    if (fs.existsSync(o.out) && fs.readdirSync(o.out).length > 0) {
      if (!o.overwriteOutputDir) fail(`--out ${o.out} is not empty: data sort-of-clevr writes a new data set (--overwrite-output-dir replaces the one there)`);
      try {
        removeSortOfClevr(o.out);
      } catch {
        fail(`--out ${o.out} holds files but no Sort-of-CLEVR data set (no meta.json of one): --overwrite-output-dir replaces only a data set this command wrote; give an empty or new folder`);
      }
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.rmSync(path.join(o.out, f), { force: true }); // writeWordLevelTokenizer's
    }
    const s = writeSortOfClevr(o.out, { train: o.train, test: o.test, seed: o.seed });
    writeWordLevelTokenizer(path.join(o.out, 'tokenizer.json'), sortOfClevrVocabulary());
    console.log(JSON.stringify(s));
  });

program.command('demo').description("generate Sort-of-CLEVR, train a small VW-LMM through the recipe's stages (on the CPU by default), evaluate, report accuracy")
  .option('--out <dir>', 'output directory (checkpoint, metrics, plots)', 'vwlmm-demo')
  .option('--seed <n>', 'random seed (0 to 4294967295)', seedOption('--seed'), 0)
  .option('--ablation', 'also train the same run with vmWeight 0 (plain LLaVA) and compare')
  .option('--scale <x>', 'multiply the training steps, at most 100 (e.g. 0.05 for a smoke run; below 1 also the images, down to 64 train and 50 test, and the in-training evaluations, down to 100 questions)', num('--scale'), 1)
  .option('--json', 'end with one JSON object')
  .option('--resume', 'continue an interrupted demo from its checkpoints (same --out, --seed, --scale)')
  .option('--overwrite-output-dir', 'start over in an --out that already holds a demo run (else refused: --resume continues it)')
  .option('--device <d>', DEVICE_HELP, 'cpu')
  .option('--dtype <d>', DTYPE_HELP)
  .option('--schedule <s>', "default, or paper: a text stage first, then stage 1 with the LLM frozen (VW-LMM's schedule at demo scale)", 'default')
  .option('--pif', 'the PIF variant: the LLM reads each patch as its visual word (a mixture of word embeddings)')
  .option('--detach-target', "detach the KL's target (an ablation of the paper's objective; without --pif vm_head then stays as initialised)")
  .option('--no-replay', 'run every step in JavaScript (by default a step of a batch shape seen twice is replayed natively as an op program: the same numbers, less host time)')
  .option('--nproc-per-node <n>', 'data-parallel: train with n ranks on this machine (through mpirun: apt install libopenmpi-dev openmpi-bin); the batches stay the global ones; 2 on 2 cores ran the demo 1.19x faster on a Xeon and 0.95x on an EPYC, where one process is quicker (benchmarks/RESULTS.md)', int('--nproc-per-node', 1))
  .option('--dist-timeout <s>', DIST_TIMEOUT_HELP, num('--dist-timeout'))
  .option('--report-to <to>', "tensorboard: also write each run's train and eval scalars (loss, learning rate, accuracies, ...) as TensorBoard event files in vw/runs (and llava/runs); none: metrics.jsonl alone", 'none')
  .action(async (o: { nprocPerNode?: number; distTimeout?: number; out: string; seed: number; ablation?: boolean; scale: number; json?: boolean; resume?: boolean; overwriteOutputDir?: boolean; device: string; dtype?: string; schedule: string; pif?: boolean; detachTarget?: boolean; replay: boolean; reportTo: string }) => {
    outputFolder('--out', o.out); // before the ranks start, the data set is written or anything is calibrated
    const reportTo = reportToOption(o.reportTo, undefined);
    if (!(o.scale > 0)) fail('--scale must be > 0');
    if (o.scale > 100) fail(`--scale must be at most 100 (100 x the default budget: about 12 hours on 2 CPU cores), got ${o.scale}`);
    if (o.schedule !== 'default' && o.schedule !== 'paper') fail(`--schedule must be default or paper, got ${o.schedule}`);
    if (o.resume && o.overwriteOutputDir) fail('--resume continues the run in --out and --overwrite-output-dir starts it over: give one');
    const { launchEnv, initProcessGroup } = await import('./distributed');
    const { resolveCheckpointDir } = await import('./model');
    // as train: a finished or stopped run (its checkpoint, its metrics) is not written over by running the demo again
    const refuseRun = () => {
      // (a resume of nothing started a new run without a word, where train refuses it)
      if (o.resume && !['data', 'vw', 'llava'].some((d) => fs.existsSync(path.join(o.out, d))))
        fail(`--resume: --out ${o.out} holds no demo run to continue (no data/, vw/ or llava/): run without --resume to start one`);
      if (o.resume || o.overwriteOutputDir) return;
      const runs = ['vw', 'llava'].filter((r) => resolveCheckpointDir(path.join(o.out, r, 'checkpoint')) || fs.existsSync(path.join(o.out, r, 'metrics.jsonl')));
      if (runs.length) fail(`--out ${o.out} already holds a demo run (${runs.map((r) => `${r}/`).join(', ')}: checkpoint/ or metrics.jsonl): --resume continues it, --overwrite-output-dir starts over in it`);
    };
    const env = launchEnv();
    if (env.worldSize > 1) rankTag = `rank ${env.rank} of ${env.worldSize}: `;
    const backend = o.device.startsWith('cuda') ? 'nccl' : 'mpi';
    if (o.nprocPerNode !== undefined && o.nprocPerNode > 1 && env.launcher === null) {
      refuseRun(); // before any rank starts (each checks again)
      return launchRanksOf('demo', o.nprocPerNode, backend, o.out);
    }
    exitOnStopSignals(await import('./train'), env); // from here on (a rank's default death left its launcher no word)
    checkRankFlags(o, env);
    // every option checked before --out is made
    const [dev, dtype] = [await device(o.device), await computeDtypeOf(o.dtype)];
    // the group before the lock (as train's)
    const group = env.worldSize > 1 ? await initProcessGroup({ backend, timeoutMs: o.distTimeout !== undefined ? o.distTimeout * 1000 : undefined }) : null;
    if (env.rank === 0) await lockOutput('--out', o.out, 'demo'); // rank 0 alone writes --out
    refuseRun(); // under the lock: no other run writes it meanwhile
    if (o.overwriteOutputDir && env.rank === 0) (await import('./demo')).removeDemoRun(o.out);
    // from here --out is this run's: a stop outside the steps (the final evaluation) names the resume where one holds
    // (a checkpoint, or the data set that stage 0 runs again on)
    stopResumable = () => resolveCheckpointDir(path.join(o.out, 'vw', 'checkpoint')) !== null || fs.existsSync(path.join(o.out, 'data', 'meta.json'));
    const { TrainingInterrupted } = await import('./train');
    const { runDemo } = await import('./demo');
    try {
      const res = await runDemo({ outDir: o.out, seed: o.seed, ablation: !!o.ablation, scale: o.scale, quiet: !!o.json, resume: !!o.resume, device: dev, dtype, schedule: o.schedule as 'default' | 'paper', pif: o.pif, detachTarget: o.detachTarget, replay: o.replay, processGroup: group ?? undefined, reportTo });
      if (o.json && res) console.log(JSON.stringify(res));
      group?.destroy();
    } catch (e) {
      if (e instanceof TrainingInterrupted) {
        // stage 0 (the tower's pretraining) writes no checkpoint, but the data set is written: --resume runs it again
        const stage0 = !e.checkpoint && fs.existsSync(path.join(o.out, 'data', 'meta.json')) ? 'the tower\'s pretraining, stage 0, writes no checkpoint: the resume runs it again on the data set written' : undefined;
        await exitInterrupted(e, group, stage0);
      }
      throw e;
    }
  });

program.command('train').description('train a checkpoint on a LLaVA-format file (one stage; run it again for the next)')
  .requiredOption('--init <dir>', 'checkpoint to start from (config.json, model.safetensors, tokenizer.json)')
  .requiredOption('--data <file>', 'LLaVA JSON / JSONL training file')
  .option('--image-folder <dir>', 'folder the image paths are relative to', '.')
  .requiredOption('--out <dir>', 'output directory (checkpoint/, metrics.jsonl, loss_curve.png)')
  .option('--steps <n>', 'optimizer steps (default: one epoch, ceil(samples / (batch size x grad accum x ranks)) steps)', int('--steps', 1))
  .option('--epochs <n>', "epochs when --steps is absent (a number > 0). Batches are always full: an epoch's last step takes what it lacks from the next epoch's order", num('--epochs'), 1)
  .option('--batch-size <n>', 'samples per micro-batch', int('--batch-size', 1), 16)
  .option('--grad-accum <n>', 'micro-batches per optimizer step', int('--grad-accum', 1), 1)
  .option('--lr <x>', 'peak learning rate', num('--lr'), 2e-5)
  .option('--mm-vision-tower-lr <x>', "the vision tower's peak learning rate when it trains (default: --lr)", num('--mm-vision-tower-lr'))
  .option('--warmup-ratio <x>', 'share of steps for linear warmup', num('--warmup-ratio'), 0.03)
  .option('--weight-decay <x>', "AdamW decoupled weight decay (not on biases and norm layers, as in transformers' Trainer)", num('--weight-decay'), 0)
  .option('--max-grad-norm <x>', 'global gradient-norm clip (0: none, as transformers\' Trainer)', num('--max-grad-norm'), 1)
  .option('--trainable <parts>', 'comma list of vision,projector,llm,vm,lora (LLaVA stage 1: projector,vm; default projector,llm,vm, with --lora-r projector,vm,lora)')
  .option('--lora-r <n>', 'add LoRA adapters of rank n to every Linear of the LLM (LLaVA-1.5 LoRA: 128)', int('--lora-r', 1))
  .option('--lora-alpha <x>', 'LoRA alpha (default 2 x r, as LLaVA-1.5: 256 for r 128)', num('--lora-alpha'))
  .option('--lora-dropout <p>', 'LoRA dropout', num('--lora-dropout'), 0.05)
  .option('--mm-projector-lr <x>', "the projector's peak learning rate (LLaVA's LoRA recipe: 2e-5; default: --lr)", num('--mm-projector-lr'))
  .option('--seed <n>', 'random seed (0 to 4294967295)', seedOption('--seed'), 0)
  .option('--stage <name>', "the stage's name: in the logs and checkpoint, and the key of its sample order (a stage of a longer run, e.g. the demo's reproduce.sh, gets the order it had there)", 'train')
  .option('--save-every <n>', 'checkpoint every n steps (and at the end)', int('--save-every'), 0)
  .option('--logging-steps <n>', "a metrics.jsonl record (and the progress line's update) every n steps, and each stage's last (transformers' --logging_steps)", int('--logging-steps', 1), 1)
  .option('--report-to <to>', "tensorboard: also write the logged scalars as TensorBoard event files (train/loss, train/learning_rate, train/grad_norm, ...; transformers' --report_to), in --logging-dir; none: metrics.jsonl alone", 'none')
  .option('--logging-dir <dir>', "where --report-to tensorboard writes (default <out>/runs: one folder for the run, so a resume continues its curves)")
  .option('--resume', 'continue from <out>/checkpoint exactly where it stopped')
  .option('--overwrite-output-dir', 'start over in an --out that already holds a run (else refused: --resume continues it)')
  .option('--model-max-length <n>', "positions a sample is cut to, image features included (LLaVA's model_max_length; default: the checkpoint's tokenizer_model_max_length, else 2048; the checkpoint written records it)", int('--model-max-length', 1))
  .option('--strict', 'fail on the first broken record, image or tokenization mismatch')
  .option('--verify-images <how>', "check every image before training by decoding it (decode: broken ones are skipped) or by reading its header (header: fast at LLaVA's 665K images; a file cut short fails training when its batch comes)", 'decode')
  .option('--template <name>', "the run's conversation template for records without their own (LLaVA's --version: plain for its pretraining, v1 / vicuna_v1 for its fine-tuning, mistral, mistral_instruct, llava_v1, v1_mmtag); default: the checkpoint's; the checkpoint written records it")
  .option('--image-aspect-ratio <a>', "how the run's images are made square (LLaVA's --image_aspect_ratio: square in its pretraining, pad = expand2square in its fine-tuning); default: the checkpoint's; the checkpoint written records it")
  .option('--group-by-modality-length', "LLaVA's group_by_modality_length (its finetune.sh sets it): each batch holds image records only or text-only records only, of similar lengths (by words); default: plain shuffles")
  .option('--non-finite <action>', 'a step with a NaN/Inf loss or gradient norm: skip its update, or stop', 'skip')
  .option('--gradient-checkpointing', 'recompute every decoder and vision layer in the backward: less memory, one more forward per layer')
  .option('--device <d>', DEVICE_HELP, 'cpu')
  .option('--dtype <d>', DTYPE_HELP)
  .option('--frozen-dtype <d>', 'how the frozen Linear weights are stored: bf16 (half the memory: a LoRA base) or fp32 (default: the --dtype)')
  .option('--residual-dtype <d>', "the LLM's residual stream under --dtype bf16: fp32 (torch's autocast; default) or bf16 (a model loaded in bf16, as LLaVA's LoRA recipe: half the memory of --gradient-checkpointing's checkpoints)")
  .option('--nproc-per-node <n>', 'data-parallel: start n ranks on this machine (as torchrun; MPI ranks through mpirun). --batch-size is per rank. Also runs under mpirun -np n, or (NCCL, --device cuda) with torchrun-style RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT', int('--nproc-per-node', 1))
  .option('--dist-backend <b>', 'data-parallel backend: mpi (CPU) or nccl (CUDA); default: by --device')
  .option('--dist-timeout <s>', DIST_TIMEOUT_HELP, num('--dist-timeout'))
  .option('--gather-dtype <d>', "data-parallel: the dtype the updated weights are all-gathered in: bf16 (llm.c's ZeRO-1: the fp32 masters sharded too, every rank trains with bf16 weights, half the bytes) or fp32 (default); checkpoints hold the fp32 masters either way")
  .option('--no-replay', 'run every step in JavaScript (by default a step of a batch shape seen twice is replayed natively as an op program: the same numbers, less host time)')
  .option('--pif', `--init: ${PIF_HELP}`)
  .option('--no-pif', `--init: ${NO_PIF_HELP}`)
  .action(async (o: { pif?: boolean; replay: boolean; nprocPerNode?: number; distBackend?: string; distTimeout?: number; gatherDtype?: string; init: string; data: string; imageFolder: string; out: string; steps?: number; epochs: number; batchSize: number; gradAccum: number; lr: number; mmVisionTowerLr?: number; warmupRatio: number; weightDecay: number; maxGradNorm: number; trainable?: string; seed: number; stage: string; saveEvery: number; loggingSteps: number; reportTo: string; loggingDir?: string; resume?: boolean; overwriteOutputDir?: boolean; modelMaxLength?: number; verifyImages: string; template?: string; imageAspectRatio?: string; groupByModalityLength?: boolean; strict?: boolean; nonFinite: string; gradientCheckpointing?: boolean; device: string; dtype?: string; frozenDtype?: string; residualDtype?: string; loraR?: number; loraAlpha?: number; loraDropout: number; mmProjectorLr?: number }, cmd: Command) => {
    outputFolder('--out', o.out);
    if (o.nonFinite !== 'skip' && o.nonFinite !== 'stop') fail(`--non-finite must be skip or stop, got '${o.nonFinite}'`);
    if (o.verifyImages !== 'decode' && o.verifyImages !== 'header') fail(`--verify-images must be decode or header, got '${o.verifyImages}'`);
    const reportTo = reportToOption(o.reportTo, o.loggingDir);
    const template = o.template === 'v1' ? 'vicuna_v1' : o.template; // LLaVA's --version v1 is vicuna_v1
    if (o.imageAspectRatio !== undefined && o.imageAspectRatio !== 'square' && o.imageAspectRatio !== 'pad') fail(`--image-aspect-ratio must be square or pad, got '${o.imageAspectRatio}'`);
    const { TEMPLATES } = await import('./data');
    if (template !== undefined && !(template in TEMPLATES))
      fail(`--template must be one of ${Object.keys(TEMPLATES).join(', ')} (LLaVA's --version), got '${o.template}' (a record may name another with its conversation_template)`);
    const distBackend = o.distBackend ?? (o.device.startsWith('cuda') ? 'nccl' : 'mpi');
    if (distBackend !== 'mpi' && distBackend !== 'nccl') fail(`--dist-backend must be mpi or nccl, got '${o.distBackend}'`);
    if (distBackend === 'nccl' && !o.device.startsWith('cuda')) fail(`--dist-backend nccl reduces CUDA tensors: it needs --device cuda (got --device ${o.device}; the CPU's backend is mpi)`);
    if (distBackend === 'mpi' && o.device.startsWith('cuda')) fail(`--dist-backend mpi reduces CPU tensors: with --device ${o.device} use nccl (the default on cuda)`);
    const { launchEnv } = await import('./distributed');
    const env = launchEnv();
    if (env.worldSize > 1) rankTag = `rank ${env.rank} of ${env.worldSize}: `;
    if (o.nprocPerNode !== undefined && o.nprocPerNode > 1 && env.launcher === null) return launchRanksOf('train', o.nprocPerNode, distBackend, o.out);
    exitOnStopSignals(await import('./train'), env); // from here on (a rank's default death left its launcher no word)
    checkRankFlags(o, env);
    for (const [flag, given] of [['--gather-dtype', o.gatherDtype], ['--dist-backend', o.distBackend]] as const)
      if (given !== undefined && env.worldSize <= 1) fail(`${flag} is for data-parallel runs (--nproc-per-node, mpirun, torchrun-style variables); this run is one process`);
    existing(o.data, 'data file', 'file');
    existing(o.imageFolder, 'image folder', 'dir');
    const parts = (o.trainable ?? (o.loraR !== undefined ? 'projector,vm,lora' : 'projector,llm,vm')).split(',').map((p) => p.trim()).filter(Boolean);
    const { TRAINABLE_PARTS } = await import('./train');
    const known = Object.keys(TRAINABLE_PARTS);
    const unknown = parts.filter((p) => !known.includes(p));
    if (unknown.length) fail(`--trainable: unknown part(s) ${unknown.join(', ')} (use ${known.join(', ')})`);
    if (!o.stage.trim()) fail('--stage must name the stage');
    if (o.resume && o.overwriteOutputDir) fail('--resume continues the run in --out and --overwrite-output-dir starts it over: give one');
    if (!(o.lr > 0)) fail('--lr must be > 0');
    if (o.loraR === undefined && (o.loraAlpha !== undefined)) fail('--lora-alpha needs --lora-r');
    if (o.loraAlpha !== undefined && !(o.loraAlpha > 0)) fail('--lora-alpha must be > 0');
    if (!(o.loraDropout >= 0 && o.loraDropout < 1)) fail('--lora-dropout must be in [0, 1)');
    if (o.mmProjectorLr !== undefined && !(o.mmProjectorLr >= 0)) fail('--mm-projector-lr must be >= 0');
    if (o.mmVisionTowerLr !== undefined && !(o.mmVisionTowerLr >= 0)) fail('--mm-vision-tower-lr must be >= 0');
    if (o.mmVisionTowerLr !== undefined && !parts.includes('vision')) fail('--mm-vision-tower-lr needs the vision tower trainable (--trainable with vision)');
    // (each would be read by nothing, as these two's siblings are refused for)
    if (o.mmProjectorLr !== undefined && !parts.includes('projector')) fail('--mm-projector-lr needs the projector trainable (--trainable with projector)');
    if (o.loraR === undefined && cmd.getOptionValueSource('loraDropout') === 'cli') fail('--lora-dropout needs --lora-r');
    if (o.loraR !== undefined) {
      // adapters nothing trains stay zero (B = 0): the model is the base's; and on a fully trained LLM they only duplicate it
      if (!parts.includes('lora')) fail(`--lora-r adds LoRA adapters that --trainable ${parts.join(',')} leaves untrained: add lora (LLaVA's LoRA recipe: projector,vm,lora)`);
      if (parts.includes('llm')) fail("--lora-r with --trainable llm would train the LLM's weights and their adapters both: LoRA trains the adapters instead of the weights (--trainable projector,vm,lora, LLaVA's LoRA recipe)");
    }
    if (o.warmupRatio < 0 || o.warmupRatio > 1) fail('--warmup-ratio must be in [0, 1]');
    if (!(o.epochs > 0)) fail('--epochs must be > 0');
    if (o.steps !== undefined && cmd.getOptionValueSource('epochs') === 'cli') fail('--steps and --epochs both set the run\'s length: give one');
    if (!(o.weightDecay >= 0)) fail('--weight-decay must be >= 0');
    if (!(o.maxGradNorm >= 0)) fail('--max-grad-norm must be >= 0 (0: no clipping)');
    // every option checked before --out is made
    const dtype = await computeDtypeOf(o.dtype);
    const frozenDtype = await computeDtypeOf(o.frozenDtype, '--frozen-dtype');
    const residualDtype = await computeDtypeOf(o.residualDtype, '--residual-dtype');
    const gatherDtype = await computeDtypeOf(o.gatherDtype, '--gather-dtype');
    const spec = await device(o.device);
    // data-parallel: the group first, so that rank 0 takes the lock once every rank is up (MPI_Init holds this thread
    // until all arrive: a Ctrl-C meanwhile, which ended the others, could not reach it, and its lock stayed)
    const { initProcessGroup } = await import('./distributed');
    const group = env.worldSize > 1 ? await initProcessGroup({ backend: distBackend, timeoutMs: o.distTimeout !== undefined ? o.distTimeout * 1000 : undefined }) : null;
    // rank 0 alone writes --out (the launcher of --nproc-per-node returned above: its ranks lock)
    if (env.rank === 0) await lockOutput('--out', o.out, 'train');
    const { checkpointTargetProblem, loadCheckpoint, resolveCheckpointDir, saveLeftovers } = await import('./model');
    let from = o.init;
    if (o.resume) {
      // the newest complete checkpoint, also when a save was killed half-way (<out>/checkpoint.old-*)
      const found = resolveCheckpointDir(path.join(o.out, 'checkpoint'));
      if (!found) {
        const ckpt = path.join(o.out, 'checkpoint');
        // the advice must not send the user in a circle: without --resume, a folder holding metrics.jsonl is refused
        const started = fs.existsSync(path.join(o.out, 'metrics.jsonl'));
        const why = fs.existsSync(ckpt) ? `${ckpt} is not a complete checkpoint (it has no config.json: a save that did not finish)` : `there is no checkpoint in ${ckpt}`;
        fail(`--resume: ${why}${started ? '; the run stopped before its first checkpoint was saved: start it over with --overwrite-output-dir' : ' (run without --resume to start)'}`);
      }
      from = found;
      // a resume reads the checkpoint's weights, never --init: an --init other than the run's says the command means
      // another run (the resume command printed at a stop repeats the run's own)
      const recorded = readTrainArgs(from)?.init;
      if (recorded !== undefined && realPathOf(o.init) !== realPathOf(recorded))
        fail(`--resume continues the run in --out ${o.out}, which started from --init ${recorded} (${path.join(from, TRAIN_ARGS)}); this command names --init ${o.init}, which a resume does not read: resume with --init ${recorded}, or start a new run from ${o.init} with another --out`);
    } else {
      existing(from, 'init checkpoint', 'dir');
      // as transformers' Trainer scripts refuse a non-empty output_dir: a finished or stopped run is not lost to a typo
      const ckpt = path.join(o.out, 'checkpoint');
      if (!o.overwriteOutputDir && (resolveCheckpointDir(ckpt) || fs.existsSync(path.join(o.out, 'metrics.jsonl'))))
        fail(`--out ${o.out} already holds a training run (checkpoint/ or metrics.jsonl): --resume continues it, --overwrite-output-dir starts over in it`);
      // starting over: the old run's checkpoints go now, so that a crash before the new run's first save cannot leave
      // them for a --resume to continue, the old weights under the new run's metrics
      // (a checkpoint/ of other files is refused below, before anything is removed: the run could not save there)
      if (o.overwriteOutputDir && env.rank === 0 && !checkpointTargetProblem(ckpt)) {
        // the names saves make (checkpoint, and its .tmp- / .old- / .trash- siblings), never a user's checkpoint.bak
        const old = [...(fs.existsSync(ckpt) ? [ckpt] : []), ...saveLeftovers(ckpt)];
        const init = old.find((d) => nesting(from, d) !== null);
        if (init) fail(`--init ${from} is the old run's checkpoint ${init}, which --overwrite-output-dir removes: copy it elsewhere first, or give another --out`);
        for (const d of old) fs.rmSync(d, { recursive: true, force: true });
      }
      // before training, not at its first save (a run of 50 steps once trained to the end and then could not save)
      const problem = checkpointTargetProblem(ckpt);
      if (problem) fail(`--out ${o.out}: the run saves its checkpoint to ${ckpt}, but ${problem}`);
    }
    // from here --out is this run's: a stop outside the steps (after the last save) names the resume where one holds
    stopResumable = () => resolveCheckpointDir(path.join(o.out, 'checkpoint')) !== null;
    const { trainOnFile, readTrainerState, TrainingInterrupted, plotMetrics, Progress, describeSkipped } = await import('./train');
    const { defaultComputeDtype } = await import('./index');
    if (residualDtype === 'bfloat16' && (dtype ?? defaultComputeDtype(spec)) !== 'bfloat16')
      fail(`--residual-dtype bf16 needs bf16 compute (--dtype bf16; the default on ${spec} is ${defaultComputeDtype(spec) === 'bfloat16' ? 'bf16' : 'fp32'}): in fp32 compute the stream is fp32`);
    // the LLM and the tower frozen for the whole run (LoRA, or projector-only): loaded in bf16 when they are stored so,
    // so a 7B base never exists in float32 (the Trainer would store them so at the stage's start anyway)
    const frozenStorage = frozenDtype ?? dtype ?? defaultComputeDtype(spec);
    const weightDtype = frozenStorage === 'bfloat16' && !parts.includes('llm') && !parts.includes('vision') ? 'bfloat16' : 'float32';
    // --pif / --no-pif pick the variant of a released checkpoint (--init); a resume continues the run's own variant
    if (o.resume && o.pif !== undefined) {
      const recorded = (JSON.parse(fs.readFileSync(path.join(from, 'config.json'), 'utf8')) as { vm_pif?: unknown }).vm_pif;
      if (typeof recorded === 'boolean' && recorded !== o.pif)
        fail(`--resume: the run trains ${recorded ? 'the PIF variant' : 'without PIF'} (vm_pif ${recorded} in ${path.join(from, 'config.json')}), and ${o.pif ? '--pif' : '--no-pif'} would switch it mid-run: resume without it`);
    }
    const { model, config, tokenizerPath } = loadCheckpoint(from, { device: spec, weightDtype, pif: o.pif });
    if (!tokenizerPath) fail(`checkpoint ${from} has no tokenizer.json`);
    // (--lora-r 1e12 failed as "Invalid typed array length"; a million on 32-wide layers ran for minutes a step)
    if (o.loraR !== undefined && o.loraR > config.llm.hiddenSize)
      fail(`--lora-r ${o.loraR} is more than the LLM's hidden size ${config.llm.hiddenSize}: an adapter's rank is at most its layer's width (LLaVA-1.5: r 128 on 4096)`);
    const tokenizer = await openTokenizer(tokenizerPath, config.llm.vocabSize);
    const resume = o.resume ? readTrainerState(from) : undefined;
    // a rank of a data-parallel run (mpirun, torchrun-style variables, --nproc-per-node): rank 0 alone reports
    const lead = (group?.rank ?? 0) === 0;
    const progress = new Progress(10, process.stdout, { kl: config.vmWeight > 0 }); // onLog runs on rank 0 only
    const t0 = Date.now();
    let nonFiniteSteps = 0;
    let result: Awaited<ReturnType<typeof trainOnFile>>;
    try {
      result = await trainOnFile(model, tokenizer, from, {
        data: o.data, imageFolder: o.imageFolder, outDir: o.out, steps: o.steps, epochs: o.epochs, batchSize: o.batchSize, gradAccum: o.gradAccum,
        lr: o.lr, visionTowerLr: o.mmVisionTowerLr, projectorLr: o.mmProjectorLr, warmupRatio: o.warmupRatio, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, seed: o.seed, saveEvery: o.saveEvery,
        trainable: Object.fromEntries(known.map((p) => [TRAINABLE_PARTS[p], parts.includes(p)])), stage: o.stage,
        lora: o.loraR !== undefined ? { r: o.loraR, alpha: o.loraAlpha ?? 2 * o.loraR, dropout: o.loraDropout } : undefined,
        strict: !!o.strict, modelMaxLength: o.modelMaxLength, verifyImages: o.verifyImages as 'decode' | 'header', groupByModalityLength: !!o.groupByModalityLength, template: template as never, imageAspect: o.imageAspectRatio as 'square' | 'pad' | undefined, resume, handleSignals: true, nonFinite: o.nonFinite as 'skip' | 'stop', gradientCheckpointing: !!o.gradientCheckpointing, residualDtype, dtype, frozenDtype, replay: o.replay,
        processGroup: group ?? undefined, gatherDtype, onPrepareProgress: lead ? preparationReport(o.data) : undefined,
        logEvery: o.loggingSteps, reportTo, loggingDir: o.loggingDir,
        // a resume's --init is the run's (checked above): each checkpoint says where the run started and how
        extraFiles: { [TRAIN_ARGS]: JSON.stringify({ vwlmm: require('../package.json').version as string, init: realPathOf(o.init), command: ['vwlmm', ...commandArgs()], options: o }, null, 2) + '\n' },
        onLog: (r) => {
          progress.update(r);
          if (r.type === 'nonfinite') {
            nonFiniteSteps++;
            process.stderr.write(`vwlmm: non-finite ${String(r.what)} at stage '${String(r.stage)}' step ${String(r.step)}, sample indices [${(r.samples as number[]).join(', ')}]: ${String(r.detail)}; ${r.action === 'stop' ? 'stopping' : 'update skipped'}\n`);
          }
        },
      });
    } catch (e) {
      progress.stop();
      if (e instanceof TrainingInterrupted) {
        await exitInterrupted(e, group);
      }
      throw e;
    }
    progress.stop();
    group?.destroy();
    if (!lead) return model.dispose();
    const { data, state } = result;
    const plotted = await plotMetrics(path.join(o.out, 'metrics.jsonl'), path.join(o.out, 'loss_curve.png'), `vwlmm train ${path.basename(o.data)}`);
    // a resumed run's time is of the steps it ran itself
    const since = resume ? ` (${state.globalStep - resume.state.globalStep} of them in this run, resumed at step ${resume.state.globalStep})` : '';
    // (batches are always full: each optimizer step takes batch size x grad accumulation x ranks samples)
    const seen = state.globalStep * o.batchSize * o.gradAccum * (group?.worldSize ?? 1);
    // a resume of a run that had already finished trains nothing: said so, not as "trained N steps in 0 s"
    if (resume && resume.state.globalStep === state.globalStep) console.log(`the run in ${o.out} was already complete at global step ${state.globalStep}: nothing to train (its checkpoint ${path.join(o.out, 'checkpoint')} is unchanged)`);
    else console.log(`trained ${state.globalStep} step${state.globalStep === 1 ? '' : 's'}${since} on ${seen} samples (${epochsShown(seen / data.samples.length)} epochs of the ${data.samples.length}) in ${((Date.now() - t0) / 1000).toFixed(0)} s; skipped ${data.skipped.length} records, ${data.mismatches} tokenization mismatches, ${data.truncated} samples cut to the model max length, ${state.skippedSteps ?? 0} steps with a non-finite loss or gradient${nonFiniteSteps !== (state.skippedSteps ?? 0) ? ` (${nonFiniteSteps} in this run)` : ''}; checkpoint ${path.join(o.out, 'checkpoint')}`);
    // where each record stands (ids need not be unique), and its id
    const at = (r: { id?: string; line?: number; index?: number }) =>
      `${r.line !== undefined ? `${o.data}:${r.line}` : r.index !== undefined ? `${o.data}[${r.index}]` : 'record'}${r.id !== undefined ? ` (record '${r.id}')` : ''}`;
    for (const s of data.skipped.slice(0, 10)) console.log(`  skipped ${at(s)}: ${s.reason}`);
    if (data.skipped.length > 10) console.log(`  ... and ${data.skipped.length - 10} more: ${describeSkipped(data, o.data)}`);
    for (const m of data.mismatched.slice(0, 10)) console.log(`  tokenization mismatch ${at(m)} (${m.kept ? 'trained with every label ignored, as LLaVA does: its image for the KL' : 'left out: text only, nothing to train'}): ${m.reason}`);
    if (data.mismatched.length > 10) console.log(`  ... and ${data.mismatched.length - 10} more tokenization mismatches`);
    if (!plotted) console.log(`  no loss curve: no step logged a finite loss (${path.join(o.out, 'metrics.jsonl')})`);
    model.dispose();
    // a run in which no step updated the weights did not train: an exit status of 0 would say it did
    const ranSteps = state.globalStep - (resume?.state.globalStep ?? 0);
    if (ranSteps > 0 && nonFiniteSteps === ranSteps) {
      process.stderr.write(`vwlmm: every step of this run (${ranSteps}) had a non-finite loss or gradient and was skipped: the weights were not updated (the messages above say where)\n`);
      process.exitCode = 1;
    }
  });

program.command('answer').description("answer a LLaVA question file (model_vqa_loader's JSONL: question_id, image, text; ScienceQA's JSON; an MMBench TSV) into an answers file, greedily, resumable")
  .requiredOption('--checkpoint <dir>', 'checkpoint directory')
  .requiredOption('--questions <file>', 'question JSONL (--format science: JSON; mmbench: the TSV with base64 images)')
  .option('--image-folder <dir>', 'folder the image paths are relative to', '.')
  .requiredOption('--answers <file>', 'answers JSONL (appended to; questions already answered in it, by question_id and prompt, are skipped)')
  .option('--conv-mode <name>', "conversation template (LLaVA's --conv-mode; default the checkpoint's)")
  .option('--format <f>', "the LLaVA loader: vqa_loader (question JSONL), science (ScienceQA's JSON, as model_vqa_science) or mmbench (MMBench's TSV, as model_vqa_mmbench: hint, options A-D)", 'vqa_loader')
  .option('--single-pred-prompt', "science, mmbench: ask for the option's letter directly (LLaVA's --single-pred-prompt)")
  .option('--lang <l>', 'mmbench: en or cn, the language of --single-pred-prompt (cn for MMBench-CN)', 'en')
  .option('--all-rounds', "mmbench: ask each question once per rotation of its options (LLaVA's --all-rounds: circular evaluation)")
  .option('--num-chunks <n>', 'split the questions into n chunks (as LLaVA)', int('--num-chunks', 1), 1)
  .option('--chunk-idx <i>', 'answer chunk i', int('--chunk-idx', 0), 0)
  .option('--max-new-tokens <n>', 'generation budget per answer', int('--max-new-tokens', 1), 128)
  .option('--batch-size <n>', 'questions per batch (and per flush of the answers file)', int('--batch-size', 1), 16)
  .option('--strict', 'stop on the first broken line or missing image instead of counting it')
  .option('--device <d>', DEVICE_HELP, 'cpu')
  .option('--adapter <dir>', 'a LoRA adapter (PEFT format) to apply on the checkpoint')
  .option('--dtype <d>', DTYPE_HELP)
  .option('--pif', PIF_HELP)
  .option('--no-pif', NO_PIF_HELP)
  .action(async (o: { pif?: boolean; checkpoint: string; questions: string; imageFolder: string; answers: string; convMode?: string; numChunks: number; chunkIdx: number; maxNewTokens: number; batchSize: number; strict?: boolean; device: string; adapter?: string; dtype?: string; format: string; singlePredPrompt?: boolean; lang: string; allRounds?: boolean }) => {
    await existingCheckpoint(o.checkpoint);
    existing(o.questions, 'questions', 'file');
    if (o.format !== 'vqa_loader' && o.format !== 'science' && o.format !== 'mmbench') fail(`--format must be vqa_loader, science or mmbench, got ${o.format}`);
    if (o.lang !== 'en' && o.lang !== 'cn') fail(`--lang must be en or cn, got ${o.lang}`);
    if (o.format !== 'mmbench' && (o.lang !== 'en' || o.allRounds)) fail(`--lang and --all-rounds are for --format mmbench (got --format ${o.format})`);
    if (o.format === 'vqa_loader' && o.singlePredPrompt) fail("--single-pred-prompt is for --format science and mmbench (model_vqa_loader takes the question text as it is)");
    existing(o.imageFolder, 'image folder', 'dir');
    if (o.chunkIdx >= o.numChunks) fail(`--chunk-idx ${o.chunkIdx} must be below --num-chunks ${o.numChunks}`);
    if (fs.existsSync(o.answers) && !fs.statSync(o.answers).isFile()) fail(`answers ${o.answers} is not a file`);
    const { answerQuestions, modelIdOf } = await import('./eval');
    const { model, config, tokenizerPath } = await loadWithAdapter(o.checkpoint, o.device, o.adapter, await computeDtypeOf(o.dtype), o.pif);
    if (!tokenizerPath) fail(`checkpoint ${o.checkpoint} has no tokenizer.json`);
    const tokenizer = await openTokenizer(tokenizerPath, config.llm.vocabSize);
    const r = await answerQuestions(model, tokenizer, {
      questions: o.questions, format: o.format as 'vqa_loader' | 'science' | 'mmbench', singlePredPrompt: !!o.singlePredPrompt, lang: o.lang as 'en' | 'cn', allRounds: !!o.allRounds, imageFolder: o.imageFolder, answers: o.answers, modelId: modelIdOf(o.checkpoint, o.adapter),
      template: o.convMode as never, maxNewTokens: o.maxNewTokens, batchSize: o.batchSize, numChunks: o.numChunks, chunkIdx: o.chunkIdx, strict: !!o.strict, dtype: await computeDtypeOf(o.dtype),
      onProgress: (p) => process.stderr.write(`\ranswered ${p.done}/${p.total}  ${p.answersPerSec.toFixed(2)} answers/s, ${p.tokensPerSec.toFixed(1)} tokens/s, ETA ${Math.round(p.etaSec)} s   `),
    });
    process.stderr.write('\n');
    // the skipped questions counted by reason, with the first of each (one summary for train, eval and answer)
    const { describeSkipped } = await import('./train');
    const skipped = r.skipped.length ? describeSkipped({ skipped: r.skipped }, o.questions) : '';
    if (r.answered === 0 && r.skipped.length > 0 && r.resumed === 0) fail(`no question of ${o.questions} could be answered: ${skipped}`);
    // answered + already there + skipped questions = the questions; the entries that are no question come apart, and
    // the closing list has both kinds
    const entry = o.format === 'mmbench' ? 'row' : o.format === 'science' ? 'record' : 'line';
    const unread = r.unreadable ? `; ${r.unreadable} ${entry}${r.unreadable === 1 ? '' : 's'} of ${o.questions} not read as a question` : '';
    const notAnswered = r.skipped.length - r.unreadable;
    // lines kept by the resume that answer none of these questions: an edited question file leaves its old answers
    const stale = r.unmatched ? `; ${r.unmatched} line${r.unmatched === 1 ? '' : 's'} of ${o.answers} answer${r.unmatched === 1 ? 's' : ''} no question of ${o.questions} (another question file's, or questions changed since: they stay, and a scorer reads them)` : '';
    console.log(`answered ${r.answered} of ${r.total} questions (${r.resumed} already in ${o.answers}${notAnswered ? `, ${notAnswered} skipped` : ''}) in ${r.seconds.toFixed(1)} s${unread}${skipped ? `; ${skipped}` : ''}${stale}`);
    model.dispose();
  });

// `vwlmm score <benchmark>`: the official LLaVA-1.5 scorers on an answers file (src/eval/scorers.ts), printing what
// they print; --json: one object of the numbers instead.
const score = program.command('score').description("score LLaVA answer files as LLaVA-1.5's official scripts do (textvqa, pope, sqa, gqa, mme, seed), or convert them for a server (vqav2, vizwiz, mmbench, mmbench_cn, mmvet); sort-of-clevr: as `vwlmm eval` scores");
score.command('textvqa').description("eval_textvqa.py: EvalAI answer processing and the VQA accuracy")
  .requiredOption('--answers <path>', 'answers (JSONL: question_id, prompt, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .requiredOption('--annotations <file>', 'TextVQA_0.5.1_val.json')
  .option('--json', 'print one JSON object')
  .action(async (o: { answers: string; annotations: string; json?: boolean }) => {
    const { scoreTextVQA } = await import('./eval');
    const r = scoreTextVQA(o.answers, o.annotations);
    process.stdout.write(o.json ? JSON.stringify({ experiment: r.experiment, samples: r.samples, accuracy: r.accuracy }) + '\n' : r.report);
  });
score.command('pope').description('eval_pope.py: yes/no from the first sentence; accuracy, precision, recall, F1, yes-ratio per category')
  .requiredOption('--answers <path>', 'answers (JSONL: question_id, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .requiredOption('--questions <file>', 'llava_pope_test.jsonl (question_id, category)')
  .requiredOption('--annotations <dir>', 'the folder of coco_pope_<category>.json label files')
  .option('--json', 'print one JSON object')
  .action(async (o: { answers: string; questions: string; annotations: string; json?: boolean }) => {
    const { scorePope } = await import('./eval');
    const r = scorePope(o.answers, o.questions, o.annotations);
    process.stdout.write(o.json ? JSON.stringify({ categories: r.categories }) + '\n' : r.report);
  });

score.command('sqa').description('eval_science_qa.py: option letters parsed from the answers; accuracy and IMG-accuracy')
  .requiredOption('--base-dir <dir>', "ScienceQA's data folder (problems.json, pid_splits.json)")
  .requiredOption('--answers <path>', 'answers (JSONL: question_id, prompt, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .option('--split <name>', 'the split of pid_splits.json', 'test')
  .option('--output-file <file>', 'write the correct / incorrect analyses (as the official --output-file)')
  .option('--output-result <file>', 'write acc, correct, count and the parsed answers (as the official --output-result)')
  .option('--json', 'print one JSON object')
  .action(async (o: { baseDir: string; answers: string; split: string; outputFile?: string; outputResult?: string; json?: boolean }) => {
    const { scoreScienceQA } = await import('./eval');
    if (o.outputFile) outputFile('--output-file', o.outputFile);
    if (o.outputResult) outputFile('--output-result', o.outputResult);
    const r = scoreScienceQA(o.baseDir, o.answers, o.split);
    for (const [file, text] of [[o.outputFile, r.outputFile], [o.outputResult, r.outputResult]] as const) {
      if (!file) continue;
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      fs.writeFileSync(file, text);
    }
    process.stdout.write(o.json ? JSON.stringify({ total: r.total, correct: r.correct, accuracy: r.accuracy, imgAccuracy: r.imgAccuracy }) + '\n' : r.report);
  });

// The conversions before a server or an external grader scores (LLaVA's scripts/convert_*.py): write --submission and
// print what the script prints.
for (const [name, desc, needs] of [
  ['vqav2', "convert_vqav2_for_submission.py: EvalAI-processed answers for every test-dev question ('' when unanswered)", '--questions <file>'],
  ['vizwiz', 'convert_vizwiz_for_submission.py: image and EvalAI-processed answer per question', '--annotations <file>'],
  ['mmvet', "convert_mmvet_for_eval.py: {v1_<id>: answer} for MM-Vet's grader", null],
] as const) {
  const c = score.command(name).description(desc).requiredOption('--answers <path>', 'answers (JSONL: question_id, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)').requiredOption('--submission <file>', 'the file to write');
  if (needs) c.requiredOption(needs, needs.startsWith('--questions') ? 'llava_vqav2_mscoco_test2015.jsonl (question_id per line)' : 'VizWiz llava_test.jsonl (question_id, image per line)');
  c.action(async (o: { answers: string; submission: string; questions?: string; annotations?: string }) => {
    outputFile('--submission', o.submission);
    const ev = await import('./eval');
    const r = name === 'vqav2' ? ev.vqav2Submission(o.answers, o.questions!) : name === 'vizwiz' ? ev.vizwizSubmission(o.answers, o.annotations!)
      : ev.mmvetSubmission(o.answers);
    fs.mkdirSync(path.dirname(path.resolve(o.submission)), { recursive: true });
    fs.writeFileSync(o.submission, r.file);
    process.stdout.write(r.report);
  });
}
score.command('gqa').description("convert_gqa_for_eval.py, then GQA's eval.py on testdev_balanced: accuracy, binary / open, per structural and semantic type, steps and words, distribution; --submission writes the predictions file")
  .requiredOption('--answers <path>', 'answers (JSONL: question_id, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .option('--questions <file>', "GQA's testdev_balanced_questions.json: score the answers")
  .option('--submission <file>', 'write the predictions file eval.py reads (testdev_balanced_predictions.json)')
  .option('--consistency', "eval.py's --consistency: entailed-question consistency (every question of the file needs an answer)")
  .option('--json', 'print one JSON object')
  .action(async (o: { answers: string; questions?: string; submission?: string; consistency?: boolean; json?: boolean }) => {
    if (!o.questions && !o.submission) fail('score gqa: give --questions to score the answers, --submission to write the predictions file, or both');
    if (o.submission) outputFile('--submission', o.submission);
    const { gqaSubmission, scoreGQA } = await import('./eval');
    if (o.submission) {
      const r = gqaSubmission(o.answers);
      fs.mkdirSync(path.dirname(path.resolve(o.submission)), { recursive: true });
      fs.writeFileSync(o.submission, r.file);
    }
    if (!o.questions) return;
    const r = scoreGQA(o.answers, o.questions, { consistency: o.consistency });
    const { report, ...numbers } = r;
    process.stdout.write(o.json ? JSON.stringify(numbers) + '\n' : report);
  });
score.command('mme').description("convert_answer_to_mme.py, then MME's calculation.py: acc and acc+ per subtask, score = (acc + acc+) x 100, perception and cognition totals")
  .requiredOption('--answers <path>', 'answers (JSONL: question_id, prompt, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .requiredOption('--benchmark <dir>', "MME_Benchmark_release_version (its question files hold the ground truth)")
  .option('--questions <file>', 'llava_mme.jsonl: check that every question has an answer')
  .option('--out <dir>', "write the eval_tool's per-subtask files there, as convert_answer_to_mme.py does")
  .option('--json', 'print one JSON object')
  .action(async (o: { answers: string; benchmark: string; questions?: string; out?: string; json?: boolean }) => {
    if (o.out) outputFolder('--out', o.out);
    const { scoreMME } = await import('./eval');
    const r = scoreMME(o.answers, o.benchmark, o.questions);
    if (o.out) {
      fs.mkdirSync(o.out, { recursive: true });
      for (const [category, text] of r.files) fs.writeFileSync(path.join(o.out, `${category}.txt`), text);
    }
    process.stdout.write(o.json ? JSON.stringify({ perception: r.perception, cognition: r.cognition }) + '\n' : r.report);
  });
// MMBench and MMBench-CN are scored by OpenCompass's server from an .xlsx (convert_mmbench_for_submission.py: the same for both)
for (const [name, tsv] of [['mmbench', 'mmbench_dev_20230712.tsv'], ['mmbench_cn', 'mmbench_dev_cn_20231003.tsv']] as const) {
  score.command(name).description(`convert_mmbench_for_submission.py: the ${tsv} rows with each index's prediction (the last answer line of it: with --all-rounds, the last round), as the .xlsx to upload`)
    .requiredOption('--answers <path>', 'answers (JSONL: question_id, round_id, text; from answer --format mmbench; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
    .requiredOption('--annotations <file>', `the MMBench TSV answered (${tsv})`)
    .requiredOption('--submission <file>', 'the .xlsx to write')
    .action(async (o: { answers: string; annotations: string; submission: string }) => {
      outputFile('--submission', o.submission);
      const { mmbenchSubmission } = await import('./eval');
      const r = mmbenchSubmission(o.answers, o.annotations);
      fs.mkdirSync(path.dirname(path.resolve(o.submission)), { recursive: true });
      fs.writeFileSync(o.submission, r.xlsx);
      process.stdout.write(r.report); // the script prints nothing; what was written goes to stderr
      process.stderr.write(`wrote ${o.submission}: ${r.count.rows} rows, ${r.count.predicted} with a prediction, from ${r.count.answers} answer lines (${r.count.unmatched} with an id that is no row's index)\n`);
    });
}
score.command('seed').description('convert_seed_for_submission.py: accuracy by question type, total, image and video; the upload file')
  .requiredOption('--answers <path>', 'answers (JSONL: question_id, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .requiredOption('--annotations <file>', "SEED-Bench's SEED-Bench.json")
  .requiredOption('--submission <file>', 'the upload file to write (JSON lines)')
  .option('--json', 'print one JSON object')
  .action(async (o: { answers: string; annotations: string; submission: string; json?: boolean }) => {
    outputFile('--submission', o.submission);
    const { scoreSeed } = await import('./eval');
    const r = scoreSeed(o.answers, o.annotations);
    fs.mkdirSync(path.dirname(path.resolve(o.submission)), { recursive: true });
    fs.writeFileSync(o.submission, r.file);
    process.stdout.write(o.json ? JSON.stringify({ byType: r.byType, total: r.total, image: r.image, video: r.video }) + '\n' : r.report);
  });

/** The summary of `eval` and `score sort-of-clevr` (one scorer behind both: src/eval/llava_eval.ts). */
function printEvalResult(r: import('./eval').EvalResult, data: string, json: boolean | undefined) {
  if (json) console.log(JSON.stringify({ accuracy: r.accuracy, count: r.count, categories: r.categories, groups: r.groups, skipped: r.skipped.length, answers: r.answers }));
  else {
    console.log(`accuracy ${(100 * r.accuracy).toFixed(2)}% over ${r.count} records${r.skipped.length ? ` (${r.skipped.length} skipped)` : ''}`);
    for (const [k, v] of Object.entries(r.groups)) console.log(`  ${k.padEnd(14)} ${(100 * v.accuracy).toFixed(2)}%  (${v.count})`);
    for (const [k, v] of Object.entries(r.categories)) console.log(`  ${k.padEnd(14)} ${(100 * v.accuracy).toFixed(2)}%  (${v.count})`);
    for (const s of r.skipped.slice(0, 10)) console.log(`  skipped ${s.id ?? (s.line !== undefined ? `${data}:${s.line}` : '?')}: ${s.reason}`);
    if (r.answers) console.log(`answers ${r.answers}${r.resumed ? ` (${r.resumed} of them there already)` : ''}`);
  }
}

// `score sort-of-clevr`: what `eval` scores, from an answers file alone (`eval --answers`, or `answer` on eval's questions)
score.command('sort-of-clevr').description("exact match after normalisation (VQA soft accuracy where a record has 10 answers) of an answers file against a LLaVA-format file's last assistant turns, per category: what `vwlmm eval` reports, without generating")
  .requiredOption('--answers <path>', 'answers (JSONL: question_id = the record id, text; or a folder of chunk files <chunks>_<index>.jsonl, merged in order as the LLaVA eval scripts do)')
  .requiredOption('--data <file>', 'the LLaVA JSON / JSONL file answered (Sort-of-CLEVR: test.json)')
  .option('--limit <n>', 'score the first n records', int('--limit', 1))
  .option('--json', 'print one JSON object')
  .action(async (o: { answers: string; data: string; limit?: number; json?: boolean }) => {
    existing(o.answers, 'answers', 'path');  // a file, or a folder of chunk files
    existing(o.data, 'data file', 'file');
    const { scoreLlavaAnswers } = await import('./eval');
    const r = scoreLlavaAnswers(o.answers, o.data, { limit: o.limit });
    // as `eval`: an accuracy over no record is no result (an answers file of another data file, or an empty one)
    if (r.count === 0 && r.skipped.length > 0) {
      const { describeSkipped } = await import('./train');
      fail(`no record of ${o.data} could be scored against ${o.answers}: ${describeSkipped(r, o.data)}`);
    }
    printEvalResult(r, o.data, o.json);
  });

program.command('eval').description('exact-match (or VQA soft) accuracy of a checkpoint on a LLaVA-format file: answers its questions into an answers file (as `vwlmm answer`), then scores it (as `vwlmm score sort-of-clevr`)')
  .requiredOption('--checkpoint <dir>', 'checkpoint directory')
  .requiredOption('--data <file>', 'LLaVA JSON / JSONL file whose last assistant turn is the answer')
  .option('--image-folder <dir>', 'folder the image paths are relative to', '.')
  .option('--answers <file>', 'write the answers there and keep them (LLaVA answer lines; a rerun skips the records answered already); default a temporary file')
  .option('--limit <n>', 'evaluate the first n records', int('--limit', 1))
  .option('--max-new-tokens <n>', 'generation budget per answer', int('--max-new-tokens', 1), 16)
  .option('--strict', 'fail on the first broken record or image instead of skipping it')
  .option('--json', 'print one JSON object')
  .option('--device <d>', DEVICE_HELP, 'cpu')
  .option('--adapter <dir>', 'a LoRA adapter (PEFT format) to apply on the checkpoint')
  .option('--dtype <d>', DTYPE_HELP)
  .option('--pif', PIF_HELP)
  .option('--no-pif', NO_PIF_HELP)
  .action(async (o: { pif?: boolean; checkpoint: string; data: string; imageFolder: string; answers?: string; limit?: number; maxNewTokens: number; strict?: boolean; json?: boolean; device: string; adapter?: string; dtype?: string }) => {
    await existingCheckpoint(o.checkpoint);
    existing(o.data, 'data file', 'file');
    existing(o.imageFolder, 'image folder', 'dir');
    if (o.answers && fs.existsSync(o.answers) && !fs.statSync(o.answers).isFile()) fail(`answers ${o.answers} is not a file`);
    const { evaluateFile, modelIdOf } = await import('./eval');
    const { model, config, tokenizerPath } = await loadWithAdapter(o.checkpoint, o.device, o.adapter, await computeDtypeOf(o.dtype), o.pif);
    if (!tokenizerPath) fail(`checkpoint ${o.checkpoint} has no tokenizer.json`);
    const r = await evaluateFile(model, await openTokenizer(tokenizerPath, config.llm.vocabSize), o.data, o.imageFolder, {
      limit: o.limit, maxNewTokens: o.maxNewTokens, strict: o.strict, dtype: await computeDtypeOf(o.dtype), answers: o.answers, modelId: modelIdOf(o.checkpoint, o.adapter),
    });
    if (r.count === 0 && r.skipped.length > 0) {
      const { describeSkipped } = await import('./train');
      fail(`no record of ${o.data} could be evaluated: ${describeSkipped(r, o.data)}${o.imageFolder === '.' ? ' (no --image-folder given: image paths are read relative to the current directory)' : ''}`);
    }
    printEvalResult(r, o.data, o.json);
    model.dispose();
  });

program.command('generate').description('answer a prompt about an image with a checkpoint')
  .requiredOption('--checkpoint <dir>', 'checkpoint directory')
  .requiredOption('--prompt <text>', 'the question')
  .option('--image <file>', 'image file (PNG/JPEG/WebP)')
  .option('--max-new-tokens <n>', "generation budget (the official VW-LMM inference.py's 128)", int('--max-new-tokens', 1), 128)
  .option('--conv-mode <name>', "conversation template (LLaVA's --conv-mode: plain, vicuna_v1, mistral, ...; default the checkpoint's)")
  .option('--temperature <t>', '0 = greedy; > 0 samples (transformers do_sample)', num('--temperature'), 0)
  .option('--top-p <p>', 'nucleus sampling mass', num('--top-p'), 1)
  .option('--top-k <k>', "sample from the k largest logits only (0 = off; transformers' generate defaults to 50 when sampling, and LLaVA's run_llava passes none, so it samples with 50)", int('--top-k'), 0)
  .option('--seed <n>', 'sampling seed', seedOption('--seed'), 0)
  .option('--device <d>', DEVICE_HELP, 'cpu')
  .option('--adapter <dir>', 'a LoRA adapter (PEFT format) to apply on the checkpoint')
  .option('--dtype <d>', DTYPE_HELP)
  .option('--pif', PIF_HELP)
  .option('--no-pif', NO_PIF_HELP)
  .option('--json', "print one JSON object: the prompt, its token ids (the image as LLaVA's placeholder -200, once), the ids generated (without the EOS that ends them) and the text")
  .action(async (o: { pif?: boolean; convMode?: string; checkpoint: string; prompt: string; image?: string; maxNewTokens: number; temperature: number; topP: number; topK: number; seed: number; device: string; adapter?: string; dtype?: string; json?: boolean }, cmd: Command) => {
    await existingCheckpoint(o.checkpoint);
    if (o.image) existing(o.image, 'image', 'file');
    if (o.topP <= 0 || o.topP > 1) fail('--top-p must be in (0, 1]');
    if (o.temperature < 0) fail('--temperature must be >= 0');
    // as transformers warns when do_sample is off: the sampling settings of a greedy run change nothing
    const unused = ([['topK', '--top-k'], ['topP', '--top-p'], ['seed', '--seed']] as const).filter(([k]) => cmd.getOptionValueSource(k) === 'cli').map(([, f]) => f);
    if (o.temperature === 0 && unused.length) process.stderr.write(`vwlmm: ${unused.join(', ')} ${unused.length > 1 ? 'are' : 'is'} for sampling (--temperature > 0); with --temperature 0 the answer is greedy and ${unused.length > 1 ? 'they change' : 'it changes'} nothing\n`);
    // the prompt is `vwlmm answer`'s (LLaVA's eval loaders, run_llava): "<image>\n" + the question as it is; a question
    // holding "<image>" itself would make two placeholders for one image (answer skips such a question)
    const placeholders = (s: string) => s.split('<image>').length - 1;
    if (placeholders(o.prompt) > 0) fail(`--prompt holds "<image>": the prompt would hold ${placeholders(o.prompt) + (o.image ? 1 : 0)} image placeholders for ${o.image ? 'one image (--image)' : 'no image'}; give the question alone (the image goes in front of it)`);
    const { loadImage, preprocessClip, getTemplate } = await import('./data');
    const { clipPreprocessOptions } = await import('./model');
    if (o.convMode !== undefined) getTemplate(o.convMode as never); // an unknown name fails here, before the model loads
    const { model, config, tokenizerPath } = await loadWithAdapter(o.checkpoint, o.device, o.adapter, await computeDtypeOf(o.dtype), o.pif);
    if (!tokenizerPath) fail(`checkpoint ${o.checkpoint} has no tokenizer.json`);
    const tok = await openTokenizer(tokenizerPath, config.llm.vocabSize);
    const pixels = o.image ? await preprocessClip(await loadImage(o.image), clipPreprocessOptions(config)) : null;
    const { answerOneDetails } = await import('./eval');
    const answer = answerOneDetails(model, tok, o.prompt, pixels, { template: o.convMode as never, maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, dtype: await computeDtypeOf(o.dtype) });
    console.log(o.json ? JSON.stringify(answer) : answer.text);
    model.dispose();
  });

program.command('visual-words').description('top-k visual words of every patch (JSON on stdout) and a picture with the top-1 word on each patch')
  .requiredOption('--checkpoint <dir>', 'checkpoint directory')
  .requiredOption('--image <files...>', 'image file(s): the model is loaded once for all; one JSON line each, in order')
  .option('--top-k <k>', 'words per patch (up to the vocabulary: every word, for a map of one word over the image)', int('--top-k', 1), 5)
  .option('--out <path>', 'where to write the picture (.png, .jpg, .jpeg or .webp), on the image as the model saw it; for several images a folder, each picture named after its image (<name>.png)', 'visual_words.png')
  .option('--no-picture', 'the JSON alone, no picture')
  .option('--device <d>', DEVICE_HELP, 'cpu')
  .option('--adapter <dir>', 'a LoRA adapter (PEFT format) to apply on the checkpoint')
  .option('--pif', PIF_HELP)
  .option('--no-pif', NO_PIF_HELP)
  .action(async (o: { pif?: boolean; checkpoint: string; image: string[]; topK: number; out: string; picture: boolean; device: string; adapter?: string }, cmd: Command) => {
    await existingCheckpoint(o.checkpoint);
    for (const f of o.image) existing(f, 'image', 'file');
    const outGiven = cmd.getOptionValueSource('out') === 'cli';
    if (!o.picture && outGiven) fail('--out names the picture, which --no-picture leaves out: give one of them');
    // each image's picture: --out itself for one image, else <--out>/<the image's name>.png
    const many = o.image.length > 1;
    if (many && o.picture && !outGiven) fail(`--out: ${o.image.length} images draw ${o.image.length} pictures: give --out a folder to write them in (or --no-picture)`);
    const pictures = !o.picture ? [] : !many ? [o.out] : o.image.map((f) => path.join(o.out, `${path.parse(f).name}.png`));
    if (o.picture) {
      if (many) outputFolder('--out', o.out);
      const twice = pictures.find((p, i) => pictures.indexOf(p) !== i);
      if (twice) fail(`--out: two images are named ${path.basename(twice, '.png')} (${o.image.filter((_, i) => pictures[i] === twice).join(', ')}): their pictures would be one file; draw them in two calls`);
      // the picture's format and folder, before any work (drawVisualWords checks them again); never over an image
      const ext = path.extname(o.out);
      if (!many && !['.png', '.jpg', '.jpeg', '.webp'].includes(ext.toLowerCase())) fail(`--out ${o.out}: ${ext ? `unknown picture format '${ext}'` : 'no extension'} (give .png, .jpg, .jpeg or .webp)`);
      if (!many) outputFile('--out', o.out);
      const images = o.image.map((f) => fs.statSync(f));
      pictures.forEach((p) => {
        if (!fs.existsSync(p)) return;
        const a = fs.statSync(p), hit = images.findIndex((b) => a.dev === b.dev && a.ino === b.ino);
        if (hit >= 0) fail(`${many ? `--out ${o.out}: the picture ${p}` : `--out ${p}`} is the --image ${o.image[hit]}: the picture would replace the image; give another --out`);
      });
    }
    const { loadImage, preprocessClip } = await import('./data');
    const { clipPreprocessOptions, checkpointConfig, hasVmHead } = await import('./model');
    const { visualWordTable, patchWords, drawVisualWords } = await import('./eval');
    // what the model is, before a load of minutes (7B): a plain LLaVA has no visual words, and k its vocabulary at most
    const { config: kind, tokenizerPath } = checkpointConfig(o.checkpoint, { pif: o.pif });
    if (!hasVmHead(kind)) fail(`visual words need a vm_head: ${o.checkpoint} is a plain LLaVA model (no vm_head)`);
    if (o.topK > kind.llm.vocabSize) fail(`--top-k ${o.topK} exceeds the vocabulary's ${kind.llm.vocabSize} words`);
    if (!tokenizerPath) fail(`checkpoint ${o.checkpoint} has no tokenizer (tokenizer.json or tokenizer.model) to name the words`);
    const tok = await openTokenizer(tokenizerPath, kind.llm.vocabSize);
    const { model, config } = await loadWithAdapter(o.checkpoint, o.device, o.adapter, 'float32', o.pif);
    const v = config.vision;
    for (const [n, file] of o.image.entries()) {
      const img = await loadImage(file);
      const table = visualWordTable(model, await preprocessClip(img, clipPreprocessOptions(config)), o.topK);
      const patches = table.ids.length / table.topK;
      const picture = o.picture ? pictures[n] : null;
      if (picture) {
        fs.mkdirSync(path.dirname(path.resolve(picture)), { recursive: true });
        // the top-1 word of each patch, drawn on the view the model saw (padded or centre-cropped to the tower's square)
        const top1 = { ...table, topK: 1, ids: table.ids.filter((_, j) => j % table.topK === 0), probs: table.probs.filter((_, j) => j % table.topK === 0) };
        await drawVisualWords(img.data, img.width, img.height, Array.from({ length: patches }, (_, i) => patchWords(top1, tok, i)), table.grid, picture, { view: { size: config.image.size, mean: config.image.mean, aspect: config.image.aspect } });
      }
      // one JSON object a line, written a patch at a time: at k near the vocabulary (576 patches x 32000 words) the
      // whole text is past what one string may hold
      const head = { image: file, picture, imageSize: v.imageSize, patchSize: v.patchSize, grid: table.grid, aspect: config.image.aspect, topK: table.topK };
      await writeOut(JSON.stringify(head).slice(0, -1) + ',"patches":[');
      for (let i = 0; i < patches; i++) await writeOut((i ? ',' : '') + JSON.stringify(patchWords(table, tok, i)));
      await writeOut(']}\n');
    }
    await writeOut(null);
    model.dispose();
  });

/** A share of epochs as the train summary says it: 2 decimals, or 2 significant digits below 0.01 (not "0 epochs"). */
function epochsShown(epochs: number): number {
  return epochs >= 0.01 || epochs === 0 ? +epochs.toFixed(2) : +epochs.toPrecision(2);
}

/** stdout's error once it failed (its reader went away: EPIPE; a full disk): writeOut's listener, made at its first call. */
let stdoutError: NodeJS.ErrnoException | null = null;
let stdoutWatched = false;

/**
 * Writes `text` to stdout, waiting while the pipe is full, so that a long output is never all held in memory. A reader
 * that went away (`| head`: EPIPE) ends the command quietly, as a Unix filter ends; another failure (ENOSPC) is an
 * error, never a cut-off output and exit 0. `text` null: the output is complete (its last write's error is awaited).
 */
async function writeOut(text: string | null): Promise<void> {
  const out = process.stdout;
  if (!stdoutWatched) {
    stdoutWatched = true;
    out.on('error', (e: NodeJS.ErrnoException) => (stdoutError ??= e));
  }
  if (text !== null && !stdoutError && !out.write(text))
    await new Promise<void>((resolve) => {
      const done = () => {
        out.off('drain', done).off('error', done);
        resolve();
      };
      out.on('drain', done).on('error', done);
    });
  // a failed write's error comes on a later tick
  if (text === null) await new Promise((resolve) => setImmediate(resolve));
  if (stdoutError === null) return;
  if (stdoutError.code === 'EPIPE') process.exit(0);
  process.stderr.write(`vwlmm: cannot write the output: ${stdoutError.message}\n`);
  process.exit(1);
}

/** What merge-adapter and convert read: a checkpoint (and an adapter) written again in a layout. */
type WriteAsOptions = { pif?: boolean; checkpoint: string; adapter?: string; out: string; format: string; imageTokenIndex?: number; overwriteOutputDir?: boolean; saveDtype?: string; dropVmHead?: boolean };

/**
 * merge-adapter and convert: the checkpoint (with --adapter's LoRA) loaded and written to --out in --format, LoRA
 * adapters merged into the weights (merge-adapter refuses a model without them).
 */
async function writeCheckpointAs(command: 'merge-adapter' | 'convert', o: WriteAsOptions): Promise<void> {
  await existingCheckpoint(o.checkpoint);
  if (o.format !== 'vwlmm' && o.format !== 'transformers') fail(`--format must be vwlmm or transformers, got '${o.format}'`);
  if (o.imageTokenIndex !== undefined && o.format !== 'transformers') fail('--image-token-index is for --format transformers');
  const saveDtype = await computeDtypeOf(o.saveDtype, '--save-dtype');
  outputFolder('--out', o.out);
  // the new checkpoint replaces its folder whole: never an input's (a training checkpoint's optimizer and trainer
  // state would be lost with it), and never a run's or checkpoint's by a slip of the keyboard
  for (const [flag, dir] of [['--checkpoint', o.checkpoint], ['--adapter', o.adapter]] as const) {
    const how = dir === undefined ? null : nesting(o.out, dir);
    if (how) fail(`--out ${o.out} ${how} ${flag} ${dir}: ${command} writes a new checkpoint beside its inputs and never over them; give another --out`);
  }
  if (!o.overwriteOutputDir && fs.existsSync(o.out) && fs.statSync(o.out).isDirectory() && fs.readdirSync(o.out).length > 0)
    fail(`--out ${o.out} is not empty: ${command} writes a new checkpoint (--overwrite-output-dir replaces what is there)`);
  const { saveCheckpoint, mergeLora, loraConfigOf, hasVmHead, dropVmHead, resizeTokenEmbeddings, checkpointConfig } = await import('./model');
  // what the model is, from its config.json and its tensors' names: a refusal comes before a load of minutes (7B)
  const kind = checkpointConfig(o.checkpoint, { pif: o.pif });
  if (!kind.lora && !o.adapter && command === 'merge-adapter') fail(`no LoRA adapters: ${o.checkpoint} has none (give --adapter; \`vwlmm convert\` writes a checkpoint without them in another layout)`);
  // before the image token is looked for: the model transformers' layout cannot hold is the first thing to say
  if (o.dropVmHead && !hasVmHead(kind.config)) fail(`--drop-vm-head: ${o.checkpoint} has no vm_head (a plain LLaVA)`);
  if (o.dropVmHead && kind.config.pif) fail(`--drop-vm-head: ${o.checkpoint} is a PIF model, which feeds its image features through vm_head: without it, it would run as another model`);
  if (o.format === 'transformers' && hasVmHead(kind.config) && !o.dropVmHead)
    fail(`--format transformers is for plain LLaVA models: ${o.checkpoint} is a VW-LMM${kind.config.pif ? ' (PIF)' : ''} with a vm_head, which LlavaForConditionalGeneration has no place for (${kind.config.pif ? 'a PIF model runs through it: --format vwlmm keeps it' : '--drop-vm-head writes the LLaVA it runs as: vm_head only trains; --format vwlmm keeps it'})`);
  // transformers' layout names the image token by a vocabulary id; LLaVA's layout uses the placeholder -200
  let imageTokenIndex = o.imageTokenIndex, growTo = 0;
  if (imageTokenIndex !== undefined && imageTokenIndex >= kind.config.llm.vocabSize) fail(`--image-token-index ${imageTokenIndex} is past the vocabulary (vocab_size ${kind.config.llm.vocabSize}): give the <image> token's id`);
  if (o.format === 'transformers' && imageTokenIndex === undefined && kind.config.imageTokenIndex < 0) {
    if (!kind.tokenizerPath) fail(`--format transformers needs the <image> token as a vocabulary id: ${o.checkpoint} uses LLaVA's placeholder ${kind.config.imageTokenIndex} and has no tokenizer to find one in (give --image-token-index ID, the <image> token's id in the tokenizer used with it)`);
    const tok = await openTokenizer(kind.tokenizerPath!, kind.config.llm.vocabSize);
    const fromTokenizer = tok.tokenToId('<image>');
    // else the first row past the tokenizer's words (a padded vocabulary), as llava-hf's: the only id transformers'
    // tokenizers give an added <image> (saveCheckpoint adds it)
    imageTokenIndex = fromTokenizer ?? tok.vocabSize;
    // no row past the words: the vocabulary grows to the next multiple of 64, as transformers' convert_llava_weights_to_hf
    // pads it (32064 for 32000 words), the new rows at the mean of the others (resizeTokenEmbeddings)
    if (fromTokenizer === null && tok.vocabSize >= kind.config.llm.vocabSize) growTo = Math.ceil((tok.vocabSize + 1) / 64) * 64;
    if (fromTokenizer === null)
      process.stderr.write(`vwlmm: the tokenizer has no <image> token: it is added as token ${imageTokenIndex}, the first row past its words (as in llava-hf's checkpoints)${growTo ? `; the vocabulary grows from ${kind.config.llm.vocabSize} to ${growTo} rows for it (a multiple of 64, as llava-hf's; the new rows at the mean of the others, so no greedy choice changes)` : ''}\n`);
  }
  // written in bf16 and nothing to merge: the Linear weights are loaded in bf16 already (rounded once, as the write
  // would round them: the same weights), half the memory of a 7B convert; LoRA merges in fp32 first. (Rows a grown
  // vocabulary adds are then the mean of the rounded rows.)
  const loadDtype = saveDtype === 'bfloat16' && !o.adapter && !kind.lora ? 'bfloat16' : 'float32';
  const loaded = await loadWithAdapter(o.checkpoint, 'cpu', o.adapter, loadDtype, o.pif);
  const { tokenizerPath, dir } = loaded;
  let model = loaded.model;
  const lora = loraConfigOf(model);
  if (lora) mergeLora(model);
  // each reshape frees the model it copies as it goes: one model and one parameter in memory, not two models
  if (o.dropVmHead) model = dropVmHead(model, { consume: true });
  if (growTo !== 0) model = resizeTokenEmbeddings(model, growTo, { consume: true });
  try {
    // the checkpoint's tokenizer files (a tokenizer.model, generation_config.json); without a tokenizer, its generation config
    const generation = path.join(dir, 'generation_config.json');
    const extraFiles = !tokenizerPath && fs.existsSync(generation) ? { 'generation_config.json': fs.readFileSync(generation) } : undefined;
    saveCheckpoint(o.out, model, { format: o.format as 'vwlmm' | 'transformers', tokenizer: tokenizerPath ? dir : undefined, imageTokenIndex, dtype: saveDtype, extraFiles });
  } catch (e) {
    // saveCheckpoint refuses an image token that is a word of the tokenizer (before it writes anything): the option named
    const m = (e as Error).message;
    if (m.startsWith('saveCheckpoint: imageTokenIndex ')) fail(m.replace('saveCheckpoint: imageTokenIndex', '--image-token-index').replace(/\bpass imageTokenIndex\b/, 'give --image-token-index'));
    throw e;
  }
  const adapters = lora ? `LoRA (r ${lora.r}, alpha ${lora.alpha}, ${lora.targetModules.join(', ')})` : '';
  const noVm = o.dropVmHead ? ', without its vm_head' : '', inBf16 = saveDtype === 'bfloat16' ? ', weights in bf16' : '';
  const how = [adapters ? `${adapters} merged` : '', noVm.slice(2)].filter(Boolean).join(', ');
  console.log(command === 'merge-adapter' ? `merged ${adapters} into ${o.out}${noVm}${inBf16}` : `wrote ${o.checkpoint} in the ${o.format === 'transformers' ? "transformers (LlavaForConditionalGeneration)" : 'vwlmm (LLaVA)'} layout to ${o.out}${how ? ` (${how})` : ''}${inBf16}`);
  model.dispose();
}

const FORMAT_HELP = 'vwlmm (LLaVA layout) or transformers (LlavaForConditionalGeneration with its processor files, as llava-hf: plain LLaVA models; a VW-LMM with --drop-vm-head)';
const SAVE_DTYPE_HELP = "the weights' dtype in the files: fp32 (default) or bf16 (half the bytes, as released checkpoints; config.json's torch_dtype / dtype says so)";
const IMAGE_TOKEN_HELP = "transformers format: the vocabulary id of the <image> token (default: the model's when it is one, else the tokenizer's <image> token, else the first id past the tokenizer's words, where <image> is added)";

/** The options merge-adapter and convert share, after each one's own, and the action that writes. */
const writeAs = (command: 'merge-adapter' | 'convert', c: Command) => c
  .option('--image-token-index <id>', IMAGE_TOKEN_HELP, int('--image-token-index'))
  .option('--save-dtype <d>', SAVE_DTYPE_HELP)
  .option('--drop-vm-head', "write a VW-LMM (not PIF) as the plain LLaVA it runs as, without vm_head, which only its training loss reads (what --format transformers needs)")
  .option('--overwrite-output-dir', 'replace what --out holds (else a non-empty --out is refused)')
  .option('--pif', PIF_HELP)
  .option('--no-pif', NO_PIF_HELP)
  .action((o: WriteAsOptions) => writeCheckpointAs(command, o));

writeAs('merge-adapter', program.command('merge-adapter').description('fold LoRA adapters into the weights and write a full checkpoint')
  .requiredOption('--checkpoint <dir>', 'the base checkpoint (or one trained with --lora-r, adapters inside)')
  .option('--adapter <dir>', 'a LoRA adapter (PEFT format) to apply first')
  .requiredOption('--out <dir>', 'where the merged checkpoint goes')
  .option('--format <f>', FORMAT_HELP, 'vwlmm'));

writeAs('convert', program.command('convert').description("write a checkpoint in another layout, as transformers' convert_llava_weights_to_hf.py: a LLaVA / VW-LMM checkpoint (its safetensors or .bin files) as transformers' LlavaForConditionalGeneration folder, or such a folder in LLaVA's layout")
  .requiredOption('--checkpoint <dir>', 'the checkpoint: LLaVA / VW-LMM layout (safetensors or .bin) or transformers\' (llava-hf)')
  .option('--adapter <dir>', 'a LoRA adapter (PEFT format), merged into the weights written')
  .requiredOption('--out <dir>', 'where the checkpoint goes')
  .requiredOption('--format <f>', FORMAT_HELP));

// the library's own errors already say where they come from ('vwlmm: ...'): not twice
program.parseAsync(process.argv).catch((e: Error) => fail(e.message.replace(/^vwlmm: /, '')));
