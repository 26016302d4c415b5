// A minimal Office Open XML workbook (.xlsx): one sheet of cells, written as openpyxl writes them (what pandas'
// `to_excel(..., engine='openpyxl')` produces: LLaVA's MMBench upload file, src/eval/mmbench.ts), and read back.
//
// Writing follows openpyxl 3.1's cell rules, so openpyxl / pandas read the same values from our file as from theirs:
// strings are inline (t="inlineStr"; xml:space="preserve" when they start or end with white space), cut to 32767
// characters, and a string of two or more characters starting with "=" is a formula (<f> without the "=", empty
// <v>); the empty string is an empty inline-string cell; numbers are Python's "%.16g" (t="n"); booleans t="b" 1 / 0;
// a null cell is not written. Characters XML 1.0 cannot hold (controls other than tab, LF, CR) are an error naming
// the cell, as openpyxl's IllegalCharacterError. Like openpyxl, "\r" is written as it is: XML readers (openpyxl,
// Excel, readXlsx) see every line end as "\n".
// Reading takes the first sheet of any workbook (shared or inline strings, numbers, booleans, formulas, errors).
import * as fs from 'fs';
import { readZipEntries, readZipEntry, writeZip, ZipEntry, ZipError } from './zip';

/** A cell: text, number, boolean, a formula (its text without "="), or null (no cell). */
export type XlsxValue = string | number | boolean | { formula: string } | null;

const MAX_STRING = 32767; // openpyxl's check_string cut (Excel's cell limit)
const ILLEGAL = /[\x00-\x08\x0b\x0c\x0e-\x1f]/;

/** "A", ..., "Z", "AA", ... for a 0-based column. */
export function columnName(col: number): string {
  let s = '';
  for (let c = col + 1; c > 0; c = Math.floor((c - 1) / 26)) s = String.fromCharCode(65 + ((c - 1) % 26)) + s;
  return s;
}

/** The exact decimal digits of a finite double: |x| = 0.d1d2... x 10^(point), no leading zero digit (0: '' and 0). */
function exactDigits(x: number): { digits: string; point: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  let e = biased - 1075;
  if (biased === 0) e = -1074; // subnormal
  else mant |= 1n << 52n;
  if (mant === 0n) return { digits: '', point: 0 };
  let digits: string, point: number;
  if (e >= 0) {
    digits = (mant << BigInt(e)).toString();
    point = digits.length;
  } else {
    digits = (mant * 5n ** BigInt(-e)).toString(); // m 2^e = m 5^-e / 10^-e
    point = digits.length + e;
  }
  return { digits: digits.replace(/0+$/, ''), point };
}

