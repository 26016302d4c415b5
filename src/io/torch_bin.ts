// PyTorch checkpoints (torch.save's zip format: pytorch_model.bin, mm_projector.bin, *.pt) read without Python
// and without running any of the pickle's code. The pickle is interpreted by a restricted machine that knows
// only how a state dict is rebuilt: dicts / OrderedDicts, lists, tuples, numbers and strings, the storage
// classes, and the tensor rebuild functions (torch._utils._rebuild_tensor_v2 and the Parameter wrappers). Any
// other global (os.system, builtins.eval, a class to instantiate, ...) is an error that names it, raised when
// the pickle names it, before anything is called. Tensors come out as the engine's host tensors (float32 from
// F32 / F16 / BF16 / F64 storages, int32 from the integer ones, as readSafetensors does); strided views are
// gathered; storages are read from the archive per tensor (positioned reads), never the whole file at once.
// A view is only ever copied into a tensor of its own when that is bounded: a view that repeats its storage
// (torch.zeros(1).expand(20000, 20000) is 1.6 KB on disk; torch.load keeps it as a view) is refused unless the
// caller asked for it with the shape it expects (ReadOptions.expectShape, which loadCheckpoint gives: the
// parameter's), and readers pass only the tensors the caller wants (ReadOptions.filter) to materialise.
import * as fs from 'fs';
import { checkExpectedShape, HostTensor, hostTensorFromBytes, openRegularFile, ReadOptions } from './safetensors';
import { readZipEntries, readZipEntry, ZipEntry, ZipError } from './zip';

export class TorchPickleError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`torch checkpoint: ${file}: ${problem}`);
    this.name = 'TorchPickleError';
  }
}

// Storage class -> safetensors dtype (element size from the safetensors table). A Map: a name from the pickle
// (torch.constructor, torch.__proto__) must never find an object's inherited properties.
const STORAGES = new Map<string, [string, number]>(Object.entries({
  FloatStorage: ['F32', 4], HalfStorage: ['F16', 2], BFloat16Storage: ['BF16', 2], DoubleStorage: ['F64', 8],
  LongStorage: ['I64', 8], IntStorage: ['I32', 4], ShortStorage: ['I16', 2], CharStorage: ['I8', 1], ByteStorage: ['U8', 1], BoolStorage: ['BOOL', 1],
}));
// _rebuild_from_type_v2 calls its inner rebuild function; a state dict nests it once. A pickle whose arguments
// contain themselves would nest it forever.
const MAX_REBUILD_DEPTH = 4;
// The elements a strided view may have beyond those of its storage before it counts as a repeat of it (a view of
// distinct elements never has more than its storage): below this it is cheap to copy anyway.
const SMALL_VIEW = 1 << 20;
// The callables a state dict's pickle may name (module.name), and the storage classes it refers to.
const CALLABLES = new Set(['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_parameter', 'torch._utils._rebuild_parameter_with_state', 'torch._tensor._rebuild_from_type_v2']);
// Types that may appear as arguments only (never called): the tensor classes of _rebuild_from_type_v2.
const TYPES = new Set(['torch.Tensor', 'torch.nn.parameter.Parameter']);

interface Global { kind: 'global'; qualname: string }
interface Storage { kind: 'storage'; dtype: string; elementSize: number; key: string; numel: number }
export interface TensorRef { kind: 'tensor'; storage: Storage; offset: number; shape: number[]; stride: number[] }
type Value = null | boolean | number | bigint | string | Uint8Array | Value[] | Map<Value, Value> | Global | Storage | TensorRef | { kind: 'mark' } | { kind: 'tuple'; items: Value[] };

