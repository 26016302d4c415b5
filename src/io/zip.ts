// The entries of a zip archive as torch.save writes them (stored, uncompressed; zip64 past 4 GiB): the central
// directory is read once, an entry's bytes on demand with positioned reads, so a 10 GB shard is never held
// whole. By default only what PyTorch checkpoints need: a compressed or encrypted entry is an error naming it;
// `{ deflate: true }` also reads deflated entries (xlsx files: src/io/xlsx.ts), each inflated whole when read.
// writeZip makes a small archive in memory (an xlsx upload file): deflated entries, no zip64.
import * as fs from 'fs';
import * as zlib from 'zlib';

export interface ZipEntry {
  name: string;
  /** Where the entry's data starts in the file, and its (uncompressed) length. */
  offset: number;
  size: number;
  /** 0 stored, 8 deflated (only with readZipEntries' `deflate` option); the bytes at offset, and their CRC-32. */
  method: number;
  compressedSize: number;
  crc32: number;
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
export function readZipEntries(fd: number, file: string, options: { deflate?: boolean } = {}): Map<string, ZipEntry> {
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
    const flags = cd.readUInt16LE(p + 8), method = cd.readUInt16LE(p + 10), crc32 = cd.readUInt32LE(p + 16);
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
    if (options.deflate && method !== 0 && method !== 8) throw new ZipError(file, `entry '${name}' is compressed with method ${method} (stored, 0, and deflated, 8, are read)`);
    if (!options.deflate && method !== 0) throw new ZipError(file, `entry '${name}' is compressed (method ${method}); torch.save stores its entries uncompressed`);
    if (method === 0 && compressed !== uncompressed) throw new ZipError(file, `entry '${name}' is stored with ${compressed} bytes for ${uncompressed}`);
    const lh = readAt(fd, file, local, 30);
    if (lh.readUInt32LE(0) !== 0x04034b50) throw new ZipError(file, `entry '${name}': no local header at ${local}`);
    const offset = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    if (offset + compressed > size) throw new ZipError(file, `entry '${name}' (${compressed} bytes at ${offset}) runs past the end of the file (${size} bytes: truncated?)`);
    entries.set(name, { name, offset, size: uncompressed, method, compressedSize: compressed, crc32 });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** An entry's bytes (a fresh buffer at offset 0 of its own memory, so typed views of it are aligned). */
export function readZipEntry(fd: number, file: string, entry: ZipEntry, start = 0, length = entry.size - start): Uint8Array {
  if (start < 0 || length < 0 || start + length > entry.size) throw new ZipError(file, `entry '${entry.name}': bytes [${start}, ${start + length}) are outside its ${entry.size}`);
  if (entry.method === 8) {
    let data: Buffer;
    try {
      // bounded by the directory's size: a hostile entry cannot inflate into gigabytes before the check below
      data = zlib.inflateRawSync(readAt(fd, file, entry.offset, entry.compressedSize), { maxOutputLength: Math.max(1, entry.size) });
    } catch (e) {
      throw new ZipError(file, `entry '${entry.name}': cannot inflate (${(e as Error).message})`);
    }
    if (data.length !== entry.size || crc32(data) !== entry.crc32) throw new ZipError(file, `entry '${entry.name}': inflated to ${data.length} bytes with CRC-32 ${crc32(data)}, the directory says ${entry.size} bytes and ${entry.crc32} (corrupt)`);
    return new Uint8Array(data.subarray(start, start + length));
  }
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, Math.min(length - done, 1 << 30), entry.offset + start + done);
    if (n === 0) throw new ZipError(file, `unexpected end of file in entry '${entry.name}'`);
    done += n;
  }
  return out;
}

/** A table-driven CRC-32 of a reflected polynomial (initial value and final xor 0xffffffff). */
export function reflectedCrc32(poly: number): (data: Uint8Array) => number {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return (data) => {
    let c = 0xffffffff;
    for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
}

/** The CRC-32 of zip (and PNG): zlib.crc32 only exists from Node 20.15. */
export const crc32 = reflectedCrc32(0xedb88320);

/**
 * A zip archive of `entries`, in this order, deflated (stored where deflating does not shrink; every entry stored with
 * `store`, as torch.save writes them). No zip64: an archive of 4 GiB or more is refused. Every timestamp is
 * 1980-01-01 00:00, so the same entries give the same bytes.
 */
export function writeZip(entries: readonly { name: string; data: Uint8Array }[], opts: { store?: boolean } = {}): Buffer {
  if (entries.length > 0xfffe) throw new RangeError(`writeZip: ${entries.length} entries; at most 65534 without zip64`);
  const parts: Buffer[] = [], central: Buffer[] = [];
  let offset = 0;
  const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const deflated = opts.store ? null : zlib.deflateRawSync(e.data);
    const method = deflated && deflated.length < e.data.length ? 8 : 0;
    const body = method === 8 ? deflated! : Buffer.from(e.data);
    const crc = crc32(e.data);
    if (offset + 30 + name.length + body.length >= 0xffffffff) throw new RangeError(`writeZip: the archive reaches 4 GiB at entry '${e.name}' (zip64 is not written)`);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed: 2.0 (deflate)
    local.writeUInt16LE(0x0800, 6); // names are UTF-8
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4); // made by: MS-DOS, 2.0
    local.copy(cd, 6, 4, 30); // version needed .. name length: the same fields
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);
    parts.push(local, name, body);
    offset += 30 + name.length + body.length;
  }
  const cdSize = central.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, ...central, end]);
}
