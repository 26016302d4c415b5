// Where answers are read from: one answers file, or the folder of chunk files LLaVA-1.5's multi-GPU eval scripts
// write (scripts/v1_5/eval/{gqa,vqav2,seed}.sh: `--answers-file .../$CHUNKS_$IDX.jsonl` per chunk, then
// `cat` of 0 .. CHUNKS-1 in order into merge.jsonl). A folder is read as that merge: its files named
// "<chunks>_<index>.jsonl" in index order; other files in it (merge.jsonl itself) are left alone, and a missing
// chunk or two chunk counts in one folder is an error that names them.
import * as fs from 'fs';
import * as path from 'path';
import { jsonObjectLines } from './pyformat';

const CHUNK_FILE = /^(\d+)_(\d+)\.jsonl$/;

/** The files behind an answers path: [path] for a file; a chunk folder's chunk files in index order. */
export function answerFiles(source: string): string[] {
  if (!fs.existsSync(source)) throw new Error(`answers ${source} does not exist`);
  if (!fs.statSync(source).isDirectory()) return [source];
  const chunks = new Map<number, Map<number, string>>();
  for (const name of fs.readdirSync(source)) {
    const m = CHUNK_FILE.exec(name);
    if (!m) continue;
    if (!fs.statSync(path.join(source, name)).isFile()) throw new Error(`answers ${source}: ${name} is not a file`);
    const n = Number(m[1]), i = Number(m[2]);
    if (!chunks.has(n)) chunks.set(n, new Map());
    chunks.get(n)!.set(i, path.join(source, name));
  }
  if (chunks.size === 0) throw new Error(`answers ${source}: a folder without chunk files ("<chunks>_<index>.jsonl", as LLaVA's eval scripts name them)`);
  if (chunks.size > 1) throw new Error(`answers ${source}: chunk files of ${[...chunks.keys()].sort((a, b) => a - b).join(' and ')} chunks in one folder (runs with different --num-chunks?); keep one run's`);
  const [[n, files]] = [...chunks];
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !files.has(i));
  if (missing.length) throw new Error(`answers ${source}: chunk${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${n}_${i}.jsonl`).join(', ')} of ${n} missing`);
  const extra = [...files.keys()].filter((i) => i >= n);
  if (extra.length) throw new Error(`answers ${source}: ${extra.map((i) => `${n}_${i}.jsonl`).join(', ')} is past the last chunk of ${n}`);
  return Array.from({ length: n }, (_, i) => files.get(i)!);
}

/** The answer lines of a file or chunk folder, each a JSON object; `at` names its file and line for errors. */
export function answerObjectLines(source: string): { rec: Record<string, unknown>; line: number; at: string }[] {
  return answerFiles(source).flatMap((file) => jsonObjectLines(file, 'answers').map(({ rec, line }) => ({ rec, line, at: `answers ${file} line ${line}` })));
}