const MARK = { kind: 'mark' } as const;
/** A scalar of the pickle for an error message (never a walk into containers, which may contain themselves). */
const show = (v: Value): string => (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' ? String(v) : typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : v === null ? 'None' : Array.isArray(v) ? 'a list' : v instanceof Map ? 'a dict' : 'an object');
const isKind = <K extends string>(v: Value, k: K): v is Extract<Value, { kind: K }> => v !== null && typeof v === 'object' && !(v instanceof Map) && !Array.isArray(v) && !(v instanceof Uint8Array) && (v as { kind?: string }).kind === k;
const itemsOf = (v: Value): Value[] | null => (Array.isArray(v) ? v : isKind(v, 'tuple') ? v.items : null);

/** Runs the restricted pickle machine over data.pkl; returns the unpickled value. */
export function unpickle(file: string, bytes: Uint8Array): Value {
  const fail = (problem: string): never => {
    throw new TorchPickleError(file, problem);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  let p = 0;
  const need = (n: number) => {
    if (p + n > bytes.length) fail(`the pickle ends inside an opcode (byte ${p} of ${bytes.length}: truncated data.pkl?)`);
  };
  const u8 = () => (need(1), bytes[p++]);
  const u16 = () => (need(2), (p += 2), view.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
  const str = (n: number) => (need(n), (p += n), Buffer.from(bytes.buffer, bytes.byteOffset + p - n, n).toString('utf8'));
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) fail('a text argument without its newline');
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + p, end - p).toString('utf8');
    p = end + 1;
    return s;
  };
  const pop = (): Value => (stack.length ? stack.pop()! : fail('pop from an empty stack (malformed pickle)'));
  const popMark = (): Value[] => {
    for (let k = stack.length - 1; k >= 0; k--) {
      if (stack[k] === MARK) {
        const items = stack.splice(k);
        items.shift();
        return items;
      }
    }
    return fail('no MARK on the stack (malformed pickle)');
  };
  const global = (module: string, name: string): Global => {
    const qualname = `${module}.${name}`;
    if (module === 'torch' && STORAGES.has(name)) return { kind: 'global', qualname };
    if (CALLABLES.has(qualname) || TYPES.has(qualname)) return { kind: 'global', qualname };
    return fail(`refuses the global ${qualname}: a checkpoint's pickle may only rebuild tensors (torch._utils._rebuild_tensor_v2, the storage classes, collections.OrderedDict); this one names other code, which is never run`);
  };
  const setItem = (d: Value, k: Value, v: Value) => {
    if (!(d instanceof Map)) fail('SETITEM on something that is not a dict');
    (d as Map<Value, Value>).set(k, v);
  };
  const call = (fn: Value, args: Value, depth = 0): Value => {
    if (!isKind(fn, 'global')) return fail('REDUCE of something that is not an allowed global');
    if (depth > MAX_REBUILD_DEPTH) return fail(`_rebuild_from_type_v2 nested more than ${MAX_REBUILD_DEPTH} deep (arguments that contain themselves?)`);
    const a = itemsOf(args) ?? fail(`arguments of ${fn.qualname} are not a tuple`);
    switch (fn.qualname) {
      case 'collections.OrderedDict':
        return new Map();
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, offset, size, stride] = a;
        const shape = itemsOf(size), strides = itemsOf(stride);
        const count = (x: Value) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
        if (!isKind(storage, 'storage') || !shape || !strides || shape.length !== strides.length)
          return fail(`${fn.qualname} with malformed arguments (a storage, an offset, a size and a stride tuple of one length)`);
        // torch takes only integers here: a float offset (BINFLOAT 0.5) is refused as torch refuses it
        if (!count(offset)) return fail(`${fn.qualname}: storage offset ${show(offset)} is not a non-negative integer`);
        if (!shape.every(count) || !strides.every(count)) return fail(`${fn.qualname}: size (${shape.map(show).join(', ')}) or stride (${strides.map(show).join(', ')}) holds something that is not a non-negative integer`);
        return { kind: 'tensor', storage, offset: offset as number, shape: shape as number[], stride: strides as number[] };
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        return isKind(a[0], 'tensor') ? a[0] : fail(`${fn.qualname} of something that is not a tensor`);
      case 'torch._tensor._rebuild_from_type_v2': {
        const [inner, type, innerArgs] = a;
        if (!isKind(type, 'global') || !TYPES.has(type.qualname)) return fail('_rebuild_from_type_v2 of a type that is not a tensor class');
        return call(inner, innerArgs, depth + 1);
      }
      default:
        return fail(`${fn.qualname} is a type here, not something to call`);
    }
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); p += 8; break; // FRAME
      case 0x2e: return stack.length === 1 ? stack[0] : fail(`STOP with ${stack.length} values on the stack`); // '.'
      case 0x7d: stack.push(new Map()); break; // '}' EMPTY_DICT
      case 0x5d: stack.push([]); break; // ']' EMPTY_LIST
      case 0x29: stack.push({ kind: 'tuple', items: [] }); break; // ')' EMPTY_TUPLE
      case 0x28: stack.push(MARK); break; // '(' MARK
      case 0x4e: stack.push(null); break; // 'N'
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4b: stack.push(u8()); break; // 'K' BININT1
      case 0x4d: stack.push(u16()); break; // 'M' BININT2
      case 0x4a: need(4); p += 4; stack.push(view.getInt32(p - 4, true)); break; // 'J' BININT
      case 0x8a: { // LONG1
        const n = u8();
        need(n);
        let v = 0n;
        for (let k = n - 1; k >= 0; k--) v = (v << 8n) | BigInt(bytes[p + k]);
        if (n > 0 && bytes[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: need(8); p += 8; stack.push(view.getFloat64(p - 8, false)); break; // 'G' BINFLOAT
      case 0x58: stack.push(str(u32())); break; // 'X' BINUNICODE
      case 0x8c: stack.push(str(u8())); break; // SHORT_BINUNICODE
      case 0x8d: { need(8); const n = Number(view.getBigUint64(p, true)); p += 8; stack.push(str(n)); break; } // BINUNICODE8
      case 0x54: stack.push(str(u32())); break; // 'T' BINSTRING
      case 0x55: stack.push(str(u8())); break; // 'U' SHORT_BINSTRING
      case 0x42: { const n = u32(); need(n); stack.push(bytes.slice(p, p + n)); p += n; break; } // 'B' BINBYTES
      case 0x43: { const n = u8(); need(n); stack.push(bytes.slice(p, p + n)); p += n; break; } // 'C' SHORT_BINBYTES
      case 0x71: memo.set(u8(), stack[stack.length - 1] ?? fail('BINPUT on an empty stack')); break; // 'q'
      case 0x72: memo.set(u32(), stack[stack.length - 1] ?? fail('LONG_BINPUT on an empty stack')); break; // 'r'
      case 0x94: memo.set(memo.size, stack[stack.length - 1] ?? fail('MEMOIZE on an empty stack')); break;
      case 0x68: { const k = u8(); stack.push(memo.has(k) ? memo.get(k)! : fail(`BINGET of unknown memo ${k}`)); break; } // 'h'
      case 0x6a: { const k = u32(); stack.push(memo.has(k) ? memo.get(k)! : fail(`LONG_BINGET of unknown memo ${k}`)); break; } // 'j'
      case 0x63: { const module = line(); stack.push(global(module, line())); break; } // 'c' GLOBAL
      case 0x93: { const name = pop(), module = pop(); if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL of non-strings'); stack.push(global(module as string, name as string)); break; }
      case 0x74: stack.push({ kind: 'tuple', items: popMark() }); break; // 't' TUPLE
      case 0x85: stack.push({ kind: 'tuple', items: [pop()] }); break;
      case 0x86: { const b = pop(), a = pop(); stack.push({ kind: 'tuple', items: [a, b] }); break; }
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push({ kind: 'tuple', items: [a, b, c] }); break; }
      case 0x6c: stack.push(popMark()); break; // 'l' LIST
      case 0x64: { const items = popMark(); const d = new Map<Value, Value>(); for (let k = 0; k + 1 < items.length; k += 2) d.set(items[k], items[k + 1]); stack.push(d); break; } // 'd' DICT
      case 0x61: { const v = pop(); const l = stack[stack.length - 1]; if (!Array.isArray(l)) fail('APPEND to something that is not a list'); (l as Value[]).push(v); break; } // 'a'
      case 0x65: { const items = popMark(); const l = stack[stack.length - 1]; if (!Array.isArray(l)) fail('APPENDS to something that is not a list'); (l as Value[]).push(...items); break; } // 'e'
      case 0x73: { const v = pop(), k = pop(); setItem(stack[stack.length - 1], k, v); break; } // 's' SETITEM
      case 0x75: { const items = popMark(); const d = stack[stack.length - 1]; for (let k = 0; k + 1 < items.length; k += 2) setItem(d, items[k], items[k + 1]); break; } // 'u'
      case 0x52: { const args = pop(), fn = pop(); stack.push(call(fn, args)); break; } // 'R' REDUCE
      case 0x62: pop(); break; // 'b' BUILD: the state of an OrderedDict (its _metadata) or a Parameter: not needed
      case 0x51: { // 'Q' BINPERSID: ('storage', storage class, key, location, numel)
        const pid = itemsOf(pop());
        if (!pid || pid[0] !== 'storage' || !isKind(pid[1], 'global') || typeof pid[2] !== 'string' || typeof pid[4] !== 'number') fail('a persistent id that is not a storage reference');
        const qualname = (pid![1] as Global).qualname;
        const info = (qualname.startsWith('torch.') ? STORAGES.get(qualname.slice('torch.'.length)) : undefined) ?? fail(`unknown storage class ${qualname}`);
        if (!Number.isSafeInteger(pid![4]) || (pid![4] as number) < 0) fail(`storage ${String(pid![2])}: element count ${show(pid![4])} is not a non-negative integer`);
        stack.push({ kind: 'storage', dtype: info[0], elementSize: info[1], key: pid![2] as string, numel: pid![4] as number });
        break;
      }
      default:
        return fail(`unsupported pickle opcode 0x${op.toString(16)} at byte ${p - 1} (a state dict never needs it)`);
    }
  }
}

