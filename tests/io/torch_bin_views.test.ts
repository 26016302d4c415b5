// Views in PyTorch checkpoints (src/io/torch_bin.ts) and pickles that must be refused with a message, never a crash,
// a hang or a huge allocation. views.bin (scripts/make_torch_bin_views_fixture.py, torch.save) holds strided views of
// every element size and 'junk' = torch.zeros(1).expand(20000, 20000): 1.6 KB on disk that torch.load keeps as a
// view; a reader that copies it takes 1.6 GB and minutes. It is read only when asked for with the shape it has.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { forEachTorchTensor, readTorchBin, unpickle } from '../../src/io/torch_bin';
import { torchSave } from '../model/support/torch_save';
import { tempDirs } from '../support/tmp';

const dir = path.join(__dirname, '..', 'fixtures', 'torch_bin_views');
const views = path.join(dir, 'views.bin');
const tmp = tempDirs('torchviews');
const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Record<string, { shape: number[]; stride: number[]; values: number[] }>;

describe('views in torch.save files', () => {
  it('strided views of every element size read as torch saved them; a small stride-0 expand is copied', () => {
    const got = readTorchBin(views, { filter: (n) => n !== 'junk' });
    expect([...got.keys()].sort()).toEqual(Object.keys(expected).sort());
    for (const [name, want] of Object.entries(expected)) {
      const t = got.get(name)!;
      expect(t.shape, name).toEqual(want.shape);
      expect(Array.from(t.data), name).toEqual(name === 'i64_t' ? want.values : Array.from(Float32Array.from(want.values)));
    }
  });

  it("a stride-0 view far larger than its storage is refused, naming file and tensor, unless asked for with its shape", () => {
    const t0 = Date.now();
    expect(() => readTorchBin(views)).toThrow(/torch checkpoint: .*views\.bin: tensor 'junk': shape \[20000, 20000\] with strides \[0, 0\] repeats a storage of 1 elements: a copy would take 1600000000 bytes/);
    // asked for with another shape: refused by its shape before anything is read
    expect(() => forEachTorchTensor(views, { filter: (n) => n === 'junk', expectShape: () => [20000, 2] }, () => undefined))
      .toThrow(/views\.bin: junk has shape \[20000, 20000\] but the model expects \[20000, 2\]: refused before its data is read/);
    expect(Date.now() - t0).toBeLessThan(10_000); // a bound on the old copy (24-38 s), not a timing;
    // asked for with its own shape (the caller's parameter has it): copied
    const seen: string[] = [];
    forEachTorchTensor(views, { filter: (n) => n === 'repeat', expectShape: () => [4, 3] }, (n, t) => {
      seen.push(n);
      expect(Array.from(t.data)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    });
    expect(seen).toEqual(['repeat']);
  });

  it('shapes beyond any tensor, offsets and element counts that are not integers are refused with a message', () => {
    const d = tmp();
    const huge = path.join(d, 'huge.bin');
    // shape [2^30, 2^30, 2^30] over one element ("Invalid typed array length" before)
    torchSave(huge, [['x', { shape: [2 ** 30, 2 ** 30, 2 ** 30], stride: [0, 0, 0], data: new Float32Array(1) }]]);
    expect(() => readTorchBin(huge)).toThrow(/huge\.bin: tensor 'x': shape \[1073741824, 1073741824, 1073741824\] has \d.* elements, beyond what any tensor can hold/);
    // [2^30, 3] with the last stride 1: more than its storage, refused without allocating
    const wide = path.join(d, 'wide.bin');
    torchSave(wide, [['x', { shape: [2 ** 30, 3], stride: [0, 1], data: new Float32Array(3) }]]);
    expect(() => readTorchBin(wide)).toThrow(/wide\.bin: tensor 'x': shape \[1073741824, 3\] with strides \[0, 1\] repeats a storage of 3 elements/);
    // reaching past its storage
    const past = path.join(d, 'past.bin');
    torchSave(past, [['x', { shape: [2, 2], stride: [2, 1], offset: 1, data: new Float32Array(4) }]]);
    expect(() => readTorchBin(past)).toThrow(/past\.bin: tensor 'x': shape \[2, 2\] with strides \[2, 1\] from offset 1 reaches element 4 of a storage of 4/);

    const pkl = (body: string) => Buffer.concat([Buffer.from([0x80, 2]), Buffer.from(body, 'latin1'), Buffer.from('.')]);
    const tensor = (offset: string) => `ctorch._utils\n_rebuild_tensor_v2\n((X\u0007\u0000\u0000\u0000storagectorch\nFloatStorage\nX\u0001\u0000\u0000\u00000X\u0003\u0000\u0000\u0000cpuK\u0004tQ${offset}(K\u0002t(K\u0001t\u0089ccollections\nOrderedDict\n)RtR`;
    expect(unpickle('x.pkl', pkl(tensor('K\u0000')))).toMatchObject({ kind: 'tensor', offset: 0, shape: [2], stride: [1] });
    // a float storage offset (torch refuses it too), a negative one
    expect(() => unpickle('x.pkl', pkl(tensor('G?\u00e0\u0000\u0000\u0000\u0000\u0000\u0000')))).toThrow(/x\.pkl: torch\._utils\._rebuild_tensor_v2: storage offset 0\.5 is not a non-negative integer/);
    expect(() => unpickle('x.pkl', pkl(tensor('J\u00fe\u00ff\u00ff\u00ff')))).toThrow(/storage offset -2 is not a non-negative integer/);
  });

  it("torch.constructor / torch.__proto__ are refused as globals, and as storage classes", () => {
    const pkl = (body: string) => Buffer.concat([Buffer.from([0x80, 2]), Buffer.from(body, 'latin1'), Buffer.from('.')]);
    expect(() => unpickle('x.pkl', pkl('ctorch\nconstructor\n)R'))).toThrow(/x\.pkl: refuses the global torch\.constructor/);
    expect(() => unpickle('x.pkl', pkl('ctorch\n__proto__\n)R'))).toThrow(/refuses the global torch\.__proto__/);
    expect(() => unpickle('x.pkl', pkl('ctorch\ntoString\n)R'))).toThrow(/refuses the global torch\.toString/);
    expect(() => unpickle('x.pkl', pkl('(X\u0007\u0000\u0000\u0000storagectorch\nhasOwnProperty\nX\u0001\u0000\u0000\u00000X\u0003\u0000\u0000\u0000cpuK\u0004tQ'))).toThrow(/refuses the global torch\.hasOwnProperty/);
  });

  it('REDUCE arguments that contain themselves are an error, not a stack overflow', () => {
    // _rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, <the list itself>): a list appended to itself
    const cyc = 'ctorch._tensor\n_rebuild_from_type_v2\n]q\u0000(ctorch._tensor\n_rebuild_from_type_v2\nctorch\nTensor\nh\u0000eR';
    const pkl = Buffer.concat([Buffer.from([0x80, 2]), Buffer.from(cyc, 'latin1'), Buffer.from('.')]);
    expect(() => unpickle('cyc.pkl', pkl)).toThrow(/cyc\.pkl: _rebuild_from_type_v2 nested more than 4 deep/);
  });
});
