// A file replaced whole or not at all: written to a temporary file beside it, fsynced, renamed over it. A reader never
// sees half of it, and a failed or killed write leaves the earlier file in place (the temporary one is removed on an
// error; a kill can leave it, named .<file>.tmp-*).
import * as fs from 'fs';
import * as path from 'path';

let counter = 0;

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${++counter}`);
  try {
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