/** The tensors of a torch.save zip (a state dict: name -> tensor), as host tensors. */
export function readTorchBin(file: string, options: ReadOptions = {}): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  forEachTorchTensor(file, options, (name, t) => out.set(name, t));
  return out;
}

/** The names of a torch.save zip's tensors (its pickle only: no storage is read). */
export function torchBinTensorNames(file: string): string[] {
  return withTorchBin(file, (_fd, _entries, _prefix, dict) => [...dict].filter(([n, v]) => typeof n === 'string' && isKind(v, 'tensor')).map(([n]) => n as string));
}

/**
 * Streams a torch.save zip's tensors one at a time (each read from the archive when its turn comes). Only those
 * `options.filter` passes are materialised, each after its shape is checked against `options.expectShape`.
 */
export function forEachTorchTensor(file: string, options: ReadOptions, fn: (name: string, t: HostTensor) => void): void {
  withTorchBin(file, (fd, entries, prefix, dict) => {
    const tensors = [...dict].filter((e): e is [string, TensorRef] => typeof e[0] === 'string' && isKind(e[1], 'tensor')); // not e.g. a step counter
    if (!tensors.length && dict.size > 0) throw new TorchPickleError(file, 'the pickled dict holds no tensors');
    const wanted = tensors.filter(([name]) => !options.filter || options.filter(name));
    // every shape checked before the first tensor is read, so a misfit is refused before the caller gets anything
    for (const [name, t] of wanted) checkExpectedShape(file, name, t.shape, options, (problem) => new TorchPickleError(file, problem));
    for (const [name, t] of wanted) {
      // a view the caller asked for with the shape it needs (the parameter's) is copied whatever its strides
      const vouched = options.expectShape?.(name) !== undefined;
      fn(name, materialise(fd, file, entries, prefix, name, t, vouched));
    }
  });
}

