// TensorBoard event files, as transformers' `report_to="tensorboard"` writes them through torch's SummaryWriter: one
// file per run, events.out.tfevents.<seconds>.<host>.<pid>.<n>, of TFRecords (length, masked CRC-32C of the length,
// an Event protobuf, its masked CRC-32C). The protobufs are encoded here by hand: the few fields written (Event's
// wall_time, step, file_version, summary, session_log; Summary.Value's tag and simple_value) need no library, and
// tests/train/tensorboard.test.ts checks the bytes against TensorBoard's own writer (scripts/make_tensorboard_fixture.py).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { typeError, rangeError, checkedOptions } from '../errors';
import { reflectedCrc32 } from '../io/zip';

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord frames use it. */
export const crc32c = reflectedCrc32(0x82f63b78);

/** TFRecord's masking of a CRC stored next to the data it covers. */
function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** A TFRecord: length (uint64 LE), its masked CRC, the data, the data's masked CRC. */
export function tfRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(16 + data.length);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

// protobuf wire format: what the messages below need
function varint(v: bigint): number[] {
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
const key = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
function lengthDelimited(field: number, bytes: Uint8Array | number[]): number[] {
  return [...key(field, 2), ...varint(BigInt(bytes.length)), ...bytes];
}
function double(field: number, v: number): number[] {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return [...key(field, 1), ...b];
}
function float(field: number, v: number): number[] {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v); // rounds to float32 (past its range: infinity), as protobuf's float field does
  return [...key(field, 5), ...b];
}

/**
 * An Event (tensorboard/compat/proto/event.proto, proto3: zero-valued plain fields are not written). Exactly one of
 * fileVersion, sessionStart (a SessionLog START, whose step is the event's), scalar.
 */
export function encodeEvent(e: { wallTime: number; step?: number; fileVersion?: string; sessionStart?: boolean; scalar?: { tag: string; value: number } }): Uint8Array {
  const out: number[] = [];
  if (e.wallTime !== 0) out.push(...double(1, e.wallTime));
  if (e.step) out.push(...key(2, 0), ...varint(BigInt(e.step)));
  if (e.fileVersion !== undefined) out.push(...lengthDelimited(3, Buffer.from(e.fileVersion, 'utf8')));
  if (e.scalar) {
    // Summary { repeated Value value = 1 }, Value { string tag = 1; oneof value { float simple_value = 2 } }: a oneof
    // member is written even when zero
    const value = [...lengthDelimited(1, Buffer.from(e.scalar.tag, 'utf8')), ...float(2, e.scalar.value)];
    out.push(...lengthDelimited(5, lengthDelimited(1, value)));
  }
  if (e.sessionStart) out.push(...lengthDelimited(7, [...key(1, 0), ...varint(1n)])); // SessionLog { status: START = 1 }
  return Uint8Array.from(out);
}

export interface TensorBoardWriterOptions {
  /**
   * The first global step this run writes. A SessionLog START at it follows the file version: TensorBoard then drops
   * what earlier event files in the folder hold from that step on (a resumed run writes those steps again; a run
   * started over, at step 1, replaces all of them), as torch's SummaryWriter(purge_step=...) does. Default 1. (Its
   * Python loader, `--load_fast=false`, does; its default fast loader replaces a tag's points only where the new
   * file writes that tag again.)
   */
  firstStep?: number;
  /** Seconds since the epoch (Event.wall_time); default Date.now() / 1000. For tests. */
  now?: () => number;
}

/**
 * Scalars for TensorBoard (`tensorboard --logdir DIR`), written as they come: a kill loses at most the record it cut,
 * which TensorBoard's reader skips. Close it when done (a run's end; the Trainer does).
 */
export class TensorBoardWriter {
  /** The event file this writer appends to. */
  readonly file: string;
  private fd: number | null;
  private readonly now: () => number;

