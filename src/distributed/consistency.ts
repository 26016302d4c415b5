// What every rank of a data-parallel run must agree on, checked before the ranks exchange anything that depends on it
// (torch DDP compares the parameters' shapes across ranks when it is constructed). Ranks that built different models,
// train different parameters or cut different buckets would start collectives of different sizes, which MPI does not
// check (it reads and writes past the buffers: heap corruption, SIGABRT); ranks with another step count, batch size or
// data size would wait for each other until the collective timeout, or silently train something else.
//
// checkRanksAgree: each rank encodes its named values into fixed-size slots (a hash of the whole value, its length
// and its first bytes: the same number of bytes on every rank, whatever the values), one all-gather brings every rank's
// slots to every rank, and every rank compares them with rank 0's. All ranks see the same slots, so all come to the
// same verdict and, on a difference, all throw together an error naming what differs, with rank 0's value and this
// rank's (or the first rank that differs, on a rank that agrees with rank 0).
import { allGatherInt32, type ProcessGroup } from './process_group';

/** Slots per check (the same on every rank, so that the all-gather's size never depends on the values). */
const SLOTS = 48;
/** int32 words per slot: the hash of name and value, the value's UTF-8 length, then its first bytes. */
const WORDS = 32;
const TEXT_BYTES = (WORDS - 2) * 4;

/** 32-bit FNV-1a of a string's UTF-8 bytes (not cryptographic: it tells different values apart, nothing more). */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** `n tensors of e elements (shapes #hash)`: a list of shapes as one short, comparable value. */
export function shapesSummary(shapes: readonly (readonly number[])[]): string {
  const elements = shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  return `${shapes.length} tensors of ${elements} elements (shapes #${fnv1a(shapes.map((s) => s.join('x')).join(',')).toString(16).padStart(8, '0')})`;
}

function encode(fields: readonly (readonly [string, string])[]): Int32Array {
  const out = new Int32Array(SLOTS * WORDS);
  fields.forEach(([name, value], k) => {
    const bytes = Buffer.from(value, 'utf8'), at = k * WORDS;
    out[at] = fnv1a(`${name}\u0000${value}`) | 0;
    out[at + 1] = bytes.length;
    const text = Buffer.alloc(TEXT_BYTES);
    bytes.copy(text, 0, 0, Math.min(bytes.length, TEXT_BYTES));
    for (let w = 0; w < TEXT_BYTES / 4; w++) out[at + 2 + w] = text.readInt32LE(4 * w);
  });
  return out;
}

/** The value a slot carries, as far as it travelled (its first bytes; longer values end in '...'). */
function decode(all: Int32Array, rank: number, k: number): string {
  const at = (rank * SLOTS + k) * WORDS, length = all[at + 1];
  const text = Buffer.alloc(TEXT_BYTES);
  for (let w = 0; w < TEXT_BYTES / 4; w++) text.writeInt32LE(all[at + 2 + w], 4 * w);
  const shown = text.subarray(0, Math.min(length, TEXT_BYTES)).toString('utf8');
  return length > TEXT_BYTES ? `${shown}... (#${(all[at] >>> 0).toString(16)})` : shown;
}

function sameSlot(all: Int32Array, a: number, b: number, k: number): boolean {
  const x = (a * SLOTS + k) * WORDS, y = (b * SLOTS + k) * WORDS;
  for (let w = 0; w < WORDS; w++) if (all[x + w] !== all[y + w]) return false;
  return true;
}

/**
 * Collective (every rank calls it with the same field names, in the same order): throws on every rank, the same
 * verdict everywhere, when some rank's value of a field differs from rank 0's. `where` starts the message (e.g.
 * "Trainer: stage 'x'"); the fields are [name, value] (at most 48; long values are compared by hash and shown cut).
 * A group of one has nothing to compare.
 */
export function checkRanksAgree(group: ProcessGroup, where: string, fields: readonly (readonly [string, string])[]): void {
  if (fields.length > SLOTS) throw new RangeError(`checkRanksAgree: at most ${SLOTS} fields, got ${fields.length}`);
  if (group.worldSize === 1) return;
  const world = group.worldSize, rank = group.rank;
  const all = allGatherInt32(group, encode(fields));
  const problems: string[] = [];
  fields.forEach(([name], k) => {
    const differ = Array.from({ length: world }, (_, r) => r).filter((r) => !sameSlot(all, r, 0, k));
    if (!differ.length) return;
    const other = differ.includes(rank) ? rank : differ[0];
    const more = differ.length - 1;
    problems.push(`${name}: rank 0 has ${decode(all, 0, k)}, ${other === rank ? `this rank (${rank})` : `rank ${other}`} has ${decode(all, other, k)}${more > 0 ? ` (and ${more} more rank${more === 1 ? '' : 's'} differ)` : ''}`);
  });
  if (problems.length)
    throw new Error(`${where}: the data-parallel ranks disagree, so every rank stops here, before they exchange anything that depends on it: ${problems.join('; ')} (start every rank with the same model, data and settings)`);
}