function withTorchBin<T>(file: string, body: (fd: number, entries: Map<string, ZipEntry>, prefix: string, dict: Map<Value, Value>) => T): T {
  const { fd } = openRegularFile(file, (problem) => new TorchPickleError(file, problem));
  try {
    let entries: Map<string, ZipEntry>;
    try {
      entries = readZipEntries(fd, file);
    } catch (e) {
      const head = Buffer.alloc(2);
      fs.readSync(fd, head, 0, 2, 0);
      if (head[0] === 0x80) throw new TorchPickleError(file, 'the legacy torch.save format (PyTorch < 1.6, not a zip archive) is not supported: re-save it with a current PyTorch');
      throw e instanceof ZipError ? new TorchPickleError(file, e.message.replace(`zip: ${file}: `, '')) : e;
    }
    const pkl = [...entries.keys()].find((n) => n.endsWith('data.pkl') && n.split('/').length === 2);
    if (!pkl) throw new TorchPickleError(file, 'no <archive>/data.pkl: not a torch.save file');
    const prefix = pkl.slice(0, -'data.pkl'.length);
    const order = entries.get(`${prefix}byteorder`);
    if (order && Buffer.from(readZipEntry(fd, file, order)).toString() !== 'little') throw new TorchPickleError(file, 'big-endian storages are not supported');
    const root = unpickle(file, readZipEntry(fd, file, entries.get(pkl)!));
    let dict = root instanceof Map ? root : null;
    // a training checkpoint wrapping the state dict
    for (const key of ['state_dict', 'model']) if (dict && dict.size === 1 && dict.get(key) instanceof Map) dict = dict.get(key) as Map<Value, Value>;
    if (!dict) throw new TorchPickleError(file, 'the pickle holds no dict of tensors (a state dict)');
    return body(fd, entries, prefix, dict);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A tensor of its own from a (possibly strided) view of a storage. `vouched`: the caller asked for this tensor with
 * the shape it has, so its size is the caller's; otherwise a view with more elements than its storage (a stride-0
 * repeat: torch.zeros(1).expand(20000, 20000)) is refused before anything is allocated.
 */
function materialise(fd: number, file: string, entries: Map<string, ZipEntry>, prefix: string, name: string, t: TensorRef, vouched: boolean): HostTensor {
  const fail = (problem: string): never => {
    throw new TorchPickleError(file, `tensor '${name}': ${problem}`);
  };
  const es = t.storage.elementSize;
  const shapeText = `[${t.shape.join(', ')}]`;
  const entry = entries.get(`${prefix}data/${t.storage.key}`);
  if (!entry) fail(`its storage ${t.storage.key} is not in the archive`);
  if (entry!.size < t.storage.numel * es) fail(`storage ${t.storage.key} has ${entry!.size} bytes for ${t.storage.numel} elements of ${es} (truncated?)`);
  let numel = 1;
  for (const n of t.shape) numel *= n;
  if (numel === 0) return hostTensorFromBytes(file, name, t.storage.dtype, new Uint8Array(0), t.shape);
  if (!Number.isSafeInteger(numel * es)) fail(`shape ${shapeText} has ${numel} elements, beyond what any tensor can hold`);
  // the last element it reaches, within the storage (a sum past 2^53 may round, but stays past any storage)
  let last = t.offset;
  for (let i = 0; i < t.shape.length; i++) last += (t.shape[i] - 1) * t.stride[i];
  if (!(last < t.storage.numel)) fail(`shape ${shapeText} with strides [${t.stride.join(', ')}] from offset ${t.offset} reaches element ${last} of a storage of ${t.storage.numel}`);
  if (!vouched && numel > Math.max(t.storage.numel, SMALL_VIEW))
    fail(`shape ${shapeText} with strides [${t.stride.join(', ')}] repeats a storage of ${t.storage.numel} elements: a copy would take ${numel * es} bytes (torch keeps it as a view), and nothing asked for this tensor with this shape: refused`);
  let contiguous = true;
  for (let i = t.shape.length - 1, want = 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== want) contiguous = false;
    want *= t.shape[i];
  }
  if (contiguous) return hostTensorFromBytes(file, name, t.storage.dtype, readZipEntry(fd, file, entry!, t.offset * es, numel * es), t.shape);
  // a strided view (e.g. a transposed weight saved as such): its elements gathered in row-major order, row by row
  const span = readZipEntry(fd, file, entry!, t.offset * es, (last - t.offset + 1) * es);
  const raw = new Uint8Array(numel * es);
  // elements moved as whole words: 1, 2 or 4 bytes per word, es / word words per element
  const word = es >= 4 ? 4 : es, per = es / word;
  const Words = word === 4 ? Uint32Array : word === 2 ? Uint16Array : Uint8Array;
  const aligned = span.byteOffset % word === 0 ? span : span.slice();
  const src = new Words(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.byteLength / word), dst = new Words(raw.buffer);
  const rank = t.shape.length;
  const inner = t.shape[rank - 1], innerStride = t.stride[rank - 1] * per;
  const idx = new Array<number>(rank).fill(0);
  for (let k = 0; k < numel * per;) {
    let base = 0;
    for (let d = 0; d < rank - 1; d++) base += idx[d] * t.stride[d];
    base *= per;
    for (let j = 0; j < inner; j++) for (let w = 0; w < per; w++) dst[k++] = src[base + j * innerStride + w];
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d] < t.shape[d]) break;
      idx[d] = 0;
    }
  }
  return hostTensorFromBytes(file, name, t.storage.dtype, raw, t.shape);
}
