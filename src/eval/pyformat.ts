// The Python semantics the official scorers' results depend on, so `vwlmm score` prints and writes what they do:
// float formatting, repr(x) (print(x), '{}'.format(x)) and '%.Nf' / '{:.Nf}' (JavaScript's String(x) has the same
// shortest round-trip digits as repr but switches to exponent notation elsewhere, and toFixed rounds exact ties away
// from zero where Python rounds them to even); json.dump; line iteration over a file; dictionary-key identity of
// JSON values.
import * as fs from 'fs';
import { kindOf } from '../io/safetensors';

/** Python's repr(float). */
export function pyRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  // the shortest round-trip digits and the decimal exponent, from JS (the same digits as Python's repr)
  const [mant, expStr] = Math.abs(x).toExponential().split('e');
  const digits = mant.replace('.', '');
  const e = Number(expStr);
  const sign = x < 0 ? '-' : '';
  if (e >= -4 && e < 16) {
    let s: string;
    if (e < 0) s = '0.' + '0'.repeat(-e - 1) + digits;
    else if (digits.length <= e + 1) s = digits + '0'.repeat(e + 1 - digits.length) + '.0';
    else s = digits.slice(0, e + 1) + '.' + digits.slice(e + 1);
    return sign + s;
  }
  const m = digits.length > 1 ? digits[0] + '.' + digits.slice(1) : digits;
  return `${sign}${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
}

/** Python's '%.{digits}f' % x: the exact binary value rounded correctly, exact ties to even. */
export function pyFixed(x: number, digits: number): string {
  if (!Number.isInteger(digits) || digits < 0 || digits > 100) throw new RangeError(`pyFixed: digits must be an integer in [0, 100], got ${digits}`);
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const tie = exactTieBelow(x, digits);
  if (tie === null) {
    const s = Math.abs(x) < 1e21 ? x.toFixed(digits) : BigInt(x).toString() + (digits ? '.' + '0'.repeat(digits) : '');
    return Object.is(x, -0) || (x < 0 && !s.startsWith('-')) ? '-' + s : s;
  }
  // x * 10^digits lies exactly halfway between tie and tie + 1: round to the even one
  const n = tie % 2n === 0n ? tie : tie + 1n;
  const str = n.toString().padStart(digits + 1, '0');
  const body = digits ? str.slice(0, -digits) + '.' + str.slice(-digits) : str;
  return (x < 0 ? '-' : '') + body;
}

/**
 * When |x| * 10^digits is exactly k + 1/2 for an integer k, returns k; else null. x is m * 2^-s exactly (m odd):
 * the product is a half-integer iff s >= 1 and m 10^digits mod 2^s = 2^(s-1).
 */
function exactTieBelow(x: number, digits: number): bigint | null {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, Math.abs(x));
  const bits = v.getBigUint64(0);
  const expBits = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  let exp: number;
  if (expBits === 0) exp = -1074;
  else {
    mant |= 1n << 52n;
    exp = expBits - 1075;
  }
  if (mant === 0n || exp >= 0) return null;
  const s = BigInt(-exp);
  const scaled = mant * 10n ** BigInt(digits);
  const denom = 1n << s;
  if (scaled % denom !== denom >> 1n) return null;
  return scaled / denom;
}

/**
 * A number Python holds as a float (json.dumps writes repr(x): 100.0, not 100); pyJsonDumps writes a number that is
 * not an integer as a float without it, but an integer-valued one as an int.
 */
export class PyFloat {
  constructor(readonly value: number) {}
}

/**
 * A JSON value as Python's json.dump(value, f, indent=n) writes it (ensure_ascii, key order kept); indent null:
 * json.dump's default one-line form (', ' and ': ' separators).
 */
export function pyJsonDumps(value: unknown, indent: number | null, level = 0): string {
  const pad = (l: number) => (indent === null ? '' : '\n' + ' '.repeat(indent * l));
  const sep = indent === null ? ', ' : ',';
  if (value === null || value === undefined) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  // a number that is not an integer can only be a Python float (json.loads of 1.5 in an input file, say)
  if (value instanceof PyFloat || (typeof value === 'number' && !Number.isInteger(value))) {
    const v = value instanceof PyFloat ? value.value : (value as number);
    return Number.isNaN(v) ? 'NaN' : !Number.isFinite(v) ? (v > 0 ? 'Infinity' : '-Infinity') : pyRepr(v);
  }
  if (typeof value === 'number') return BigInt(value).toString();
  if (typeof value === 'string') return pyJsonString(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return '[' + value.map((v) => pad(level + 1) + pyJsonDumps(v, indent, level + 1)).join(sep) + pad(level) + ']';
  }
  if (typeof value === 'object') {
    // a Map keeps its keys in insertion order, as a Python dict does (an object lists integer-like keys first, ascending)
    const entries = value instanceof Map ? [...(value as Map<string, unknown>).entries()] : Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) return '{}';
    return '{' + entries.map(([k, v]) => pad(level + 1) + pyJsonString(k) + ': ' + pyJsonDumps(v, indent, level + 1)).join(sep) + pad(level) + '}';
  }
  throw new TypeError(`pyJsonDumps: cannot write ${typeof value}`);
}

const JSON_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/** Python's json string with ensure_ascii: every character outside ' '..'~' escaped (UTF-16 units as \uXXXX). */
function pyJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    const code = s.charCodeAt(i);
    if (JSON_ESCAPES[c]) out += JSON_ESCAPES[c];
    else if (code >= 0x20 && code <= 0x7e) out += c;
    else out += '\\u' + code.toString(16).padStart(4, '0');
  }
  return out + '"';
}

/**
 * The lines of a file as Python's `for line in open(f)` yields them (universal newlines: "\r\n" and "\r" end a line
 * too), without their line end; a last line without one counts, an empty tail does not.
 */
export function pyLines(text: string): string[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Python's str.rstrip(chars). */
export function pyRstrip(s: string, chars: string): string {
  let e = s.length;
  while (e > 0 && chars.includes(s[e - 1])) e--;
  return s.slice(0, e);
}

// str.isspace(): JavaScript's \s lacks U+001C..U+001F and U+0085 and has U+FEFF, which Python's lacks
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');
const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`);

