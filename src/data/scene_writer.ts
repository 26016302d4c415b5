// Sort-of-CLEVR's PNG files written off the main thread. The demo writes ~20,000 of them (its data set and the caption
// subsets only reproduce.sh reads) at ~0.6 ms each: ~12 s of the thread that, on a GPU, drives the device. Worker
// threads (scene_writer_worker.ts) write each scene's file with writeSceneImage while the caller goes on;
// the caller awaits flush() before anything reads the files. Only scenes cross over (a few numbers each), not pixels:
// the producer is ~20x faster than the encoder, so queued pixels would all be in memory at once (~340 MB).
// Same bytes as the synchronous path (the same two functions). workers 0: each file written at once, on the caller's
// thread, as before.
import * as os from 'os';
import type { Worker } from 'worker_threads';
import { checkedOptions } from '../errors';
import { Scene, writeSceneImage } from './sort_of_clevr';
import { startDataWorker } from './worker';

/** One file to write: its absolute path and the scene it shows. */
export interface SceneImageJob {
  file: string;
  scene: Scene;
}

/** Jobs go to a worker in chunks (one message each); a flush, or the next turn of the event loop, sends what is left. */
const CHUNK = 64;

/** The most image threads a writer or ClipImageWorkers starts (and VWLMM_IMAGE_WORKERS may ask for). */
export const MAX_IMAGE_WORKERS = 64;

/** A `workers` option (undefined: 0) checked: an integer in [0, MAX_IMAGE_WORKERS]. */
export function checkImageWorkers(where: string, n: number | undefined): number {
  n ??= 0;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${where}: workers must be a non-negative integer, got ${n}`);
  // each is a thread with its own V8 heap: a count far above the cores would only hang the machine starting them
  if (n > MAX_IMAGE_WORKERS) throw new RangeError(`${where}: workers must be at most ${MAX_IMAGE_WORKERS}, got ${n}`);
  return n;
}

export interface SceneImageWriterOptions {
  /** Writer threads, 0 to 64 (default 0: each file written at once on the caller's thread). */
  workers?: number;
}
const WRITER_KEYS = { workers: true } satisfies Record<keyof SceneImageWriterOptions, true>;

/**
 * How many writer threads a run can spare: the cores left by the threads that compute (the CPU engine's, or on a GPU
 * the one that drives it) and the main thread, at most 4. VWLMM_IMAGE_WORKERS overrides it.
 */
export function spareImageWorkers(computeThreads: number): number {
  const env = process.env.VWLMM_IMAGE_WORKERS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0 || n > MAX_IMAGE_WORKERS) throw new RangeError(`VWLMM_IMAGE_WORKERS must be an integer in [0, ${MAX_IMAGE_WORKERS}], got '${env}'`);
    return n;
  }
  return Math.max(0, Math.min(4, os.availableParallelism() - computeThreads - 1));
}

/** Writes scenes' PNG files on worker threads (or at once, with 0 workers); flush() waits for every file so far. */
export class SceneImageWriter {
  private readonly workers: Worker[] = [];
  private chunk: SceneImageJob[] = [];
  private next = 0;
  private posted = 0;
  private done = 0;
  private failure: Error | null = null;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private closed = false;
  /** The send of a partial chunk at the next turn of the event loop (null: none pending). */
  private sendSoon: NodeJS.Immediate | null = null;

  constructor(opts: SceneImageWriterOptions = {}) {
    const n = checkImageWorkers('SceneImageWriter', checkedOptions('SceneImageWriter', opts, WRITER_KEYS).workers);
    for (let k = 0; k < n; k++) {
      const w = startDataWorker('scene_writer_worker');
      w.on('message', (m: { done: number } | { file: string; error: string }) => {
        if ('error' in m) this.fail(new Error(`SceneImageWriter: cannot write ${m.file}: ${m.error}`));
        else this.done += m.done;
        this.settle();
      });
      w.on('error', (e) => this.fail(new Error(`SceneImageWriter: a writer thread failed: ${e.message}`)));
      w.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`SceneImageWriter: a writer thread exited (code ${code}) with files still to write`));
      });
      w.unref(); // idle writers never keep the process alive; files to write do (ref() in send, unref() in settle)
      this.workers.push(w);
    }
  }

  /** Threads that write (0: the caller's thread writes each file as it comes). */
  get threads(): number {
    return this.workers.length;
  }

  /** Files handed over and not yet written. */
  get pending(): number {
    return this.posted + this.chunk.length - this.done;
  }

  /** Renders `scene` to `file` (its folder must exist): at once with no workers, else on a worker thread. */
  write(file: string, scene: Scene): void {
    if (this.closed) throw new Error(`SceneImageWriter: write('${file}') after close()`);
    if (this.failure) throw this.failure;
    if (this.workers.length === 0) {
      writeSceneImage(file, scene);
      return;
    }
    this.chunk.push({ file, scene });
    if (this.chunk.length >= CHUNK) this.send();
    // a partial chunk goes at the next turn of the event loop, flush() or not: a script that never flushes must not
    // exit with its last files unwritten (the immediate, then the ref'd thread, keep the process alive until written)
    else this.sendSoon ??= setImmediate(() => this.send());
  }

  /** Resolves once every file handed over so far is written; rejects naming the first that could not be. */
  flush(): Promise<void> {
    this.send();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.settle();
    });
  }

  /** flush(), then the threads end (also when the flush fails). */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await Promise.all(this.workers.map((w) => w.terminate()));
    }
  }

  private send(): void {
    if (this.sendSoon) clearImmediate(this.sendSoon);
    this.sendSoon = null;
    if (this.chunk.length === 0 || this.failure) return;
    const w = this.workers[this.next++ % this.workers.length];
    w.ref();
    w.postMessage(this.chunk);
    this.posted += this.chunk.length;
    this.chunk = [];
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.settle();
  }

  private settle(): void {
    const idle = this.done >= this.posted;
    if (idle || this.failure) for (const w of this.workers) w.unref();
    if (!this.failure && !idle) return;
    const ws = this.waiters;
    this.waiters = [];
    for (const x of ws) (this.failure ? x.reject(this.failure) : x.resolve());
  }
}

// `await using w = new SceneImageWriter(...)` closes it (flush, then the threads end). No synchronous Symbol.dispose:
// it could neither wait for the files nor report one that could not be written. Left out on a runtime without
// Symbol.asyncDispose (Node before 20.4) rather than installed under the key 'undefined'.
export interface SceneImageWriter extends AsyncDisposable {}
if (typeof Symbol.asyncDispose === 'symbol') SceneImageWriter.prototype[Symbol.asyncDispose] = function (this: SceneImageWriter): Promise<void> { return this.close(); };
