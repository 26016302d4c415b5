// safetensors I/O on the host (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes      N, unsigned little-endian 64-bit: the byte length of the header
//   N bytes      UTF-8 JSON object: { "__metadata__"?: {string: string},
//                                     name: { dtype, shape: int[], data_offsets: [begin, end] }, ... }
//                (writers pad it with spaces; offsets are relative to the byte after the header)
//   rest         the tensor data, little-endian, row-major
// Reading converts every supported dtype to the two host dtypes of the engine: F32/F16/BF16/F64 -> float32,
// I32/I64/I16/I8/U8/U16/U32/U64/BOOL -> int32 (64/32-bit unsigned values outside the int32 range throw a
// RangeError naming the tensor). Tensors are read one by one straight from the file descriptor into fresh,
// aligned typed arrays, so files of several GB work (no 2 GiB readFile limit, no unaligned views).
// A file is refused where the safetensors library refuses it: the tensors must tile the data section (no overlap, no
// gap, nothing after them) and a shape's product must not overflow (even with a 0 dimension). Only regular files are
// opened (a FIFO would block the open, a device never ends), checked before the open.
// Writing produces F32/I32 only, names sorted, header padded to 8 bytes, atomically (tmp file, fsync, rename).
// Integrity: a writer may store the sha256 of the tensor data (the tensors' bytes in offset order) in the
// metadata under CHECKSUM_KEY (our checkpoints do); reading every tensor of such a file verifies it, so
// flipped or zeroed bytes inside a well-formed file are an error, not a silently wrong model.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createHash, Hash, randomBytes } from 'crypto';
import { f32ToBf16 } from '../bf16';

export type HostDType = 'float32' | 'int32';

/** Metadata key of the sha256 (hex) of the tensor data in offset order; see writeSafetensors' `checksum`. */
export const CHECKSUM_KEY = 'vwlmm_data_sha256';

export interface HostTensor {
  dtype: HostDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

/**
 * A tensor writeSafetensors reads only when it writes it (`read()`, called once): a model's parameters go to the file
 * one at a time, so a save holds one of them on the host, not a copy of the whole model.
 */
export interface LazyHostTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  read(): Float32Array | Int32Array;
}

/** One header entry, as stored in the file (before conversion). */
export interface SafetensorsEntry {
  name: string;
  /** The file's dtype string, e.g. 'F32', 'BF16', 'I64'. */
  dtype: string;
  shape: number[];
  /** Absolute byte offsets in the file, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Byte offset of the data section (8 + header length). */
  dataStart: number;
  fileSize: number;
}

export interface ReadOptions {
  /** Only tensors for which this returns true are read (e.g. `(n) => n.startsWith('vision_model.')`). */
  filter?: (name: string) => boolean;
  /**
   * The shape the model needs of a tensor the caller reads (the parameter it goes into), or undefined for any: a
   * tensor of another shape is refused, naming the file and the tensor, before any of its data is read or allocated.
   */
  expectShape?: (name: string) => readonly number[] | undefined;
  /**
   * forEachSafetensor with a filter: still check the checksum our files carry (the tensors left out pass through the
   * hash in chunks, never converted or held). Without a filter it is always checked.
   */
  verify?: boolean;
}

/** Refuses (naming file and tensor) a tensor whose shape is not the one `options.expectShape` gives for it. */
export function checkExpectedShape(file: string, name: string, shape: readonly number[], options: ReadOptions,
  error: (problem: string) => Error = (problem) => new SafetensorsError(file, problem)): void {
  const want = options.expectShape?.(name);
  if (want && (want.length !== shape.length || want.some((d, i) => d !== shape[i])))
    throw error(`${name} has shape [${shape.join(', ')}] but the model expects [${want.join(', ')}]: refused before its data is read`);
}

/** A malformed or unreadable safetensors file / checkpoint; the message names the file and the problem. */
export class SafetensorsError extends Error {
  readonly file: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`safetensors: ${file}: ${problem}`, options);
    this.name = 'SafetensorsError';
    this.file = file;
  }
}

