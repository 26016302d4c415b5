// safetensors files refused as the safetensors library refuses them, and files that are not files: a gap or trailing
// bytes in the data section ('invalid offset'), a shape whose dimensions overflow even when one is 0, dtype names that
// are properties of every JS object, FIFOs, devices, dangling and looping symbolic links (each an error naming the
// file and the problem, never a hang); a reader's expected shapes refuse a misfit before its data is read; the
// checksum of our files is checked when a filter leaves tensors out (ReadOptions.verify).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { CHECKSUM_KEY, forEachSafetensor, readSafetensors, readSafetensorsHeader, SafetensorsError, writeSafetensors } from '../../src/io/safetensors';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('ststrict');

function rawFile(file: string, header: object, data: Uint8Array = new Uint8Array(0)): string {
  const h = Buffer.from(JSON.stringify(header));
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([n, h, data]));
  return file;
}
const refused = (file: string, re: RegExp) => {
  let err: unknown;
  try {
    readSafetensors(file);
  } catch (e) {
    err = e;
  }
  expect(err, String(re)).toBeInstanceOf(SafetensorsError);
  expect((err as Error).message).toContain(file);
  expect((err as Error).message).toMatch(re);
};

describe('safetensors: what the format refuses', () => {
  it('a gap before, between or after the tensors (safetensors: invalid offset / incomplete buffer)', () => {
    const d = tmp();
    refused(rawFile(path.join(d, 'gap0.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)),
      /tensor 'a': invalid offset: data_offsets \[4, 8\) leave bytes \[0, 4\) of the data section to no tensor/);
    refused(rawFile(path.join(d, 'gap1.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12)),
      /tensor 'b': invalid offset: data_offsets \[8, 12\) leave bytes \[4, 8\)/);
    refused(rawFile(path.join(d, 'tail.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(9)),
      /the tensors end at byte 4 of a data section of 9 bytes: 5 bytes after them belong to no tensor/);
    refused(rawFile(path.join(d, 'empty_inside.safetensors'), { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] } }, new Uint8Array(8)),
      /tensor 'e': invalid offset: data_offsets \[4, 4\) begin inside the tensor before it, which ends at 8/);
    // empty tensors at the boundaries are fine, and so is a file of empty tensors only
    const ok = rawFile(path.join(d, 'ok.safetensors'), { e: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, z: { dtype: 'I64', shape: [0], data_offsets: [4, 4] } }, new Uint8Array(4));
    expect([...readSafetensors(ok).keys()].sort()).toEqual(['a', 'e', 'z']);
  });

  it('a shape whose product overflows is refused even when a dimension is 0', () => {
    const d = tmp();
    refused(rawFile(path.join(d, 'zero.safetensors'), { junk: { dtype: 'F32', shape: [2 ** 52, 2 ** 52, 0], data_offsets: [0, 0] } }),
      /tensor 'junk': shape \[4503599627370496, 4503599627370496, 0\] overflows/);
    refused(rawFile(path.join(d, 'big.safetensors'), { junk: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /tensor 'junk': shape \[1099511627776, 1099511627776\] overflows/);
  });

  it("dtype names that every JS object has ('constructor', '__proto__', 'toString') are unknown dtypes", () => {
    const d = tmp();
    for (const dtype of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      refused(rawFile(path.join(d, `${dtype}.safetensors`), { w: { dtype, shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
        new RegExp(`tensor 'w': unknown dtype '${dtype}'`));
    }
  });
});

describe('safetensors: what is not a regular file', () => {
  const good = (d: string) => {
    const f = path.join(d, 'good.safetensors');
    writeSafetensors(f, { a: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } });
    return f;
  };

  it('dangling and looping symbolic links, devices and directories say what they are', () => {
    if (process.platform === 'win32') return;
    const d = tmp();
    fs.symlinkSync(path.join(d, 'nowhere'), path.join(d, 'dangling.safetensors'));
    refused(path.join(d, 'dangling.safetensors'), /cannot open: a dangling symbolic link \(to .*nowhere, which does not exist\)/);
    fs.symlinkSync('loop.safetensors', path.join(d, 'loop.safetensors'));
    refused(path.join(d, 'loop.safetensors'), /cannot open: a symbolic link loop/);
    if (fs.existsSync('/dev/zero')) {
      fs.symlinkSync('/dev/zero', path.join(d, 'zero.safetensors'));
      refused(path.join(d, 'zero.safetensors'), /cannot open: a device, not a regular file/);
    }
    fs.mkdirSync(path.join(d, 'dir.safetensors'));
    refused(path.join(d, 'dir.safetensors'), /cannot open: a directory, not a regular file/);
    // a link to a regular file (the Hugging Face cache's layout) reads as the file
    fs.symlinkSync(good(d), path.join(d, 'link.safetensors'));
    expect(Array.from(readSafetensors(path.join(d, 'link.safetensors')).get('a')!.data)).toEqual([1, 2]);
  });

  it('a FIFO is refused at once (opening one blocks until a writer comes)', () => {
    const d = tmp();
    const fifo = path.join(d, 'fifo.safetensors');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return; // no mkfifo here
    const t0 = Date.now();
    refused(fifo, /cannot open: a named pipe \(FIFO\), not a regular file/);
    expect(() => readSafetensorsHeader(fifo)).toThrow(/named pipe/);
    expect(Date.now() - t0).toBeLessThan(10_000); // a bound on a hang (the old reader blocked forever), not a timing;
  });
});

describe('safetensors: what the caller asks for', () => {
  it('an expected shape refuses a misfit before any tensor is given; verify checks the checksum with a filter', () => {
    const d = tmp();
    const f = path.join(d, 'ours.safetensors');
    writeSafetensors(f, { a: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) }, b: { dtype: 'float32', shape: [3], data: new Float32Array([3, 4, 5]) } }, undefined, { checksum: true });
    const seen: string[] = [];
    expect(() => forEachSafetensor(f, { expectShape: (n) => (n === 'b' ? [4] : [2]) }, (n) => seen.push(n)))
      .toThrow(/ours\.safetensors: b has shape \[3\] but the model expects \[4\]/);
    expect(seen).toEqual([]); // refused before 'a' was given
    // a flipped byte in a tensor the filter leaves out: found with verify, as without a filter
    const bytes = fs.readFileSync(f);
    bytes[bytes.length - 1] ^= 0x40;
    fs.writeFileSync(f, bytes);
    expect(readSafetensorsHeader(f).metadata[CHECKSUM_KEY]).toMatch(/^[0-9a-f]{64}$/);
    forEachSafetensor(f, { filter: (n) => n === 'a' }, () => undefined); // no verify: not read, not checked
    expect(() => forEachSafetensor(f, { filter: (n) => n === 'a', verify: true }, () => undefined)).toThrow(/ours\.safetensors: the tensor data does not match its checksum/);
    expect(() => forEachSafetensor(f, {}, () => undefined)).toThrow(/does not match its checksum/);
  });
});
