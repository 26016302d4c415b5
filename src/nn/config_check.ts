// What a valid number in a module config is (a size, an epsilon, a std), and the one check of such fields that the
// modules' constructors (LlamaDecoder, ClipVisionTransformer) and the model's validateConfig (src/model/config.ts)
// share, so a config written in TypeScript fails where it is given, naming the field, and not in the first forward.
import { checkKeys } from '../errors';

/** A number rule of a config field. */
export interface NumberRule {
  integer?: boolean;
  /** Inclusive lower bound. */
  min?: number;
  /** Exclusive lower bound. */
  above?: number;
}

export const POSITIVE_INT: NumberRule = { integer: true, min: 1 };
export const POSITIVE: NumberRule = { above: 0 };
/** A normal's std (torch's normal_ refuses a negative one); 0 is a constant initialisation. */
export const STD: NumberRule = { min: 0 };

/** What is wrong with `v` under `r`: 'type' (not a finite number: NaN and the infinities have no JSON form), 'integer', 'range'; null: nothing. */
export function numberFault(v: unknown, r: NumberRule): 'type' | 'integer' | 'range' | null {
  if (typeof v !== 'number' || !Number.isFinite(v)) return 'type';
  if (r.integer && !Number.isSafeInteger(v)) return 'integer';
  if ((r.min !== undefined && v < r.min) || (r.above !== undefined && !(v > r.above))) return 'range';
  return null;
}

export function ruleText(r: NumberRule): string {
  if (r.integer) return r.min === 1 ? 'a positive integer' : r.min !== undefined ? `an integer >= ${r.min}` : 'an integer';
  return r.above !== undefined ? `a number > ${r.above}` : r.min !== undefined ? `a finite number >= ${r.min}` : 'a finite number';
}

/** A config value in a message: numbers and undefined as written, the rest as JSON. */
export const showValue = (v: unknown): string => (typeof v === 'number' || v === undefined ? String(v) : JSON.stringify(v) ?? String(v));

/** Checks o[k] by each rule: `${where}: ${prefix}${k} must be <rule>, got <value>` (a RangeError out of range, else a TypeError). */
export function checkNumbers(where: string, prefix: string, o: Record<string, unknown>, rules: Record<string, NumberRule>): void {
  for (const [k, r] of Object.entries(rules)) {
    const fault = numberFault(o[k], r);
    if (fault) throw new (fault === 'range' ? RangeError : TypeError)(`${where}: ${prefix}${k} must be ${ruleText(r)}, got ${showValue(o[k])}`);
  }
}

/** The object a config section must be: `${where}: <name> must be an object, got ...` otherwise. */
export function checkObject(where: string, name: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${where}: ${name} must be an object, got ${showValue(v)}`);
  return v as Record<string, unknown>;
}

/**
 * A config section's object, keys and numbers (what every module's config check does first): an object, no key but
 * `known`'s, each rule's number. `prefix` ('llm.', or '' for the config itself) starts the names in messages.
 */
export function checkSection(where: string, prefix: string, c: unknown, known: Record<string, true>, rules: Record<string, NumberRule>): Record<string, unknown> {
  const o = checkObject(where, prefix ? prefix.slice(0, -1) : 'the config', c);
  checkKeys(where, `${prefix ? `${prefix.slice(0, -1)} ` : ''}key`, o, known);
  checkNumbers(where, prefix, o, rules);
  return o;
}