// Source dtypes: byte size and the host dtype they become (floats become float32, integers and bools int32).
const sized = (sizes: Record<string, number>, to: HostDType) =>
  Object.fromEntries(Object.entries(sizes).map(([name, size]) => [name, { size, to }]));
const DTYPES: Record<string, { size: number; to: HostDType }> = {
  ...sized({ F32: 4, F16: 2, BF16: 2, F64: 8 }, 'float32'),
  ...sized({ I32: 4, I64: 8, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1 }, 'int32'),
};
/** The table's entry for a dtype string from a file: own keys only ('constructor' or '__proto__' is no dtype). */
const dtypeInfo = (dtype: string): { size: number; to: HostDType } | undefined => (Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined);
const KNOWN_UNSUPPORTED = new Set(['F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64']);

const LITTLE_ENDIAN = os.endianness() === 'LE';
// Largest single read/write: fs calls take an int32 length.
const IO_CHUNK = 1 << 30;

// ------------------------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------------------------

export function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err && err.code === 'ENOENT') return 'no such file';
  if (err && err.code === 'EISDIR') return 'is a directory, not a file';
  if (err && err.code === 'EACCES') return 'permission denied';
  if (err && err.code === 'ELOOP') return 'a symbolic link loop (too many levels of symbolic links)';
  return err && err.message ? err.message : String(e);
}

/** What a file that is not a regular one is: 'a directory', 'a named pipe (FIFO)', 'a device', ... */
export function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * fs.readFileSync for a file a user names, through readRegularFile: a FIFO, a device or a socket (and a directory) is
 * refused before a byte is read, with an error whose message says what it is (code 'ENOTREG'); a missing or
 * unreadable file fails with the system's error (ENOENT, EACCES), for the callers' own wording of those.
 */
export function readRegularFileSync(file: string): Buffer;
export function readRegularFileSync(file: string, encoding: 'utf8'): string;
export function readRegularFileSync(file: string, encoding?: 'utf8'): Buffer | string {
  const buf = readRegularFile(file, (problem, cause) => (cause instanceof Error ? cause : Object.assign(new Error(problem.replace(/^cannot open: /, '')), { code: 'ENOTREG' })));
  return encoding ? buf.toString(encoding) : buf;
}

/**
 * Opens a regular file for reading (symbolic links followed), checked before it is opened: a FIFO would block the
 * open itself, a device (/dev/zero) never ends. `fail(problem)` makes the error (it names the file). The open is
 * non-blocking, so a file swapped for a FIFO after the check cannot hang it either; the type is checked again on
 * the descriptor.
 */
