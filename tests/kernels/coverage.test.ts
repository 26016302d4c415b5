// Every op of the native op table (native/core/ops.def) has a test that calls it, and the CPU and CUDA
// addons (when built) expose the same table.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { backendInfo, opNames } from '../../src';
import { tryCuda } from '../../src/native';

describe('op table coverage', () => {
  const sources = fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.ts') && f !== 'coverage.test.ts')
    .map((f) => fs.readFileSync(path.join(__dirname, f), 'utf8')).join('\n');

  for (const op of opNames()) {
    it(`${op} is exercised by a kernel test`, () => {
      expect(sources).toMatch(new RegExp(`kernels\\.${op}\\(`));
    });
  }

  it('the table matches the exported kernels', async () => {
    const { kernels } = await import('../../src');
    expect(Object.keys(kernels).sort()).toEqual([...opNames()].sort());
  });

  it.skipIf(!tryCuda())('the CUDA addon exposes the same op table', () => {
    expect(tryCuda()!.opNames()).toEqual(opNames());
  });

  it('backendInfo reports the CPU GEMM and why CUDA is or is not available', () => {
    const info = backendInfo();
    expect(info.cpu.gemm).toMatch(/^(openblas|builtin)/);
    expect(info.cpu.threads).toBeGreaterThan(0);
    if (!info.cuda.available) expect(info.cuda.reason).toMatch(/\w/);
  });
});
