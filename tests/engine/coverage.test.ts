// Every engine op (native/core/engine_ops.def) is called by a test in tests/engine.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { engineOpNames } from '../../src/engine';

describe('engine op coverage', () => {
  const sources = fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.ts') && f !== 'coverage.test.ts')
    .map((f) => fs.readFileSync(path.join(__dirname, f), 'utf8')).join('\n');

  for (const op of [...engineOpNames()].sort()) {
    it(`${op} is exercised by an engine test`, () => {
      expect(sources).toContain(`'${op}'`);
    });
  }
});
