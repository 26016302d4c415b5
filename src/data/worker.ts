// Worker threads of the data modules (scene_writer.ts, clip_workers.ts): `<name>.js` beside this file, or under tsx /
// vitest the `.ts` source, required through tsx's CommonJS hook (a dev dependency; a worker does not inherit the
// parent's TypeScript loader).
import { createRequire } from 'module';
import * as path from 'path';
import { Worker } from 'worker_threads';

/** Starts the worker module `name` (e.g. 'clip_worker') of this folder with `workerData`. */
export function startDataWorker(name: string, workerData?: unknown): Worker {
  const ext = path.extname(__filename);
  const file = path.join(__dirname, `${name}${ext}`);
  if (ext !== '.ts') return new Worker(file, { workerData });
  const source = `require(${JSON.stringify(createRequire(__filename).resolve('tsx/cjs/api'))}).register(); require(${JSON.stringify(file)});`;
  return new Worker(source, { eval: true, workerData });
}
