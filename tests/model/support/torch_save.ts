// A minimal torch.save writer for tests (the zip layout and the protocol-2 pickle torch.save writes for a dict of
// float32 tensors): each tensor names a storage (shared by key), an offset, a shape and strides, so that views
// (stride 0, transposes) can be written as torch writes them. Only what tests/model/*.test.ts need.
import * as fs from 'fs';
import { writeZip } from '../../../src/io/zip';

export interface TorchTensorSpec {
  shape: number[];
  /** Row-major when absent. */
  stride?: number[];
  offset?: number;
  /** The storage's key; the tensor's own when absent. */
  storage?: string;
  /** The storage's elements (float32), given once per key. */
  data?: Float32Array;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const int = (n: number) => {
  const b = Buffer.alloc(5);
  b[0] = 0x4a; // BININT
  b.writeInt32LE(n, 1);
  return b;
};
const str = (s: string) => Buffer.concat([Buffer.from([0x58]), u32(Buffer.byteLength(s)), Buffer.from(s)]); // BINUNICODE
const glob = (module: string, name: string) => Buffer.from(`c${module}\n${name}\n`, 'latin1');
const tuple = (items: Buffer[]) => Buffer.concat([Buffer.from('('), ...items, Buffer.from('t')]);

/** Writes `tensors` as torch.save writes an OrderedDict of float32 tensors. */
export function torchSave(file: string, tensors: [string, TorchTensorSpec][]): void {
  const storages = new Map<string, Float32Array>();
  const body: Buffer[] = [];
  tensors.forEach(([name, t], i) => {
    const key = t.storage ?? String(i);
    if (t.data) storages.set(key, t.data);
    const data = storages.get(key);
    if (!data) throw new Error(`torchSave: storage ${key} has no data`);
    const stride = t.stride ?? t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    const pid = Buffer.concat([tuple([str('storage'), glob('torch', 'FloatStorage'), str(key), str('cpu'), int(data.length)]), Buffer.from('Q')]);
    const args = tuple([pid, int(t.offset ?? 0), tuple(t.shape.map(int)), tuple(stride.map(int)), Buffer.from([0x89]), glob('collections', 'OrderedDict'), Buffer.from(')R')]);
    body.push(str(name), glob('torch._utils', '_rebuild_tensor_v2'), args, Buffer.from('R'));
  });
  const pkl = Buffer.concat([Buffer.from([0x80, 2]), Buffer.from('}('), ...body, Buffer.from('u.')]);
  const entries: [string, Uint8Array][] = [['archive/data.pkl', pkl], ['archive/byteorder', Buffer.from('little')], ['archive/version', Buffer.from('3\n')]];
  for (const [key, data] of storages) entries.push([`archive/data/${key}`, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]);
  fs.writeFileSync(file, writeZip(entries.map(([name, data]) => ({ name, data })), { store: true })); // stored, as torch.save writes
}