/** Python's str.strip() (no argument: whitespace as str.isspace() has it). */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/** Python's str.split() (no argument): the words between runs of whitespace. */
export function pySplit(s: string): string[] {
  const t = pyStrip(s);
  return t === '' ? [] : t.split(PY_SPLIT);
}

/** Python's a < b for str: by code points (JavaScript's < compares UTF-16 units, which differs above U+FFFF). */
export function pyStrCompare(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length) {
    const x = a.codePointAt(i)!, y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    i += x > 0xffff ? 2 : 1; // equal code points: the same number of units in both
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1; // a prefix comes first
}

// str.isprintable()'s non-printable categories (a space is printable)
const PY_UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

/** Python's repr(s) of a str: single quotes unless it has one and no double quote; unprintables escaped. */
function pyStrRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const c of s) {
    const code = c.codePointAt(0)!;
    if (c === q || c === '\\') out += '\\' + c;
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c !== ' ' && PY_UNPRINTABLE.test(c)) out += code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : code < 0x10000 ? `\\u${code.toString(16).padStart(4, '0')}` : `\\U${code.toString(16).padStart(8, '0')}`;
    else out += c;
  }
  return out + q;
}

/** Python's repr() of a JSON value as json.loads gives it (None, True, 1, 1.5, 'a', [..], {..}). */
export function pyValueRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  // an integer as JSON writes it below 1e21 (larger ones json.loads read as floats: 1e+21)
  if (typeof v === 'number') return Number.isInteger(v) && !String(v).includes('e') ? String(v) : pyRepr(v);
  if (typeof v === 'string') return pyStrRepr(v);
  if (Array.isArray(v)) return '[' + v.map(pyValueRepr).join(', ') + ']';
  return '{' + Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyStrRepr(k)}: ${pyValueRepr(x)}`).join(', ') + '}';
}

/** Python's str() (f'{v}') of a JSON value: a string as it is, anything else as repr() writes it. */
export function pyStr(v: unknown): string {
  return typeof v === 'string' ? v : pyValueRepr(v);
}

/**
 * Python dictionary-key identity (and == for JSON scalars) of a JSON value: 1, 1.0 and true are one key (True == 1 in
 * Python), "1" is another.
 */
export function pyKey(v: unknown): string {
  return typeof v === 'number' || typeof v === 'boolean' ? `n:${Number(v)}` : typeof v === 'string' ? `s:${v}` : `j:${JSON.stringify(v)}`;
}

/** A file's text; a missing file or a directory is an error naming `what` and the path. */
export function readTextFile(file: string, what: string): string {
  if (!fs.existsSync(file)) throw new Error(`${what} ${file} does not exist`);
  // readFileSync's own error on a directory is a bare "EISDIR: illegal operation on a directory, read"
  const st = fs.statSync(file);
  if (st.isDirectory()) throw new Error(`${what} ${file} is a directory; expected a file`);
  if (!st.isFile()) throw new Error(`${what} ${file} is ${kindOf(st)}; expected a file`); // a FIFO would block the read
  return fs.readFileSync(file, 'utf8');
}

/**
 * `[json.loads(l) for l in open(file)]` where every line must be a JSON object: a line that is not (blank, broken,
 * another JSON value) is an error naming the file and line, where the official scripts crash.
 */
export function jsonObjectLines(file: string, what: string): { rec: Record<string, unknown>; line: number }[] {
  return pyLines(readTextFile(file, what)).map((l, i) => {
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (e) {
      throw new Error(`${what} ${file} line ${i + 1}: not JSON (${(e as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} ${file} line ${i + 1}: expected a JSON object`);
    return { rec: v as Record<string, unknown>, line: i + 1 };
  });
}
