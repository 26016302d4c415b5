// The README's API example (the ```ts block after the `<!-- readme-api-example -->` line): extraction, the
// CommonJS form of it, and the check of what it prints. Shared by tests/api/readme_example.test.ts (runs it
// from source) and .ci/tarball_install.sh (runs it against the installed package with plain node, as .mjs
// and .cjs), so both test the same text the same way. The example is written in the common subset of
// TypeScript and JavaScript (no type annotations, no top-level await), which is what lets one text run as
// .ts, .mjs and, with its imports turned into require calls, .cjs.
//   tsx tests/api/readme_snippet.ts esm|cjs [README.md]   prints the example (as written | as CommonJS)
//   tsx tests/api/readme_snippet.ts check < output         checks what it printed (exit 1 with the reason)
import * as fs from 'fs';
import * as path from 'path';

export const MARKER = '<!-- readme-api-example -->';

/** The code of the fenced ```ts block that follows the marker line (exactly one marker). */
export function extractReadmeExample(readme: string): string {
  const lines = readme.split('\n');
  const at = lines.flatMap((l, i) => (l.trim() === MARKER ? [i] : []));
  if (at.length !== 1) throw new Error(`README: expected one '${MARKER}' line, found ${at.length}`);
  let i = at[0] + 1;
  while (i < lines.length && lines[i].trim() === '') i++;
  if (lines[i]?.trim() !== '```ts') throw new Error(`README: the line after '${MARKER}' must open a \`\`\`ts block, got ${JSON.stringify(lines[i])}`);
  const end = lines.findIndex((l, k) => k > i && l.trim() === '```');
  if (end < 0) throw new Error('README: the API example block is not closed');
  return lines.slice(i + 1, end).join('\n') + '\n';
}

/** `import { a, b } from 'x';` (one or more lines) -> `const { a, b } = require('x');`; any other import is an error. */
export function toCommonJs(code: string): string {
  const out = code.replace(/^import\s*\{([^}]*)\}\s*from\s*('[^']+');/gm, 'const {$1} = require($2);');
  const left = out.split('\n').find((l) => /^import\b/.test(l));
  if (left) throw new Error(`README example: only named imports can be turned into require calls, not: ${left}`);
  return out;
}

export interface ExampleOutput { firstLoss: number; lastLoss: number; steps: number; accuracy: number; questions: number; reloadedAccuracy: number }

/** Parses the example's last line and checks it: the loss fell, accuracies are fractions, the reloaded model scores the same. */
export function checkExampleOutput(stdout: string): ExampleOutput {
  const last = stdout.trim().split('\n').pop() ?? '';
  const m = /^loss (\S+) -> (\S+) in (\d+) steps; accuracy (\S+) on (\d+) questions, (\S+) after reloading$/.exec(last);
  if (!m) throw new Error(`README example: unexpected output ${JSON.stringify(last)}`);
  const [firstLoss, lastLoss, steps, accuracy, questions, reloadedAccuracy] = m.slice(1).map(Number);
  const r = { firstLoss, lastLoss, steps, accuracy, questions, reloadedAccuracy };
  if (!(Number.isFinite(firstLoss) && Number.isFinite(lastLoss) && lastLoss < firstLoss)) throw new Error(`README example: the loss did not fall (${firstLoss} -> ${lastLoss})`);
  if (!(steps > 0 && questions > 0)) throw new Error(`README example: ${steps} steps, ${questions} questions`);
  if (!(accuracy >= 0 && accuracy <= 1)) throw new Error(`README example: accuracy ${accuracy} is not in [0, 1]`);
  if (reloadedAccuracy !== accuracy) throw new Error(`README example: the reloaded checkpoint scores ${reloadedAccuracy}, the trained model ${accuracy}`);
  return r;
}

if (require.main === module) {
  const [mode, readme = path.join(__dirname, '..', '..', 'README.md')] = process.argv.slice(2);
  try {
    if (mode === 'esm' || mode === 'cjs') {
      const code = extractReadmeExample(fs.readFileSync(readme, 'utf8'));
      process.stdout.write(mode === 'cjs' ? toCommonJs(code) : code);
    } else if (mode === 'check') {
      const r = checkExampleOutput(fs.readFileSync(0, 'utf8'));
      console.log(`README example OK: loss ${r.firstLoss} -> ${r.lastLoss} in ${r.steps} steps, accuracy ${r.accuracy} (reloaded: the same)`);
    } else {
      throw new Error(`usage: readme_snippet.ts esm|cjs [README.md] | check < output (got '${mode ?? ''}')`);
    }
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  }
}