export function openRegularFile(file: string, fail: (problem: string, cause?: unknown) => Error): { fd: number; size: number } {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    let problem = describeFsError(e);
    try {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && fs.lstatSync(file).isSymbolicLink()) problem = `a dangling symbolic link (to ${fs.readlinkSync(file)}, which does not exist)`;
    } catch {
      /* no entry at all */
    }
    throw fail(`cannot open: ${problem}`, e);
  }
  if (!st.isFile()) throw fail(`cannot open: ${kindOf(st)}, not a regular file`);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw fail(`cannot open: ${describeFsError(e)}`, e);
  }
  try {
    const st2 = fs.fstatSync(fd);
    if (!st2.isFile()) throw fail(`cannot open: ${kindOf(st2)}, not a regular file`);
    return { fd, size: st2.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** The whole of a regular file (a config, an index, a data file), opened as openRegularFile checks it (no FIFO, no device). */
export function readRegularFile(file: string, fail: (problem: string, cause?: unknown) => Error): Buffer {
  const { fd, size } = openRegularFile(file, fail);
  try {
    const buf = Buffer.alloc(size);
    for (let done = 0; done < size;) {
      let n: number;
      try {
        n = fs.readSync(fd, buf, done, size - done, done);
      } catch (e) {
        throw fail(`read failed: ${describeFsError(e)}`, e);
      }
      if (n === 0) throw fail(`unexpected end of file at byte ${done} of ${size} (the file changed while reading?)`);
      done += n;
    }
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

function openForRead(file: string): { fd: number; size: number } {
  return openRegularFile(file, (problem, cause) => new SafetensorsError(file, problem, { cause }));
}

/** Reads exactly `length` bytes at `position` into `target` (at `targetOffset`), in chunks. */
function readExactly(fd: number, file: string, target: Uint8Array, targetOffset: number, length: number,
  position: number): void {
  let done = 0;
  while (done < length) {
    const n = Math.min(IO_CHUNK, length - done);
    let got: number;
    try {
      got = fs.readSync(fd, target, targetOffset + done, n, position + done);
    } catch (e) {
      throw new SafetensorsError(file, `read failed at byte ${position + done}: ${describeFsError(e)}`, { cause: e });
    }
    if (got === 0) {
      throw new SafetensorsError(file, `unexpected end of file at byte ${position + done} (the file changed while reading?)`);
    }
    done += got;
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The first key that a JSON object's text (valid JSON) holds twice at its top level, or null. */
function repeatedTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (text[k] === ' ' || text[k] === '\t' || text[k] === '\n' || text[k] === '\r') k++;
        if (text[k] === ':') {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    }
  }
  return null;
}

function parseHeader(fd: number, file: string, fileSize: number): SafetensorsHeader {
  if (fileSize < 8) {
    throw new SafetensorsError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length field (not a safetensors file?)`);
  }
  const lenBuf = new Uint8Array(8);
  readExactly(fd, file, lenBuf, 0, 8, 0);
  const headerLen = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(fileSize - 8)) {
    throw new SafetensorsError(file, `header length ${headerLen} runs beyond the end of the file (${fileSize} bytes; truncated or not a safetensors file?)`);
  }
  const n = Number(headerLen);
  if (n < 2) throw new SafetensorsError(file, `header length ${n} is too small for a JSON object`);
  const hb = new Uint8Array(n);
  readExactly(fd, file, hb, 0, n, 8);
  let json: unknown;
  const text = Buffer.from(hb.buffer, hb.byteOffset, hb.byteLength).toString('utf8');
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isPlainObject(json)) throw new SafetensorsError(file, 'header is not a JSON object');
  // JSON.parse keeps the last of a repeated name, so which tensor a name means would depend on the writer's order
  const twice = repeatedTopLevelKey(text);
  if (twice !== null) throw new SafetensorsError(file, `header names ${JSON.stringify(twice)} twice`);

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(raw)) throw new SafetensorsError(file, '__metadata__ is not a JSON object');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') {
          throw new SafetensorsError(file, `__metadata__ value for '${k}' is not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (!isPlainObject(raw)) throw new SafetensorsError(file, `${where}: header entry is not a JSON object`);
    const { dtype, shape, data_offsets: offs } = raw;
    if (typeof dtype !== 'string') throw new SafetensorsError(file, `${where}: missing or non-string dtype`);
    const info = dtypeInfo(dtype);
    if (!info) {
      const why = KNOWN_UNSUPPORTED.has(dtype) ? 'unsupported dtype' : 'unknown dtype';
      throw new SafetensorsError(file, `${where}: ${why} '${dtype}' (supported: ${Object.keys(DTYPES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(file, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError(file, `${where}: data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    }
    const [b, e] = offs as number[];
    if (b > e) throw new SafetensorsError(file, `${where}: data_offsets [${b}, ${e}] has begin > end`);
    if (e > dataSize) {
      throw new SafetensorsError(file, `${where}: data_offsets [${b}, ${e}] out of range: the data section has ${dataSize} bytes (truncated file?)`);
    }
    // the element count of the non-zero dimensions must be exact (safetensors refuses a shape whose product
    // overflows, even when a zero dimension makes it empty: [2^52, 2^52, 0])
    let nonZero = 1;
    for (const d of shape as number[]) if (d > 0) nonZero *= d;
    if (!Number.isSafeInteger(nonZero) || !Number.isSafeInteger(nonZero * info.size))
      throw new SafetensorsError(file, `${where}: shape [${(shape as number[]).join(', ')}] overflows: the product of its dimensions is beyond 2^53 (no file holds that many elements)`);
    let numel = 1;
    for (const d of shape as number[]) numel *= d;
    const expected = numel * info.size;
    if (!Number.isSafeInteger(expected) || expected !== e - b) {
      throw new SafetensorsError(file, `${where}: data_offsets [${b}, ${e}] span ${e - b} bytes but shape [${(shape as number[]).join(', ')}] x ${dtype} (${info.size} bytes) needs ${expected}`);
    }
    entries.push({ name, dtype, shape: (shape as number[]).slice(), begin: dataStart + b, end: dataStart + e });
  }
  // The tensors tile the data section, as safetensors' validate requires: in offset order each one begins where the
  // previous one ended (no overlap, no gap), from byte 0 to the end of the file.
  const sorted = entries.slice().sort((x, y) => x.begin - y.begin || x.end - y.end);
  let at = dataStart, prev: SafetensorsEntry | null = null;
  for (const c of sorted) {
    if (c.begin < at && prev && c.end > c.begin) {
      throw new SafetensorsError(file, `tensors '${prev.name}' [${prev.begin - dataStart}, ${prev.end - dataStart}) and '${c.name}' [${c.begin - dataStart}, ${c.end - dataStart}) overlap`);
    }
    if (c.begin !== at) {
      throw new SafetensorsError(file, `tensor '${c.name}': invalid offset: data_offsets [${c.begin - dataStart}, ${c.end - dataStart}) ` + (c.begin > at
        ? `leave bytes [${at - dataStart}, ${c.begin - dataStart}) of the data section to no tensor (safetensors refuses a gap)`
        : `begin inside the tensor before it, which ends at ${at - dataStart}`));
    }
    at = c.end;
    if (c.end > c.begin) prev = c;
  }
  if (at !== fileSize) {
    throw new SafetensorsError(file, `the tensors end at byte ${at - dataStart} of a data section of ${dataSize} bytes: ${fileSize - at} bytes after them belong to no tensor (safetensors refuses such a file)`);
  }
  return { entries, metadata, dataStart, fileSize };
}

let f16Table: Uint32Array | null = null;
/** float32 bit patterns of all 65536 half values (exact: every half is a float32). */
function halfTable(): Uint32Array {
  if (f16Table) return f16Table;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      t[h] = sign | 0x7f800000 | (mant << 13); // inf / NaN (payload kept)
    } else if (exp !== 0) {
      t[h] = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant === 0) {
      t[h] = sign; // +-0
    } else {
      // subnormal: mant * 2^-24, normalised for float32
      let e = -14;
      let m = mant;
      while ((m & 0x400) === 0) {
        m <<= 1;
        e--;
      }
      t[h] = sign | ((e + 127) << 23) | ((m & 0x3ff) << 13);
    }
  }
  f16Table = t;
  return t;
}

function int64Error(file: string, name: string, index: number, lo: number, hi: number, unsigned: boolean): never {
  const v = unsigned
    ? (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)
    : (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);
  throw new RangeError(`safetensors: ${file}: tensor '${name}': element ${index} = ${v} does not fit in int32 (${unsigned ? 'U64' : 'I64'} is read as int32)`);
}

function readEntry(fd: number, file: string, t: SafetensorsEntry, hash?: Hash): HostTensor {
  const info = dtypeInfo(t.dtype)!;
  const nbytes = t.end - t.begin;
  const numel = nbytes / info.size;
  const shape = t.shape.slice();

  // Fresh ArrayBuffers are 8-byte aligned, so typed views of any element size are valid.
  if (LITTLE_ENDIAN && (t.dtype === 'F32' || t.dtype === 'I32')) {
    const data = t.dtype === 'F32' ? new Float32Array(numel) : new Int32Array(numel);
    readExactly(fd, file, new Uint8Array(data.buffer), 0, nbytes, t.begin);
    hash?.update(new Uint8Array(data.buffer));
    return { dtype: info.to, shape, data };
  }
  const raw = new Uint8Array(nbytes);
  readExactly(fd, file, raw, 0, nbytes, t.begin);
  hash?.update(raw);

  if (!LITTLE_ENDIAN) return readEntryBigEndianHost(file, t, raw, numel);
  return hostTensorFromBytes(file, t.name, t.dtype, raw, shape);
}

/**
 * A little-endian tensor of a safetensors dtype ('F32', 'BF16', 'I64', ...) from its raw bytes, converted to the
 * engine's host dtypes as readSafetensors does (also used by the PyTorch checkpoint reader, src/io/torch_bin.ts).
 * `raw` must start at offset 0 of its own ArrayBuffer (8-byte aligned); `file` and `name` go into errors.
 */
export function hostTensorFromBytes(file: string, name: string, dtype: string, raw: Uint8Array, shape: number[]): HostTensor {
  const info = dtypeInfo(dtype);
  if (!info) throw new SafetensorsError(file, `tensor '${name}': unknown dtype '${dtype}'`);
  const numel = raw.length / info.size;
  const buf = raw.buffer;
  const t = { name, dtype };
  switch (t.dtype) {
    case 'F32':
      return { dtype: 'float32', shape, data: new Float32Array(buf, 0, numel) };
    case 'I32':
      return { dtype: 'int32', shape, data: new Int32Array(buf, 0, numel) };
    case 'F16': {
      const src = new Uint16Array(buf);
      const out = new Float32Array(numel);
      const bits = new Uint32Array(out.buffer);
      const table = halfTable();
      for (let i = 0; i < numel; i++) bits[i] = table[src[i]];
      return { dtype: 'float32', shape, data: out };
    }
    case 'BF16': {
      const src = new Uint16Array(buf);
      const out = new Float32Array(numel);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < numel; i++) bits[i] = src[i] << 16;
      return { dtype: 'float32', shape, data: out };
    }
    case 'F64': {
      const out = new Float32Array(numel);
      out.set(new Float64Array(buf)); // round to nearest even, overflow to +-Infinity
      return { dtype: 'float32', shape, data: out };
    }
    case 'I64':
    case 'U64': {
      const w = new Int32Array(buf);
      const out = new Int32Array(numel);
      const unsigned = t.dtype === 'U64';
      for (let i = 0; i < numel; i++) {
        const lo = w[2 * i];
        const hi = w[2 * i + 1];
        if (unsigned ? hi !== 0 || lo < 0 : hi !== lo >> 31) int64Error(file, t.name, i, lo, hi, unsigned);
        out[i] = lo;
      }
      return { dtype: 'int32', shape, data: out };
    }
    case 'U32': {
      const src = new Uint32Array(buf);
      for (let i = 0; i < numel; i++) {
        if (src[i] > 0x7fffffff) {
          throw new RangeError(`safetensors: ${file}: tensor '${t.name}': element ${i} = ${src[i]} does not fit in int32 (U32 is read as int32)`);
        }
      }
      return { dtype: 'int32', shape, data: new Int32Array(buf) };
    }
    case 'I16':
      return { dtype: 'int32', shape, data: Int32Array.from(new Int16Array(buf)) };
    case 'U16':
      return { dtype: 'int32', shape, data: Int32Array.from(new Uint16Array(buf)) };
    case 'I8':
      return { dtype: 'int32', shape, data: Int32Array.from(new Int8Array(buf)) };
    case 'U8':
      return { dtype: 'int32', shape, data: Int32Array.from(raw) };
    case 'BOOL': {
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) out[i] = raw[i] !== 0 ? 1 : 0;
      return { dtype: 'int32', shape, data: out };
    }
    default:
      throw new SafetensorsError(file, `tensor '${t.name}': unknown dtype '${t.dtype}'`);
  }
}

/** Portable (slow) path for big-endian hosts: DataView reads. */
function readEntryBigEndianHost(file: string, t: SafetensorsEntry, raw: Uint8Array, numel: number): HostTensor {
  const dv = new DataView(raw.buffer);
  const shape = t.shape.slice();
  const info = dtypeInfo(t.dtype)!;
  if (info.to === 'float32') {
    const out = new Float32Array(numel);
    const table = t.dtype === 'F16' ? halfTable() : null;
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < numel; i++) {
      if (t.dtype === 'F32') out[i] = dv.getFloat32(4 * i, true);
      else if (t.dtype === 'F64') out[i] = dv.getFloat64(8 * i, true);
      else {
        const h = dv.getUint16(2 * i, true);
        u[0] = table ? table[h] : h << 16;
        out[i] = f[0];
      }
    }
    return { dtype: 'float32', shape, data: out };
  }
  const out = new Int32Array(numel);
  for (let i = 0; i < numel; i++) {
    let v: number;
    switch (t.dtype) {
      case 'I32': v = dv.getInt32(4 * i, true); break;
      case 'U32': v = dv.getUint32(4 * i, true); break;
      case 'I16': v = dv.getInt16(2 * i, true); break;
      case 'U16': v = dv.getUint16(2 * i, true); break;
      case 'I8': v = dv.getInt8(i); break;
      case 'U8': v = dv.getUint8(i); break;
      case 'BOOL': v = dv.getUint8(i) !== 0 ? 1 : 0; break;
      default: {
        const lo = dv.getInt32(8 * i, true);
        const hi = dv.getInt32(8 * i + 4, true);
        const unsigned = t.dtype === 'U64';
        if (unsigned ? hi !== 0 || lo < 0 : hi !== lo >> 31) int64Error(file, t.name, i, lo, hi, unsigned);
        v = lo;
      }
    }
    if (v > 0x7fffffff) {
      throw new RangeError(`safetensors: ${file}: tensor '${t.name}': element ${i} = ${v} does not fit in int32 (${t.dtype} is read as int32)`);
    }
    out[i] = v;
  }
  return { dtype: 'int32', shape, data: out };
}