/** Python's "%.{precision}g" % x (the exact value rounded half to even, as CPython's formatting does). */
export function formatG(x: number, precision = 16): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  let { digits, point } = exactDigits(x);
  if (digits === '') return `${sign}0`;
  if (digits.length > precision) {
    const next = digits[precision], rest = digits.slice(precision + 1);
    let head = BigInt(digits.slice(0, precision));
    if (next > '5' || (next === '5' && (/[1-9]/.test(rest) || head % 2n === 1n))) head += 1n;
    digits = head.toString();
    if (digits.length > precision) point += 1; // 99..9 rounded up to 100..0
    digits = digits.slice(0, precision).replace(/0+$/, '');
  }
  const exp = point - 1; // x = d.ddd x 10^exp
  if (exp >= -4 && exp < precision) {
    if (exp >= 0) {
      const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0'), frac = digits.slice(exp + 1);
      return sign + int + (frac ? '.' + frac : '');
    }
    return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  }
  const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function cellXml(ref: string, v: XlsxValue): string {
  if (v === null) return '';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError(`writeXlsx: cell ${ref}: ${v} is not a number Excel can hold (pandas writes its inf_rep / na_rep string instead)`);
    return `<c r="${ref}" t="n"><v>${formatG(v)}</v></c>`;
  }
  if (typeof v === 'boolean') return `<c r="${ref}" t="b"><v>${v ? 1 : 0}</v></c>`;
  let text: string, formula: boolean;
  if (typeof v === 'string') {
    const cps = Array.from(v); // Python counts code points
    text = cps.length > MAX_STRING ? cps.slice(0, MAX_STRING).join('') : v;
    formula = cps.length > 1 && text.startsWith('=');
    if (formula) text = text.slice(1);
  } else if (v !== null && typeof v === 'object' && typeof v.formula === 'string') {
    text = v.formula;
    formula = true;
  } else {
    throw new TypeError(`writeXlsx: cell ${ref}: expected a string, number, boolean, { formula } or null but received ${typeof v}`);
  }
  const bad = ILLEGAL.exec(text);
  if (bad) throw new RangeError(`writeXlsx: cell ${ref}: character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at ${bad.index} cannot be stored in a worksheet (openpyxl raises IllegalCharacterError)`);
  if (formula) return `<c r="${ref}"><f>${escapeXml(text)}</f><v></v></c>`;
  if (text === '') return `<c r="${ref}" t="inlineStr"/>`;
  const space = /^\s|\s$/.test(text) ? ' xml:space="preserve"' : '';
  return `<c r="${ref}" t="inlineStr"><is><t${space}>${escapeXml(text)}</t></is></c>`;
}

const XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n';
const NS_MAIN = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
const NS_REL = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
const NS_PKG_REL = 'http://schemas.openxmlformats.org/package/2006/relationships';

/**
 * An .xlsx workbook of one sheet holding `rows` (row 1 first; a row may be shorter than others). Returns the file's
 * bytes; the same rows give the same bytes.
 */
export function writeXlsx(rows: readonly (readonly XlsxValue[])[], options: { sheetName?: string } = {}): Buffer {
  const sheetName = options.sheetName ?? 'Sheet1';
  if (!/^[^\\/?*[\]:]{1,31}$/.test(sheetName) || sheetName.startsWith("'")) throw new RangeError(`writeXlsx: sheet name '${sheetName}' is not one Excel accepts (1-31 characters, none of \\ / ? * [ ] :)`);
  const width = rows.reduce((w, r) => Math.max(w, r.length), 0);
  const body = rows.map((r, i) => `<row r="${i + 1}">${r.map((v, j) => cellXml(`${columnName(j)}${i + 1}`, v)).join('')}</row>`).join('');
  const dim = rows.length && width ? `A1:${columnName(width - 1)}${rows.length}` : 'A1';
  const sheet = `${XML_HEAD}<worksheet xmlns="${NS_MAIN}"><dimension ref="${dim}"/><sheetData>${body}</sheetData></worksheet>`;
  const workbook = `${XML_HEAD}<workbook xmlns="${NS_MAIN}" xmlns:r="${NS_REL}"><sheets><sheet name="${escapeXml(sheetName).replace(/"/g, '&quot;')}" sheetId="1" r:id="rId1"/></sheets></workbook>`;
  // the smallest stylesheet Excel accepts: one font, the two fills it requires, one border, one cell format
  const styles = `${XML_HEAD}<styleSheet xmlns="${NS_MAIN}"><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>`
    + '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
    + '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    + '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    + '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
    + '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>';
  const types = `${XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">`
    + '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    + '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    + '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    + '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>';
  const rels = `${XML_HEAD}<Relationships xmlns="${NS_PKG_REL}"><Relationship Id="rId1" Type="${NS_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>`;
  const wbRels = `${XML_HEAD}<Relationships xmlns="${NS_PKG_REL}"><Relationship Id="rId1" Type="${NS_REL}/worksheet" Target="worksheets/sheet1.xml"/>`
    + `<Relationship Id="rId2" Type="${NS_REL}/styles" Target="styles.xml"/></Relationships>`;
  const utf8 = (s: string) => Buffer.from(s, 'utf8');
  return writeZip([
    { name: '[Content_Types].xml', data: utf8(types) },
    { name: '_rels/.rels', data: utf8(rels) },
    { name: 'xl/workbook.xml', data: utf8(workbook) },
    { name: 'xl/_rels/workbook.xml.rels', data: utf8(wbRels) },
    { name: 'xl/styles.xml', data: utf8(styles) },
    { name: 'xl/worksheets/sheet1.xml', data: utf8(sheet) },
  ]);
}

