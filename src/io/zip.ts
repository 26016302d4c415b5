// The entries of a zip archive as torch.save writes them (stored, uncompressed; zip64 past 4 GiB): the central
// directory is read once, an entry's bytes on demand with positioned reads, so a 10 GB shard is never held
// whole. Only what PyTorch checkpoints need: any compressed or encrypted entry is an error naming it.
import * as fs from 'fs';

export interface ZipEntry {
  name: string;
  /** Where the entry's data starts in the file, and its length. */
  offset: number;
  size: number;
}

export class ZipError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`zip: ${file}: ${problem}`);
    this.name = 'ZipError';
  }
}

function readAt(fd: number, file: string, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new ZipError(file, `unexpected end of file reading ${length} bytes at ${position} (truncated?)`);
    done += n;
  }
  return buf;
}

const u64 = (b: Buffer, at: number): number => {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`zip64 value ${v} is too large`);
  return Number(v);
};

/** The archive's entries by name (data offsets resolved through each local header). */
export function readZipEntries(fd: number, file: string): Map<string, ZipEntry> {
  const size = fs.fstatSync(fd).size;
  // end of central directory: the last 22 bytes plus a comment of up to 64 KiB
  const tailLen = Math.min(size, 22 + 65535);
  const tail = readAt(fd, file, size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError(file, 'no end-of-central-directory record: not a zip archive (torch.save files are), or truncated');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // zip64: the locator sits right before the end-of-central-directory record
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) throw new ZipError(file, 'zip64 fields without a zip64 locator');
    const rec = readAt(fd, file, u64(tail, loc + 8), 56);
    if (rec.readUInt32LE(0) !== 0x06064b50) throw new ZipError(file, 'the zip64 locator does not point at a zip64 end-of-central-directory record');
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  if (cdOffset + cdSize > size) throw new ZipError(file, `the central directory (${cdSize} bytes at ${cdOffset}) runs past the end of the file (${size} bytes: truncated?)`);
  const cd = readAt(fd, file, cdOffset, cdSize);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw new ZipError(file, `central directory entry ${k} is malformed`);
    const flags = cd.readUInt16LE(p + 8), method = cd.readUInt16LE(p + 10);
    let compressed = cd.readUInt32LE(p + 20), uncompressed = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28), extraLen = cd.readUInt16LE(p + 30), commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extra field: the 0xffffffff fields, in this order
    let e = p + 46 + nameLen;
    const end = e + extraLen;
    while (e + 4 <= end) {
      const id = cd.readUInt16LE(e), len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (uncompressed === 0xffffffff) (uncompressed = u64(cd, q)), (q += 8);
        if (compressed === 0xffffffff) (compressed = u64(cd, q)), (q += 8);
        if (local === 0xffffffff) local = u64(cd, q);
      }
      e += 4 + len;
    }
    if (flags & 1) throw new ZipError(file, `entry '${name}' is encrypted`);
    if (method !== 0) throw new ZipError(file, `entry '${name}' is compressed (method ${method}); torch.save stores its entries uncompressed`);
    if (compressed !== uncompressed) throw new ZipError(file, `entry '${name}' is stored with ${compressed} bytes for ${uncompressed}`);
    const lh = readAt(fd, file, local, 30);
    if (lh.readUInt32LE(0) !== 0x04034b50) throw new ZipError(file, `entry '${name}': no local header at ${local}`);
    const offset = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    if (offset + uncompressed > size) throw new ZipError(file, `entry '${name}' (${uncompressed} bytes at ${offset}) runs past the end of the file (${size} bytes: truncated?)`);
    entries.set(name, { name, offset, size: uncompressed });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** An entry's bytes (a fresh buffer at offset 0 of its own memory, so typed views of it are aligned). */
export function readZipEntry(fd: number, file: string, entry: ZipEntry, start = 0, length = entry.size - start): Uint8Array {
  if (start < 0 || length < 0 || start + length > entry.size) throw new ZipError(file, `entry '${entry.name}': bytes [${start}, ${start + length}) are outside its ${entry.size}`);
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, Math.min(length - done, 1 << 30), entry.offset + start + done);
    if (n === 0) throw new ZipError(file, `unexpected end of file in entry '${entry.name}'`);
    done += n;
  }
  return out;
}
