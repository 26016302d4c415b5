// Helpers shared by the benchmark scripts: flags, deterministic inputs, median timing, the engine decoder.
import { F, Generator, isAsync, nn, OpProfileEntry, scope, Tensor, zeroGrad } from '../src';

let declared: { values: Set<string>; switches: Set<string> } | undefined;

/** Exits with status 2 and a message on stderr: a command line the script refuses. */
function refuse(message: string): never {
  console.error(`${process.argv[1] ? process.argv[1].split(/[\\/]/).pop() : 'benchmark'}: ${message}`);
  process.exit(2);
}

/**
 * Declares the script's flags: `values` take a value (`--name VALUE`), `switches` stand alone (`--name`). Every other
 * `--flag` on the command line is refused (exit 2, with the known flags listed), and so is a value flag without its
 * value; arg() and flag() then refuse a name not declared (a slip in the script). Call it once, before arg()/flag().
 * Tokens not starting with `--` (positional arguments, values) are left to the script.
 */
export function declareFlags(values: string[], switches: string[] = []): void {
  declared = { values: new Set(values), switches: new Set(switches) };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) continue;
    const name = a.slice(2);
    if (declared.switches.has(name)) continue;
    if (!declared.values.has(name)) {
      const known = [...[...declared.values].map((v) => `--${v} VALUE`), ...[...declared.switches].map((v) => `--${v}`)];
      refuse(`unknown flag ${a}; known: ${known.length ? known.join(', ') : 'none'}`);
    }
    if (i + 1 >= args.length || args[i + 1].startsWith('--')) refuse(`${a} needs a value`);
    i++;
  }
}

/**
 * The value after `--name` on the command line, or `dflt`. A `--name` with no value after it (the last token, or
 * another `--flag` next) is refused (exit 2) rather than read as undefined; see declareFlags for refusing unknown flags.
 */
export function arg(name: string, dflt: string): string {
  if (declared && !declared.values.has(name)) throw new Error(`arg('${name}'): not among the flags this script declared (declareFlags)`);
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  if (i + 1 >= args.length || args[i + 1].startsWith('--')) refuse(`--${name} needs a value`);
  return args[i + 1];
}

/** Whether the switch `--name` is on the command line. */
export function flag(name: string): boolean {
  if (declared && !declared.switches.has(name)) throw new Error(`flag('${name}'): not among the switches this script declared (declareFlags)`);
  return process.argv.slice(2).includes(`--${name}`);
}

/** What numArg accepts: an integer only when `integer`; at least `min` (above it when `minExclusive`); at most `max`. */
export interface NumArgBounds { integer?: boolean; min?: number; max?: number; minExclusive?: boolean }

/**
 * arg() as a number, refused (exit 2, with what it takes) unless a finite number within the bounds: Number() alone
 * reads 'abc' as NaN and '' as 0, and a count of 0 or -3 ran as a hang, an empty median or a division by zero.
 */
export function numArg(name: string, dflt: number, { integer = false, min, max, minExclusive = false }: NumArgBounds = {}): number {
  const s = arg(name, String(dflt)), v = Number(s);
  const low = min === undefined || (minExclusive ? v > min : v >= min), high = max === undefined || v <= max;
  if (s.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || !low || !high) {
    const range = [min === undefined ? '' : `${minExclusive ? '>' : '>='} ${min}`, max === undefined ? '' : `<= ${max}`].filter((x) => x);
    refuse(`--${name} takes ${integer ? 'an integer' : 'a number'}${range.length ? ` ${range.join(' and ')}` : ''}, got '${s}'`);
  }
  return v;
}

/** n uniforms in [-0.1, 0.1) from a fixed LCG: the same inputs in every implementation and run. */
export function uniform(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 0.2;
  }
  return a;
}

