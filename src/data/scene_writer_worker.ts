// One writer thread of SceneImageWriter (scene_writer.ts): renders, encodes and writes each chunk of scenes it is sent,
// then reports how many; a file that cannot be written is reported by name and ends the chunk.
import { parentPort } from 'worker_threads';
import { writeSceneImage } from './sort_of_clevr';
import type { SceneImageJob } from './scene_writer';

parentPort!.on('message', (jobs: SceneImageJob[]) => {
  for (const { file, scene } of jobs) {
    try {
      writeSceneImage(file, scene);
    } catch (e) {
      parentPort!.postMessage({ file, error: (e as Error).message });
      return;
    }
  }
  parentPort!.postMessage({ done: jobs.length });
});
