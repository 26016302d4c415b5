// Temporary directories for a test file, removed when its tests are done (afterAll), so that a test run
// leaves nothing behind in the system's temp folder.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll } from 'vitest';

/** A maker of fresh temp directories named vwlmm-<prefix>-XXXXXX; all are removed after the file's tests. */
export function tempDirs(prefix: string): () => string {
  const made: string[] = [];
  afterAll(() => {
    for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `vwlmm-${prefix}-`));
    made.push(d);
    return d;
  };
}