  constructor(readonly dir: string, options?: TensorBoardWriterOptions) {
    if (typeof dir !== 'string' || dir === '') throw typeError('TensorBoardWriter', 'dir', 'a directory path', dir);
    const opts = checkedOptions('TensorBoardWriter', options, { firstStep: true, now: true } satisfies Record<keyof TensorBoardWriterOptions, true>);
    if (opts.now !== undefined && typeof opts.now !== 'function') throw typeError('TensorBoardWriter', 'now', 'a function returning seconds since the epoch', opts.now);
    const firstStep = opts.firstStep ?? 1;
    if (!Number.isSafeInteger(firstStep) || firstStep < 0) throw rangeError('TensorBoardWriter', `firstStep must be an integer >= 0, got ${String(firstStep)}`);
    this.now = opts.now ?? (() => Date.now() / 1000);
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new Error(`TensorBoardWriter: creating the folder ${dir} failed: ${(e as Error).message}`, { cause: e });
    }
    const wall = this.now();
    // torch's name: events.out.tfevents.{seconds:010d}.{hostname}.{pid}.{counter}; 'wx' never appends to another run's
    let n = 0;
    for (;;) {
      const file = path.join(dir, `events.out.tfevents.${String(Math.floor(wall)).padStart(10, '0')}.${os.hostname()}.${process.pid}.${n}`);
      try {
        this.fd = fs.openSync(file, 'wx');
        this.file = file;
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`TensorBoardWriter: creating an event file in ${dir} failed: ${(e as Error).message}`, { cause: e });
        n++;
      }
    }
    this.append(encodeEvent({ wallTime: wall, fileVersion: 'brain.Event:2' }));
    if (firstStep > 0) this.addSessionStart(firstStep);
  }

  /** One scalar at a global step (a non-finite value is written as it is: TensorBoard shows NaN / inf). */
  addScalar(tag: string, value: number, step: number, wallTime?: number): void {
    if (typeof tag !== 'string' || tag === '') throw typeError('TensorBoardWriter.addScalar', 'tag', 'a non-empty string', tag);
    if (typeof value !== 'number') throw typeError('TensorBoardWriter.addScalar', `value of '${tag}'`, 'a number', value);
    if (!Number.isSafeInteger(step) || step < 0) throw rangeError('TensorBoardWriter.addScalar', `step must be an integer >= 0, got ${String(step)}`);
    this.append(encodeEvent({ wallTime: wallTime ?? this.now(), step, scalar: { tag, value } }));
  }

  /** A SessionLog START at `step` (what the constructor writes for firstStep). */
  addSessionStart(step: number, wallTime?: number): void {
    if (!Number.isSafeInteger(step) || step < 0) throw rangeError('TensorBoardWriter.addSessionStart', `step must be an integer >= 0, got ${String(step)}`);
    this.append(encodeEvent({ wallTime: wallTime ?? this.now(), step, sessionStart: true }));
  }

  /** One TFRecord of `event`, written through: nothing waits in a buffer for a kill to lose. */
  private append(event: Uint8Array): void {
    if (this.fd === null) throw new Error(`TensorBoardWriter: ${this.file} is closed`);
    const rec = tfRecord(event);
    let done = 0;
    while (done < rec.length) done += fs.writeSync(this.fd, rec, done, rec.length - done);
  }

  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    fs.closeSync(fd);
  }
}

/**
 * The scalars of a Trainer log record under transformers' tags (train/loss, train/learning_rate, train/grad_norm,
 * eval/<metric>) and this project's (train/ce, train/kl, train/tokens_per_second, train/skipped_steps), at its global
 * step. Records of other types, and fields that are not finite-or-NaN numbers, give none.
 */
export function tensorboardScalars(record: Readonly<Record<string, unknown>>): { tag: string; value: number; step: number }[] {
  const step = record.globalStep;
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) return [];
  const out: { tag: string; value: number; step: number }[] = [];
  const put = (tag: string, v: unknown) => {
    if (typeof v === 'number') out.push({ tag, value: v, step });
  };
  if (record.type === 'train') {
    put('train/loss', record.loss);
    put('train/ce', record.ce);
    put('train/kl', record.kl);
    put('train/learning_rate', record.lr);
    put('train/grad_norm', record.gradNorm);
    put('train/tokens_per_second', record.tokensPerSec);
  } else if (record.type === 'nonfinite') {
    put('train/skipped_steps', record.skippedSteps);
  } else if (record.type === 'eval') {
    for (const [k, v] of Object.entries(record)) if (!['type', 'stage', 'step', 'globalStep'].includes(k)) put(`eval/${k}`, v);
  }
  return out;
}