/** The header only (names, file dtypes, shapes, offsets, metadata); reads no tensor data. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const { fd, size } = openForRead(file);
  try {
    return parseHeader(fd, file, size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a .safetensors file: tensors (converted to float32 / int32) and the `__metadata__` map ({} if absent). */
export function readSafetensorsWithMetadata(file: string, options: ReadOptions = {}):
  { tensors: Map<string, HostTensor>; metadata: Record<string, string> } {
  const { fd, size } = openForRead(file);
  try {
    const header = parseHeader(fd, file, size);
    const tensors = new Map<string, HostTensor>();
    const expected = header.metadata[CHECKSUM_KEY];
    if (expected !== undefined && !options.filter) {
      // every tensor, in offset order, through the hash
      const hash = createHash('sha256');
      const ordered = header.entries.slice().sort((a, b) => a.begin - b.begin);
      for (const entry of ordered) checkExpectedShape(file, entry.name, entry.shape, options);
      for (const entry of ordered) tensors.set(entry.name, readEntry(fd, file, entry, hash));
      const got = hash.digest('hex');
      if (got !== expected.toLowerCase()) {
        throw new SafetensorsError(file, `the tensor data does not match its checksum (sha256 ${got}, the header records ${expected}): the file is corrupt`);
      }
      return { tensors: new Map(header.entries.map((e) => [e.name, tensors.get(e.name)!])), metadata: header.metadata };
    }
    for (const entry of header.entries) {
      if (options.filter && !options.filter(entry.name)) continue;
      checkExpectedShape(file, entry.name, entry.shape, options);
      tensors.set(entry.name, readEntry(fd, file, entry));
    }
    return { tensors, metadata: header.metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes [begin, end) of the file through the hash, in chunks (a tensor the caller left out, for the checksum). */
function hashRange(fd: number, file: string, begin: number, end: number, hash: Hash): void {
  const chunk = new Uint8Array(Math.min(end - begin, 1 << 24));
  for (let at = begin; at < end;) {
    const n = Math.min(chunk.length, end - at);
    readExactly(fd, file, chunk, 0, n, at);
    hash.update(chunk.subarray(0, n));
    at += n;
  }
}

/**
 * Streams a .safetensors file: `fn` gets each tensor (converted as readSafetensors converts) in file order, one at a
 * time, so a caller that copies it elsewhere and drops it holds one tensor on the host, not the file. The checksum of
 * our files (read without a filter, or with `verify`) is checked after the last tensor: a mismatch throws then, so
 * the caller must treat everything it was given as void when this throws.
 */
export function forEachSafetensor(file: string, options: ReadOptions, fn: (name: string, t: HostTensor) => void): void {
  const { fd, size } = openForRead(file);
  try {
    const header = parseHeader(fd, file, size);
    const expected = options.filter && !options.verify ? undefined : header.metadata[CHECKSUM_KEY];
    const hash = expected !== undefined ? createHash('sha256') : undefined;
    const ordered = header.entries.slice().sort((a, b) => a.begin - b.begin);
    const wanted = new Set(ordered.filter((e) => !options.filter || options.filter(e.name)));
    // every shape checked before the first tensor is read, so a misfit is refused before the caller gets anything
    for (const entry of wanted) checkExpectedShape(file, entry.name, entry.shape, options);
    for (const entry of ordered) {
      if (wanted.has(entry)) fn(entry.name, readEntry(fd, file, entry, hash));
      else if (hash) hashRange(fd, file, entry.begin, entry.end, hash);
    }
    if (hash) {
      const got = hash.digest('hex');
      if (got !== expected!.toLowerCase()) throw new SafetensorsError(file, `the tensor data does not match its checksum (sha256 ${got}, the header records ${expected}): the file is corrupt`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a .safetensors file; every tensor is converted to float32 (float types) or int32 (integer/bool types). */
export function readSafetensors(file: string, options: ReadOptions = {}): Map<string, HostTensor> {
  return readSafetensorsWithMetadata(file, options).tensors;
}

// ------------------------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------------------------

function checkTensor(file: string, name: string, t: HostTensor | LazyHostTensor): void {
  const where = `writeSafetensors(${file}): tensor '${name}'`;
  if (name === '' || name === '__metadata__') throw new TypeError(`${where}: invalid tensor name`);
  if (!t || typeof t !== 'object') throw new TypeError(`${where}: expected a HostTensor`);
  if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new TypeError(`${where}: dtype must be 'float32' or 'int32', got ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(`${where}: shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
  }
  if ('read' in t && typeof t.read === 'function') return; // its data are checked as they are read (dataOf)
  dataOf(file, name, t as HostTensor);
}

/** A tensor's data, checked against its dtype and shape (a lazy one's read now). */
function dataOf(file: string, name: string, t: HostTensor | LazyHostTensor): Float32Array | Int32Array {
  const where = `writeSafetensors(${file}): tensor '${name}'`;
  let data: Float32Array | Int32Array;
  try {
    data = 'read' in t && typeof t.read === 'function' ? t.read() : (t as HostTensor).data;
  } catch (e) {
    throw new Error(`${where}: reading it failed: ${(e as Error).message}`, { cause: e });
  }
  if (t.dtype === 'float32' && !(data instanceof Float32Array)) throw new TypeError(`${where}: dtype float32 needs a Float32Array`);
  if (t.dtype === 'int32' && !(data instanceof Int32Array)) throw new TypeError(`${where}: dtype int32 needs an Int32Array`);
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (numel !== data.length) {
    throw new RangeError(`${where}: shape [${t.shape.join(', ')}] has ${numel} elements but data has ${data.length}`);
  }
  return data;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const n = Math.min(IO_CHUNK, bytes.byteLength - done);
    done += fs.writeSync(fd, bytes, done, n);
  }
}

/** A tensor's bytes as the file stores them (little-endian); float32 as bfloat16 words with `bf16` (rounded as torch). */
function tensorBytes(t: HostTensor, bf16 = false): Uint8Array {
  if (bf16 && t.dtype === 'float32') {
    const words = f32ToBf16(t.data as Float32Array);
    if (LITTLE_ENDIAN) return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
    const out = new Uint8Array(words.byteLength);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < words.length; i++) dv.setUint16(2 * i, words[i], true);
    return out;
  }
  if (LITTLE_ENDIAN) return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint8Array(t.data.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < t.data.length; i++) {
    if (t.dtype === 'float32') dv.setFloat32(4 * i, t.data[i], true);
    else dv.setInt32(4 * i, t.data[i], true);
  }
  return out;
}

/**
 * Writes float32/int32 tensors (names sorted; a LazyHostTensor read as it is written) and optional string metadata as
 * a .safetensors file; with `floatDtype`
 * 'bfloat16' the float32 ones are stored as BF16 (rounded to nearest even, as torch's .to(torch.bfloat16)): half the
 * bytes, as released checkpoints are.
 * Atomic: the bytes go to `${file}.tmp-<pid>-<random>` in the same directory, are fsync'ed, and the tmp file
 * is renamed over `file`, so readers see either the old file or the complete new one. On failure the tmp
 * file is removed and `file` is left as it was. `checksum: true` records the sha256 of the tensor data in
 * the metadata (CHECKSUM_KEY), which readers of the whole file verify.
 */
export function writeSafetensors(file: string, tensors: Map<string, HostTensor | LazyHostTensor> | Record<string, HostTensor | LazyHostTensor>,
  metadata?: Record<string, string>, options: { checksum?: boolean; floatDtype?: 'float32' | 'bfloat16' } = {}): void {
  if (options.floatDtype !== undefined && options.floatDtype !== 'float32' && options.floatDtype !== 'bfloat16')
    throw new TypeError(`writeSafetensors(${file}): floatDtype must be 'float32' or 'bfloat16', got ${JSON.stringify(options.floatDtype)}`);
  const bf16 = options.floatDtype === 'bfloat16';
  const entries: [string, HostTensor | LazyHostTensor][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of entries) checkTensor(file, name, t);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new TypeError(`writeSafetensors(${file}): metadata must be an object of strings`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new TypeError(`writeSafetensors(${file}): metadata value for '${k}' must be a string, got ${typeof v}`);
      }
    }
    if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  }
  // the checksum is known only once the data are written: the header goes out with a placeholder of the same length
  // (64 hex digits), rewritten in place at the end, so that each tensor is converted (bf16) once, not once per pass
  const placeholder = '0'.repeat(64);
  if (options.checksum) header.__metadata__ = { ...(header.__metadata__ as Record<string, string> | undefined), [CHECKSUM_KEY]: placeholder };
  let offset = 0;
  for (const [name, t] of entries) {
    const numel = t.shape.reduce((a, b) => a * b, 1), half = bf16 && t.dtype === 'float32', nbytes = numel * (half ? 2 : 4);
    header[name] = { dtype: half ? 'BF16' : t.dtype === 'float32' ? 'F32' : 'I32', shape: t.shape.slice(), data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  const headerOf = (digest: string): Buffer => {
    if (options.checksum) (header.__metadata__ as Record<string, string>)[CHECKSUM_KEY] = digest;
    let json = JSON.stringify(header);
    const rawLen = Buffer.byteLength(json, 'utf8');
    json += ' '.repeat((8 - (rawLen % 8)) % 8); // the data section starts 8-byte aligned
    return Buffer.from(json, 'utf8');
  };
  const headerBytes = headerOf(placeholder);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength), 0);

  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    writeAll(fd, prefix);
    writeAll(fd, headerBytes);
    // sha256 of the tensor data as written (names sorted = offset order), verified by the reader
    const hash = options.checksum ? createHash('sha256') : null;
    for (const [name, t] of entries) {
      const bytes = tensorBytes({ dtype: t.dtype, shape: t.shape, data: dataOf(file, name, t) }, bf16);
      hash?.update(bytes);
      writeAll(fd, bytes);
    }
    if (hash) {
      const final = headerOf(hash.digest('hex'));
      if (final.byteLength !== headerBytes.byteLength) throw new Error('the header with its checksum changed length'); // (a digest is always 64 hex digits)
      for (let done = 0; done < final.byteLength;) done += fs.writeSync(fd, final, done, final.byteLength - done, 8 + done);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== null) {
      try { fs.closeSync(fd); } catch { /* already failing */ }
    }
    try { fs.unlinkSync(tmp); } catch { /* never created or already gone */ }
    // a tensor's own problem (a lazy one is checked as it is read) as it is; a file system's, as the write's
    if (e instanceof Error && e.message.startsWith(`writeSafetensors(${file}): tensor `)) throw e;
    throw new SafetensorsError(file, `write failed: ${describeFsError(e)}`, { cause: e });
  }
  // Make the rename itself durable (best effort: not every platform can fsync a directory).
  try {
    const dfd = fs.openSync(path.dirname(path.resolve(file)), 'r');
    try { fs.fsyncSync(dfd); } finally { fs.closeSync(dfd); }
  } catch { /* ignore */ }
}
