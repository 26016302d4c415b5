// CLIP pixels of image files made on worker threads (clip_worker.ts): decoding (sharp's own threads) and, since the
// resize is Pillow's written in TypeScript (images.ts), resizing and normalising off the thread that trains, so the
// next batch's images are made while the current step runs (on a GPU the main thread drives the device). Only the
// file name crosses over, and the float pixels come back transferred, not copied. workers 0: on the caller's thread.
import type { Worker } from 'worker_threads';
import { checkedOptions } from '../errors';
import { checkClipOptions, ClipPreprocessOptions, loadImage, preprocessClip } from './images';
import { checkImageWorkers } from './scene_writer';
import { startDataWorker } from './worker';

export interface ClipImageWorkersOptions {
  /** Threads that make images, 0 to 64 (default 0: the caller's thread). */
  workers?: number;
}
const WORKERS_KEYS = { workers: true } satisfies Record<keyof ClipImageWorkersOptions, true>;

interface Pending {
  resolve: (pixels: Float32Array) => void;
  reject: (e: Error) => void;
  worker: number;
}

/** Makes the CLIP pixels [3, size, size] of image files, on worker threads or (0 workers) the caller's. */
export class ClipImageWorkers {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;

  /** The preprocessing options, checked (defaults filled in, aspect 'resize_crop' read as 'square'). */
  readonly preprocess: ClipPreprocessOptions;

  constructor(preprocess: ClipPreprocessOptions, opts: ClipImageWorkersOptions = {}) {
    // checked now: bad options would otherwise surface only at the first image, as an error of a worker thread
    this.preprocess = checkClipOptions('ClipImageWorkers', preprocess);
    const n = checkImageWorkers('ClipImageWorkers', checkedOptions('ClipImageWorkers', opts, WORKERS_KEYS).workers);
    for (let k = 0; k < n; k++) {
      const w = startDataWorker('clip_worker', this.preprocess);
      w.on('message', (m: { id: number; pixels: Float32Array } | { id: number; error: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.settle(p.worker);
        if ('error' in m) p.reject(new Error(m.error));
        else p.resolve(m.pixels);
      });
      w.on('error', (e) => this.failAll(k, new Error(`ClipImageWorkers: an image thread failed: ${e.message}`)));
      w.on('exit', (code) => {
        if (!this.closed) this.failAll(k, new Error(`ClipImageWorkers: an image thread exited (code ${code}) with images to make`));
      });
      w.unref(); // an idle thread never keeps the process alive; a pending image does (ref() in pixels)
      this.workers.push(w);
      this.load.push(0);
    }
  }

  /** Threads that make images (0: the caller's thread does). */
  get threads(): number {
    return this.workers.length;
  }

  /** The pixels of `file` as preprocessClip makes them; rejects with loadImage's / preprocessClip's error. */
  async pixels(file: string): Promise<Float32Array> {
    if (this.closed) throw new Error(`ClipImageWorkers: pixels('${file}') after close()`);
    if (this.workers.length === 0) return preprocessClip(await loadImage(file), this.preprocess);
    let k = 0; // the least loaded thread
    for (let j = 1; j < this.load.length; j++) if (this.load[j] < this.load[k]) k = j;
    const id = this.nextId++;
    this.load[k]++;
    this.workers[k].ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: k });
      this.workers[k].postMessage({ id, file });
    });
  }

  /** Ends the threads (images still being made are rejected). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.rejectPending();
  }

  /** close() without waiting for the threads to exit (what `using` calls; `await using` waits: close()). */
  dispose(): void {
    this.closed = true;
    for (const w of this.workers) void w.terminate();
    this.rejectPending();
  }

  private rejectPending(): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new Error('ClipImageWorkers: closed before the image was made'));
    }
  }

  private settle(k: number): void {
    if (--this.load[k] === 0) this.workers[k].unref();
  }

  private failAll(k: number, e: Error): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== k) continue;
      this.pending.delete(id);
      this.settle(k);
      p.reject(e);
    }
  }
}

// `using` / `await using`: Symbol.dispose and Symbol.asyncDispose exist from Node 20.4 (engines allows 20.0); on a
// runtime without them the methods are left out rather than installed under the key 'undefined'.
export interface ClipImageWorkers extends Disposable, AsyncDisposable {}
if (typeof Symbol.dispose === 'symbol') ClipImageWorkers.prototype[Symbol.dispose] = function (this: ClipImageWorkers): void { this.dispose(); };
if (typeof Symbol.asyncDispose === 'symbol') ClipImageWorkers.prototype[Symbol.asyncDispose] = function (this: ClipImageWorkers): Promise<void> { return this.close(); };
