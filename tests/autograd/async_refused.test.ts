// scope, noGrad and autocast refuse an async fn (an API trial found noGrad taking one, with gradients back on after its first
// await), and the refused promise, still running, does not end the process when it rejects later.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { isGradEnabled, noGrad, scope } from '../../src';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('async-refused');
const root = path.resolve(__dirname, '..', '..');

describe('async functions', () => {
  it('noGrad refuses an async fn (gradients would come back on after its first await), as scope does', () => {
    expect(() => noGrad(async () => 0)).toThrow('noGrad: fn must be synchronous (it returned a Promise); wrap each synchronous part instead');
    expect(isGradEnabled()).toBe(true);
    expect(() => scope(async () => 0)).toThrow('scope: fn must be synchronous (it returned a Promise)');
    expect(noGrad(() => isGradEnabled())).toBe(false);
  });

  it("a refused async fn that rejects later does not end the process with an unhandled rejection", () => {
    const script = path.join(tmp(), 'refused.ts');
    fs.writeFileSync(script, [
      `const { noGrad, scope, autocast } = require(${JSON.stringify(path.join(root, 'src'))});`,
      'for (const [name, run] of [["scope", scope], ["noGrad", noGrad], ["autocast", (fn) => autocast("bfloat16", fn)]]) {',
      '  try { run(async () => { await new Promise((r) => setTimeout(r, 1)); throw new Error(name + " failed late"); }); }',
      '  catch (e) { console.log("refused: " + e.message); }',
      '}',
      'setTimeout(() => console.log("still running"), 50);',
    ].join('\n'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', cwd: root, timeout: 120_000 });
    expect(r.stderr).not.toMatch(/failed late/);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('refused: scope: fn must be synchronous');
    expect(r.stdout).toContain('refused: noGrad: fn must be synchronous');
    expect(r.stdout).toContain('refused: autocast: fn must be synchronous');
    expect(r.stdout).toContain('still running');
  }, 120_000);
});
