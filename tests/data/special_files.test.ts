// A file a user names that is not a regular file: a FIFO, whose read would wait for a writer that never comes (`vwlmm
// train` hung on one as an image), or a device (/dev/zero as an image grew to 6.5 GB). Each reader refuses it up
// front, naming the file and what it is; a hang fails the test by its timeout.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { loadImage, probeImage } from '../../src/data/images';
import { readLlavaRecords } from '../../src/data/dataset';
import { TextTokenizer } from '../../src/data/tokenizer';
import { readSentencePieceModel } from '../../src/data/sentencepiece';
import { loaderQuestions, scienceQuestions } from '../../src/eval/answer';
import { readTable } from '../../src/eval/mmbench';
import { readTextFile } from '../../src/eval/pyformat';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('special-files');

describe('readers refuse a FIFO and a device', () => {
  const dir = tmp();
  const fifo = path.join(dir, 'pipe.png');
  execFileSync('mkfifo', [fifo]);
  const device = '/dev/zero';

  it('images: loadImage and probeImage', async () => {
    await expect(loadImage(fifo)).rejects.toThrow(`loadImage: cannot read '${fifo}': a named pipe (FIFO), not a regular file`);
    await expect(probeImage(fifo)).rejects.toThrow(`loadImage: cannot read '${fifo}': a named pipe (FIFO), not a regular file`);
    if (fs.existsSync(device)) {
      await expect(loadImage(device)).rejects.toThrow(`loadImage: cannot read '${device}': a device, not a regular file`);
      await expect(probeImage(device)).rejects.toThrow(`loadImage: cannot read '${device}': a device, not a regular file`);
    }
  });

  it('data, tokenizers, questions and scorer inputs', () => {
    const cases: [string, () => unknown, string][] = [
      ['readLlavaRecords', () => readLlavaRecords(fifo), `readLlavaRecords: cannot read '${fifo}': a named pipe (FIFO), not a regular file`],
      ['TextTokenizer', () => new TextTokenizer(fifo), `TextTokenizer: cannot read tokenizer file ${fifo}: a named pipe (FIFO), not a regular file`],
      ['readSentencePieceModel', () => readSentencePieceModel(fifo), `sentencepiece: cannot read ${fifo}: a named pipe (FIFO), not a regular file`],
      ['loaderQuestions', () => loaderQuestions(fifo, false, []), `questions ${fifo}: cannot read: a named pipe (FIFO), not a regular file`],
      ['scienceQuestions', () => scienceQuestions(fifo, false, false, []), `questions ${fifo}: cannot read: a named pipe (FIFO), not a regular file`],
      ['readTable', () => readTable(fifo), `${fifo} is a named pipe (FIFO); expected an MMBench TSV file`],
      ['readTextFile', () => readTextFile(fifo, 'annotations'), `annotations ${fifo} is a named pipe (FIFO); expected a file`],
    ];
    for (const [what, call, message] of cases) expect(call, what).toThrow(message);
  });
});
