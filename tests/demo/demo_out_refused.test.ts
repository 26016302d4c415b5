// `vwlmm demo` into an --out that holds a demo run (a checkpoint or metrics of vw/ or llava/) is refused, as train
// refuses one, unless --resume continues it or --overwrite-output-dir starts over: running the demo again replaced the
// finished run's checkpoint, metrics and answers silently. A folder holding only the data set (a run stopped in stage
// 0, which writes nothing to resume) is not refused.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cli } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('demo-out');

describe('demo --out holding a run', () => {
  it('is refused unless --resume or --overwrite-output-dir, before any work', () => {
    const out = path.join(tmp(), 'demo');
    fs.mkdirSync(path.join(out, 'vw', 'checkpoint'), { recursive: true });
    fs.writeFileSync(path.join(out, 'vw', 'checkpoint', 'config.json'), '{}\n');
    fs.mkdirSync(path.join(out, 'llava'));
    fs.writeFileSync(path.join(out, 'llava', 'metrics.jsonl'), '');
    const r = cli('demo', '--out', out, '--scale', '0.01');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`vwlmm: --out ${out} already holds a demo run (vw/, llava/: checkpoint/ or metrics.jsonl): --resume continues it, --overwrite-output-dir starts over in it\n`);
    expect(r.stdout).toBe(''); // nothing calibrated, no data written
    expect(fs.existsSync(path.join(out, 'data'))).toBe(false);
    // either flag passes the check: the run goes on to the next one (a device this machine lacks: no training here)
    for (const flag of ['--resume', '--overwrite-output-dir']) {
      const go = cli('demo', '--out', out, '--scale', '0.01', flag, '--device', 'cuda:99');
      expect(go.status, flag).toBe(2);
      expect(go.stderr, flag).not.toContain('already holds a demo run');
      expect(go.stderr, flag).toMatch(/--device/);
    }
  });

  it('a folder with the data set alone is not a run', () => {
    const out = path.join(tmp(), 'demo');
    fs.mkdirSync(path.join(out, 'data'), { recursive: true });
    const go = cli('demo', '--out', out, '--scale', '0.01', '--device', 'cuda:99');
    expect(go.stderr).not.toContain('already holds a demo run');
    expect(go.stderr).toMatch(/--device/);
  });
});
