// PyTorch checkpoints (torch.save's zip format: pytorch_model.bin, mm_projector.bin, *.pt) read without Python
// and without running any of the pickle's code. The pickle is interpreted by a restricted machine that knows
// only how a state dict is rebuilt: dicts / OrderedDicts, lists, tuples, numbers and strings, the storage
// classes, and the tensor rebuild functions (torch._utils._rebuild_tensor_v2 and the Parameter wrappers). Any
// other global (os.system, builtins.eval, a class to instantiate, ...) is an error that names it, raised when
// the pickle names it, before anything is called. Tensors come out as the engine's host tensors (float32 from
// F32 / F16 / BF16 / F64 storages, int32 from the integer ones, as readSafetensors does); strided views are
// gathered; storages are read from the archive per tensor (positioned reads), never the whole file at once.
import * as fs from 'fs';
import { describeFsError, HostTensor, hostTensorFromBytes, ReadOptions } from './safetensors';
import { readZipEntries, readZipEntry, ZipEntry, ZipError } from './zip';

export class TorchPickleError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`torch checkpoint: ${file}: ${problem}`);
    this.name = 'TorchPickleError';
  }
}

// Storage class -> safetensors dtype (element size from the safetensors table).
const STORAGES: Record<string, [string, number]> = {
  FloatStorage: ['F32', 4], HalfStorage: ['F16', 2], BFloat16Storage: ['BF16', 2], DoubleStorage: ['F64', 8],
  LongStorage: ['I64', 8], IntStorage: ['I32', 4], ShortStorage: ['I16', 2], CharStorage: ['I8', 1], ByteStorage: ['U8', 1], BoolStorage: ['BOOL', 1],
};
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
    if (module === 'torch' && name in STORAGES) return { kind: 'global', qualname };
    if (CALLABLES.has(qualname) || TYPES.has(qualname)) return { kind: 'global', qualname };
    return fail(`refuses the global ${qualname}: a checkpoint's pickle may only rebuild tensors (torch._utils._rebuild_tensor_v2, the storage classes, collections.OrderedDict); this one names other code, which is never run`);
  };
  const setItem = (d: Value, k: Value, v: Value) => {
    if (!(d instanceof Map)) fail('SETITEM on something that is not a dict');
    (d as Map<Value, Value>).set(k, v);
  };
  const call = (fn: Value, args: Value): Value => {
    if (!isKind(fn, 'global')) return fail('REDUCE of something that is not an allowed global');
    const a = itemsOf(args) ?? fail(`arguments of ${fn.qualname} are not a tuple`);
    switch (fn.qualname) {
      case 'collections.OrderedDict':
        return new Map();
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, offset, size, stride] = a;
        const shape = itemsOf(size), strides = itemsOf(stride);
        if (!isKind(storage, 'storage') || typeof offset !== 'number' || !shape || !strides || shape.length !== strides.length ||
          ![...shape, ...strides].every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0))
          return fail(`${fn.qualname} with malformed arguments`);
        return { kind: 'tensor', storage, offset, shape: shape as number[], stride: strides as number[] };
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        return isKind(a[0], 'tensor') ? a[0] : fail(`${fn.qualname} of something that is not a tensor`);
      case 'torch._tensor._rebuild_from_type_v2': {
        const [inner, type, innerArgs] = a;
        if (!isKind(type, 'global') || !TYPES.has(type.qualname)) return fail('_rebuild_from_type_v2 of a type that is not a tensor class');
        return call(inner, innerArgs);
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
        const cls = (pid![1] as Global).qualname.replace(/^torch\./, '');
        const info = STORAGES[cls] ?? fail(`unknown storage class ${(pid![1] as Global).qualname}`);
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

/** Streams a torch.save zip's tensors one at a time (each read from the archive when its turn comes). */
export function forEachTorchTensor(file: string, options: ReadOptions, fn: (name: string, t: HostTensor) => void): void {
  withTorchBin(file, (fd, entries, prefix, dict) => {
    let any = false;
    for (const [name, v] of dict) {
      if (typeof name !== 'string' || !isKind(v, 'tensor')) continue; // e.g. a step counter beside the tensors
      any = true;
      if (options.filter && !options.filter(name)) continue;
      fn(name, materialise(fd, file, entries, prefix, name, v));
    }
    if (!any && dict.size > 0) throw new TorchPickleError(file, 'the pickled dict holds no tensors');
  });
}

function withTorchBin<T>(file: string, body: (fd: number, entries: Map<string, ZipEntry>, prefix: string, dict: Map<Value, Value>) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new TorchPickleError(file, describeFsError(e));
  }
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

function materialise(fd: number, file: string, entries: Map<string, ZipEntry>, prefix: string, name: string, t: TensorRef): HostTensor {
  const es = t.storage.elementSize;
  const entry = entries.get(`${prefix}data/${t.storage.key}`);
  if (!entry) throw new TorchPickleError(file, `tensor '${name}': its storage ${t.storage.key} is not in the archive`);
  if (entry.size < t.storage.numel * es) throw new TorchPickleError(file, `tensor '${name}': storage ${t.storage.key} has ${entry.size} bytes for ${t.storage.numel} elements of ${es} (truncated?)`);
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (numel === 0) return hostTensorFromBytes(file, name, t.storage.dtype, new Uint8Array(0), t.shape);
  // the last element it reaches, within the storage
  const last = t.offset + t.shape.reduce((a, n, i) => a + (n - 1) * t.stride[i], 0);
  if (last >= t.storage.numel) throw new TorchPickleError(file, `tensor '${name}' reaches element ${last} of a storage of ${t.storage.numel}`);
  let contiguous = true;
  for (let i = t.shape.length - 1, want = 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== want) contiguous = false;
    want *= t.shape[i];
  }
  if (contiguous) return hostTensorFromBytes(file, name, t.storage.dtype, readZipEntry(fd, file, entry, t.offset * es, numel * es), t.shape);
  // a strided view (e.g. a transposed weight saved as such): gather its elements in row-major order
  const span = readZipEntry(fd, file, entry, t.offset * es, (last - t.offset + 1) * es);
  const raw = new Uint8Array(numel * es);
  const idx = new Array<number>(t.shape.length).fill(0);
  for (let k = 0; k < numel; k++) {
    let src = 0;
    for (let d = 0; d < idx.length; d++) src += idx[d] * t.stride[d];
    raw.set(span.subarray(src * es, src * es + es), k * es);
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d] < t.shape[d]) break;
      idx[d] = 0;
    }
  }
  return hostTensorFromBytes(file, name, t.storage.dtype, raw, t.shape);
}
