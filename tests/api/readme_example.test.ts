// The README's API example runs as written: the block after `<!-- readme-api-example -->` (extracted by
// readme_snippet.ts, which .ci/tarball_install.sh uses too), with `from 'vwlmm'` pointed at src/index.ts, is
// run by tsx in a child process from an empty folder. It is written in the common subset of TypeScript and
// JavaScript, so the tarball check can run the same text with plain node as .mjs and (imports turned into
// require calls) as .cjs; `node --check` holds it to that here, without running it twice.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { checkExampleOutput, extractReadmeExample, MARKER, toCommonJs } from './readme_snippet';

const root = path.join(__dirname, '..', '..');
const tsx = path.join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const tmp = tempDirs('readme');
const example = () => extractReadmeExample(fs.readFileSync(path.join(root, 'README.md'), 'utf8'));

describe('README API example', () => {
  it('trains, evaluates, saves and reloads a model as written', () => {
    const code = example();
    expect(code).toMatch(/from 'vwlmm';/);
    const fromSource = code.replace(/from 'vwlmm';/g, `from ${JSON.stringify(path.join(root, 'src', 'index.ts'))};`);
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'example.ts'), fromSource);
    // TMPDIR: the example's mkdtemp lands in this test's folder, so that what it leaves behind shows
    const r = spawnSync(process.execPath, [tsx, 'example.ts'], { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...process.env, TMPDIR: dir } });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const out = checkExampleOutput(r.stdout);
    expect(out.steps).toBe(12);
    // the example removes its folder at the end (its output line says what it saved and reloaded)
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('vwlmm-example-'))).toEqual([]);
  });

  it('is plain JavaScript too, as an ES module and, with require calls, as CommonJS', () => {
    const dir = tmp();
    const code = example();
    fs.writeFileSync(path.join(dir, 'example.mjs'), code);
    fs.writeFileSync(path.join(dir, 'example.cjs'), toCommonJs(code));
    for (const f of ['example.mjs', 'example.cjs']) {
      const r = spawnSync(process.execPath, ['--check', f], { cwd: dir, encoding: 'utf8' });
      expect(r.status, `${f}: ${r.stderr}`).toBe(0);
    }
    expect(toCommonJs(code)).toMatch(/^const \{[^}]*\bVwLmm\b[^}]*\} = require\('vwlmm'\);$/m);
  });

  it('the helpers fail on what they must refuse', () => {
    // (so the checks above cannot pass vacuously)
    expect(() => extractReadmeExample('no marker')).toThrow(/expected one/);
    expect(() => extractReadmeExample(`${MARKER}\n\n\`\`\`js\nx\n\`\`\`\n`)).toThrow(/must open a ```ts block/);
    expect(extractReadmeExample(`text\n${MARKER}\n\`\`\`ts\nconst a = 1;\n\`\`\`\nafter\n`)).toBe('const a = 1;\n');
    const typed = spawnSync(process.execPath, ['--input-type=module', '--check'], { input: 'const n: number = 1;\n', encoding: 'utf8' });
    expect(typed.status).not.toBe(0); // a type annotation is not JavaScript: --check catches it
    expect(() => toCommonJs("import * as fs from 'fs';\n")).toThrow(/only named imports/);
    expect(() => checkExampleOutput('loss 2.000 -> 3.000 in 12 steps; accuracy 0.500 on 8 questions, 0.500 after reloading')).toThrow(/did not fall/);
    expect(() => checkExampleOutput('loss 3.000 -> 2.000 in 12 steps; accuracy 0.500 on 8 questions, 0.250 after reloading')).toThrow(/reloaded/);
    expect(() => checkExampleOutput('done')).toThrow(/unexpected output/);
  });
});
