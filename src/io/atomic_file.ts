// A file replaced whole or not at all: written to a temporary file beside it, fsynced, renamed over it, and the folder
// fsynced (the rename itself on disk: a power loss after it cannot bring the old file back). A reader never sees half
// of it, and a failed or killed write leaves the earlier file in place (the temporary one is removed on an error; a
// kill can leave it, named .<file>.tmp-*). A symbolic link is written through (its target replaced, the link kept). A failure names the file it was writing (a bare "ENOSPC: no space left on
// device, write" says neither which file nor which run); the error keeps the system's code (err.code) and cause.
import * as fs from 'fs';
import * as path from 'path';

let counter = 0;

/**
 * An fs failure as an Error naming `file` and what was being done to it, with the system's code kept (e.g. ENOSPC,
 * EFBIG, EISDIR) and the original error as its cause.
 */
export function fileError(what: string, file: string, e: unknown): Error & { code?: string } {
  const err = e as NodeJS.ErrnoException;
  const why = err?.code === 'EISDIR' ? `${err.code}: it is a directory, not a file` : err?.message ?? String(e);
  const out = new Error(`${what} ${file} failed: ${why}`, { cause: e }) as Error & { code?: string };
  if (err?.code !== undefined) out.code = err.code;
  return out;
}

function writeAndSync(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'w', 0o644);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a file and fsyncs it (its data is on disk before a rename of it, or of the folder that holds it). */
export function writeFileDurable(file: string, data: string | Uint8Array): void {
  try {
    writeAndSync(file, data);
  } catch (e) {
    throw fileError('writing', file, e);
  }
}

/** What a platform or file system says when it cannot open or fsync a folder (Windows, some network file systems). */
const FOLDER_SYNC_UNSUPPORTED = new Set(['EISDIR', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EPERM', 'EACCES', 'EBADF', 'ENOSYS']);

/**
 * fsync of a folder (its entries: a rename or a new file in it), so that the rename survives a power loss. Where the
 * platform cannot (FOLDER_SYNC_UNSUPPORTED) it is left to the OS; another failure (EIO) is an error naming the folder.
 */
export function fsyncFolder(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch (e) {
    if (FOLDER_SYNC_UNSUPPORTED.has((e as NodeJS.ErrnoException).code ?? '')) return;
    throw fileError('opening the folder', dir, e);
  }
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    if (!FOLDER_SYNC_UNSUPPORTED.has((e as NodeJS.ErrnoException).code ?? '')) throw fileError('fsync of the folder', dir, e);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The file a write to `file` should replace: itself, or where a symbolic link at `file` points (fs.writeFileSync writes
 * through a link; a rename over the link itself would replace the link with a file and leave its target stale).
 */
function linkTarget(file: string): string {
  try {
    if (!fs.lstatSync(file).isSymbolicLink()) return file;
  } catch {
    return file; // nothing there yet
  }
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(path.dirname(file), fs.readlinkSync(file)); // a dangling link: the file it names is made
  }
}

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  file = linkTarget(file);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${++counter}`);
  try {
    writeAndSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      /* the error below is the one to report */
    }
    throw fileError('writing', file, e);
  }
  fsyncFolder(path.dirname(path.resolve(file)));
}