// --- reading ---

/** XML text as a parser returns it: line ends normalised to "\n" (XML 1.0 section 2.11), then references resolved. */
function xmlText(raw: string): string {
  return raw.replace(/\r\n?/g, '\n').replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, r: string) =>
    r === 'amp' ? '&' : r === 'lt' ? '<' : r === 'gt' ? '>' : r === 'quot' ? '"' : r === 'apos' ? "'"
      : String.fromCodePoint(r[1] === 'x' ? parseInt(r.slice(2), 16) : parseInt(r.slice(1), 10)));
}

function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) out[m[1]] = xmlText(m[2] ?? m[3]);
  return out;
}

/** The text of every <t> of a string item (plain or rich text runs), joined; phonetic runs (<rPh>) left out. */
function stringItem(xml: string): string {
  let s = '';
  for (const m of xml.replace(/<rPh\b[\s\S]*?<\/rPh>/g, '').matchAll(/<(?:\w+:)?t\b[^>]*?(?:\/>|>([\s\S]*?)<\/(?:\w+:)?t>)/g)) s += xmlText(m[1] ?? '');
  return s;
}

function cellRef(ref: string, file: string): { row: number; col: number } {
  const m = /^([A-Z]{1,3})([0-9]+)$/.exec(ref);
  if (!m) throw new ZipError(file, `cell reference '${ref}' is not like A1`);
  let col = 0;
  for (const ch of m[1]) col = col * 26 + (ch.charCodeAt(0) - 64);
  return { row: Number(m[2]) - 1, col: col - 1 };
}

/** The parts a workbook's first sheet needs, resolved through the relationships (paths inside the archive). */
function partPath(base: string, target: string): string {
  if (target.startsWith('/')) return target.slice(1);
  const parts = base.split('/').slice(0, -1);
  for (const p of target.split('/')) {
    if (p === '..') parts.pop();
    else if (p !== '.') parts.push(p);
  }
  return parts.join('/');
}

/**
 * The first sheet of an .xlsx file as rows of values (row 1 first; every row padded with null to the widest), as
 * openpyxl's load_workbook reads them: numbers (text with ".", "e" or "E" as floats, others as integers: the same
 * number here), booleans, strings, formulas as { formula }, error cells as their text, and null for no value.
 */
