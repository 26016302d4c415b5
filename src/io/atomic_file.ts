// A file replaced whole or not at all: written to a temporary file beside it, fsynced, renamed over it. A reader never
// sees half of it, and a failed or killed write leaves the earlier file in place (the temporary one is removed on an
// error; a kill can leave it, named .<file>.tmp-*).
import * as fs from 'fs';
import * as path from 'path';

let counter = 0;

/** Writes a file and fsyncs it (its data is on disk before a rename of it, or of the folder that holds it). */
export function writeFileDurable(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'w', 0o644);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${++counter}`);
  try {
    writeFileDurable(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
