// Argument errors in the sharp style: "<where>: expected <what> for <name> but received <actual>".
// TypeError for the wrong kind of value (type, dtype, device, rank), RangeError for wrong sizes/values.

export function describe(value: unknown): string {
  try {
    return describeValue(value);
  } catch {
    return `a value that cannot be shown (${typeof value})`; // e.g. a proxy whose traps throw
  }
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'object' && value !== null && 'shape' in value && 'dtype' in value && 'device' in value) {
    const t = value as { shape: readonly number[]; dtype: string; device: string };
    const fields = `shape [${Array.isArray(t.shape) ? t.shape.join(', ') : String(t.shape)}], dtype ${String(t.dtype)}, device ${String(t.device)}`;
    // a look-alike ({ shape, dtype, device }) said to be a tensor would make "expected a Tensor" read as nonsense
    if ((value as object).constructor?.name !== 'Tensor') return `an object that is not a Tensor (${fields})`;
    return `${t.dtype} ${t.device} tensor of shape [${t.shape.join(', ')}]`;
  }
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as { length: number }).length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  if (typeof value === 'string') return `'${value.length > 60 ? value.slice(0, 60) + '...' : value}' (string)`;
  if (typeof value === 'object' || typeof value === 'function') {
    // String() may throw (Object.create(null), a throwing toString) or run user code: use the tag
    const tag = Object.prototype.toString.call(value);
    return `${typeof value === 'function' ? 'a function' : tag} (${typeof value})`;
  }
  return `${String(value)} (${typeof value})`;
}

export function typeError(where: string, name: string, expected: string, actual: unknown): TypeError {
  return new TypeError(`${where}: expected ${expected} for ${name} but received ${describe(actual)}`);
}

export function rangeError(where: string, message: string): RangeError {
  return new RangeError(`${where}: ${message}`);
}

/**
 * Refuses keys of `o` that `known` does not list: a misspelt option, or torch's spelling of one (weight_decay), would
 * otherwise be ignored without a word. `known` is a table `satisfies Record<keyof T, true>`, so TypeScript keeps it
 * complete.
 */
export function checkKeys(where: string, what: string, o: object, known: Record<string, true>): void {
  for (const k of Object.keys(o)) {
    if (k in known) continue;
    const guess = nearestKey(k, Object.keys(known));
    throw rangeError(where, `unknown ${what} '${k}'${guess ? ` (did you mean '${guess}'?)` : ''}; known: ${Object.keys(known).join(', ')}`);
  }
}

/**
 * An options object checked against `known` (checkKeys), or {} for undefined: the one reader of an optional options
 * argument, so a typo ({ casual: true } for causal) is an error rather than a default silently taken.
 */
export function checkedOptions<T extends object>(where: string, o: T | undefined | null, known: Record<string, true>): T {
  if (o === undefined) return {} as T;
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError(where, 'options', `an object of options (known: ${Object.keys(known).join(', ')})`, o);
  checkKeys(where, 'option', o, known);
  return o;
}

/** transformers' names of options that have another name here (camel-cased): a hint where edit distance finds none. */
const TORCH_NAMES: Record<string, string> = { attentionMask: 'keyMask', pastKeyValues: 'cache' };

// The known key an unknown one most likely meant: its camelCase spelling (label_smoothing), transformers' name of it
// (attention_mask for keyMask), or one a typo away (casual for causal: one transposition), so the message points at the fix.
function nearestKey(k: string, known: readonly string[]): string | null {
  const camel = k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  if (camel !== k && known.includes(camel)) return camel;
  if (Object.hasOwn(TORCH_NAMES, camel) && known.includes(TORCH_NAMES[camel])) return TORCH_NAMES[camel];
  const limit = Math.max(1, Math.min(2, Math.floor(k.length / 3)));
  let best: string | null = null, bestD = limit + 1;
  for (const c of known) {
    const d = editDistance(k.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

/** Optimal string alignment distance (insertions, deletions, substitutions, adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