export function readXlsx(file: string): { sheet: string; rows: XlsxValue[][] } {
  const fd = fs.openSync(file, 'r');
  try {
    const entries = readZipEntries(fd, file, { deflate: true });
    const part = (name: string, required = true): string | null => {
      const e: ZipEntry | undefined = entries.get(name);
      if (!e) {
        if (required) throw new ZipError(file, `no ${name}: not an xlsx workbook`);
        return null;
      }
      return Buffer.from(readZipEntry(fd, file, e)).toString('utf8');
    };
    const rootRels = part('_rels/.rels')!;
    const wbTarget = [...rootRels.matchAll(/<Relationship\b[^>]*>/g)].map((m) => attrs(m[0])).find((a) => a.Type?.endsWith('/officeDocument'))?.Target;
    if (!wbTarget) throw new ZipError(file, '_rels/.rels names no workbook (officeDocument relationship)');
    const wbPath = partPath('', wbTarget);
    const wb = part(wbPath)!;
    const first = /<(?:\w+:)?sheet\b[^>]*>/.exec(wb);
    if (!first) throw new ZipError(file, `${wbPath} lists no sheet`);
    const sheetAttrs = attrs(first[0]);
    const rid = Object.entries(sheetAttrs).find(([k]) => k === 'r:id' || k.endsWith(':id'))?.[1];
    const relsPath = partPath(wbPath, `_rels/${wbPath.split('/').pop()}.rels`);
    const wbRels = part(relsPath)!;
    const relOf = [...wbRels.matchAll(/<Relationship\b[^>]*>/g)].map((m) => attrs(m[0]));
    const sheetTarget = relOf.find((a) => a.Id === rid)?.Target;
    if (!sheetTarget) throw new ZipError(file, `${relsPath} has no relationship ${rid} for sheet '${sheetAttrs.name}'`);
    const sstTarget = relOf.find((a) => a.Type?.endsWith('/sharedStrings'))?.Target;
    const sstXml = sstTarget ? part(partPath(wbPath, sstTarget), false) : null;
    const shared = sstXml ? [...sstXml.matchAll(/<(?:\w+:)?si\b[^>]*?(?:\/>|>([\s\S]*?)<\/(?:\w+:)?si>)/g)].map((m) => stringItem(m[1] ?? '')) : [];
    const sheetPath = partPath(wbPath, sheetTarget);
    const xml = part(sheetPath)!;
    const rows: XlsxValue[][] = [];
    let width = 0, nextRow = 0;
    for (const rm of xml.matchAll(/<(?:\w+:)?row\b([^>]*?)(?:\/>|>([\s\S]*?)<\/(?:\w+:)?row>)/g)) {
      const ra = attrs(rm[1]);
      const r = ra.r !== undefined ? Number(ra.r) - 1 : nextRow;
      nextRow = r + 1;
      let nextCol = 0;
      for (const cm of (rm[2] ?? '').matchAll(/<(?:\w+:)?c\b([^>]*?)(?:\/>|>([\s\S]*?)<\/(?:\w+:)?c>)/g)) {
        const a = attrs(cm[1]);
        const pos = a.r !== undefined ? cellRef(a.r, file) : { row: r, col: nextCol };
        nextCol = pos.col + 1;
        const inner = cm[2] ?? '';
        const v = /<(?:\w+:)?v\b[^>]*?(?:\/>|>([\s\S]*?)<\/(?:\w+:)?v>)/.exec(inner);
        const f = /<(?:\w+:)?f\b[^>]*?(?:\/>|>([\s\S]*?)<\/(?:\w+:)?f>)/.exec(inner);
        const vText = v ? xmlText(v[1] ?? '') : null;
        let value: XlsxValue = null;
        const where = `${sheetPath} cell ${a.r ?? `${columnName(pos.col)}${pos.row + 1}`}`;
        if (f) value = { formula: xmlText(f[1] ?? '') };
        else if (a.t === 'inlineStr') value = /<(?:\w+:)?is\b/.test(inner) ? stringItem(inner) : null;
        else if (vText === null || vText === '') value = null;
        else if (a.t === 's') {
          const k = Number(vText);
          if (!Number.isInteger(k) || k < 0 || k >= shared.length) throw new ZipError(file, `${where}: shared string ${vText} of ${shared.length}`);
          value = shared[k];
        } else if (a.t === 'b') value = vText === '1' || vText.toLowerCase() === 'true';
        else if (a.t === 'str' || a.t === 'e' || a.t === 'd') value = vText;
        else {
          value = /[.eE]/.test(vText) ? Number(vText) : Number(vText) + 0; // openpyxl: int() unless '.', 'e', 'E' ("-0" is 0)
          if (!Number.isFinite(value) || vText.trim() === '') throw new ZipError(file, `${where}: '${vText}' is not a number`);
        }
        while (rows.length <= pos.row) rows.push([]);
        rows[pos.row][pos.col] = value;
        width = Math.max(width, pos.col + 1);
      }
    }
    for (const row of rows) for (let j = 0; j < width; j++) if (row[j] === undefined) row[j] = null;
    return { sheet: sheetAttrs.name ?? '', rows };
  } finally {
    fs.closeSync(fd);
  }
}
