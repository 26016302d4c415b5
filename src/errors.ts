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
    const camel = k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    throw rangeError(where, `unknown ${what} '${k}'${camel !== k && camel in known ? ` (did you mean '${camel}'?)` : ''}; known: ${Object.keys(known).join(', ')}`);
  }
}
