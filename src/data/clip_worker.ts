// One thread of ClipImageWorkers (clip_workers.ts): the CLIP pixels of each file it is sent, transferred back, or
// the error loadImage / preprocessClip gave (as the caller's thread would have thrown it).
import { parentPort, workerData } from 'worker_threads';
import { ClipPreprocessOptions, loadImage, preprocessClip } from './images';

const opts = workerData as ClipPreprocessOptions;
parentPort!.on('message', ({ id, file }: { id: number; file: string }) => {
  loadImage(file)
    .then((img) => preprocessClip(img, opts))
    .then((pixels) => parentPort!.postMessage({ id, pixels }, [pixels.buffer as ArrayBuffer]))
    .catch((e: Error) => parentPort!.postMessage({ id, error: e.message }));
});