/** Median seconds of `reps` calls of step, after one warm-up call. */
export function medianSeconds(step: () => void, reps: number): number {
  step();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    step();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

/**
 * The engine benchmark's decoder (benchmarks/engine_cpu.ts, profile_decoder.ts, gradient_checkpointing.ts): LLaMA
 * d 256, 4 layers, 8 heads, FFN 688, vocab 4096, a batch of 8 x 256 random tokens with next-token targets, and
 * `step()`: one forward + backward with the fused cross-entropy (gradients cleared after).
 */
export function engineDecoder(): { cfg: nn.LlamaConfig; model: nn.LlamaForCausalLM; batch: number; seq: number; step: (afterForward?: () => void) => void } {
  const BATCH = 8, SEQ = 256;
  const cfg: nn.LlamaConfig = { vocabSize: 4096, hiddenSize: 256, intermediateSize: 688, numLayers: 4, numHeads: 8, numKvHeads: 8, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 512, initializerRange: 0.02 };
  const gen = new Generator(0);
  const model = new nn.LlamaForCausalLM(cfg, { generator: gen });
  const ids = new Int32Array(BATCH * SEQ).map(() => gen.int(cfg.vocabSize));
  const targets = new Int32Array(BATCH * SEQ).map((_, i) => ((i + 1) % SEQ === 0 ? -100 : ids[i + 1]));
  const step = (afterForward?: () => void) => scope(() => {
    const out = model.model.forward(model.model.embed_tokens.forward(Tensor.fromArray(ids, [BATCH, SEQ])));
    const loss = F.linearCrossEntropy(F.reshape(out.last, [BATCH * SEQ, cfg.hiddenSize]), model.lm_head.weight, Tensor.fromArray(targets, [BATCH * SEQ]));
    afterForward?.();
    loss.backward();
    zeroGrad(model.parameters());
  });
  return { cfg, model, batch: BATCH, seq: SEQ, step };
}

type Json = Record<string, unknown>;
const deepMerge = (a: Json, b: Json): Json => {
  const o: Json = { ...a };
  for (const [k, v] of Object.entries(b)) o[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && typeof a[k] === 'object' ? deepMerge(a[k] as Json, v as Json) : v;
  return o;
};

/** A recipe with overrides deep-merged in (JSON objects merge field by field; anything else replaces). */
export function recipeWith<R extends object>(base: R, ...overrides: Json[]): R {
  return overrides.reduce((r, o) => deepMerge(r, o), base as unknown as Json) as unknown as R;
}

/** The first command-line argument when it is not a flag: a JSON object of recipe overrides ({} when absent). */
export function overridesArg(): Json {
  const a = process.argv[2];
  return a && !a.startsWith('--') ? (JSON.parse(a) as Json) : {};
}

/**
 * Ridge least squares with a bias, in float64: W [(D+1) x C] minimising |[X 1] W - Y|^2 + lambda |W|^2, by Gauss-Jordan
 * elimination with partial pivoting on [A | B]. The linear probes of the demo scripts (a column per target).
 */
export function ridge(X: ArrayLike<number>[], Y: ArrayLike<number>[], lambda: number): Float64Array[] {
  const D = X[0].length + 1, C = Y[0].length;
  const A = Array.from({ length: D }, () => new Float64Array(D)), B = Array.from({ length: D }, () => new Float64Array(C));
  const r = new Float64Array(D);
  X.forEach((x, i) => {
    for (let p = 0; p < D - 1; p++) r[p] = x[p];
    r[D - 1] = 1;
    for (let p = 0; p < D; p++) {
      for (let q = 0; q < D; q++) A[p][q] += r[p] * r[q];
      for (let c = 0; c < C; c++) B[p][c] += r[p] * Y[i][c];
    }
  });
  for (let p = 0; p < D; p++) A[p][p] += lambda;
  for (let c = 0; c < D; c++) {
    let piv = c;
    for (let q = c + 1; q < D; q++) if (Math.abs(A[q][c]) > Math.abs(A[piv][c])) piv = q;
    [A[c], A[piv]] = [A[piv], A[c]];
    [B[c], B[piv]] = [B[piv], B[c]];
    for (let q = 0; q < D; q++) {
      if (q === c || A[q][c] === 0) continue;
      const f = A[q][c] / A[c][c];
      for (let k = c; k < D; k++) A[q][k] -= f * A[c][k];
      for (let k = 0; k < C; k++) B[q][k] -= f * B[c][k];
    }
  }
  return B.map((row, p) => row.map((v) => v / A[p][p]));
}

/** [x 1] W: a ridge fit's C outputs for one input row. */
export function ridgePredict(W: Float64Array[], x: ArrayLike<number>): number[] {
  const C = W[0].length, out = new Array<number>(C).fill(0);
  for (let c = 0; c < C; c++) {
    let s = W[W.length - 1][c];
    for (let p = 0; p < x.length; p++) s += x[p] * W[p][c];
    out[c] = s;
  }
  return out;
}

export type OpTotals = Map<string, { ms: number; calls: number }>;

/** Adds op profile entries (profileOps) into totals per op name; returns `into`. */
export function addByOp(entries: OpProfileEntry[], into: OpTotals): OpTotals {
  for (const e of entries) {
    const name = e.key.split(' ')[1];
    const o = into.get(name) ?? { calls: 0, ms: 0 };
    o.calls += e.calls;
    o.ms += e.ms;
    into.set(name, o);
  }
  return into;
}

/**
 * Prints an op profile (profileOps) on stderr, per step of `steps`: the time per op name, then the `top` costliest
 * op/shape keys. On CUDA in sync mode (VWLMM_CUDA_ASYNC=0) each op's time is its GPU time; in async mode (CUDA's
 * default) it is the host's launch cost.
 */
export function printOpProfile(entries: OpProfileEntry[], steps: number, top: number): void {
  const total = entries.reduce((a, e) => a + e.ms, 0);
  const byOp = addByOp(entries, new Map());
  const row = (ms: number, calls: number, what: string) =>
    `${(ms / steps).toFixed(2).padStart(9)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}% ${(calls / steps).toFixed(0).padStart(6)} calls  ${what}`;
  console.error(`op profile, per step (${(total / steps).toFixed(1)} ms in ops${entries.some((e) => e.key.startsWith('cuda ')) && isAsync('cuda') ? ', CUDA async: launch cost only' : ''}):`);
  for (const [name, o] of [...byOp].sort((a, b) => b[1].ms - a[1].ms)) console.error(row(o.ms, o.calls, name));
  console.error(`the ${top} costliest op/shape keys:`);
  for (const e of entries.slice(0, top)) console.error(row(e.ms, e.calls, e.key));
}
