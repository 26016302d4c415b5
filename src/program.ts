// Op programs (native/napi/program.h): what a function does on a device, recorded once as it runs and then
// replayed natively with new input data, with no JavaScript, autograd or N-API call per op. PyTorch's
// torch.cuda.graphs records the same way ("static inputs" are our `inputs`), for the same reason: a small model's
// step on a GPU waits on the host's work per op. A replay runs the same kernels on the same buffers in the same
// order, so it computes what the function would, bit for bit, as long as the function makes the same calls for
// every input of the recorded sizes; `differenceFrom` checks two recordings of it (the Trainer records two steps
// before it replays: src/train/trainer.ts). On CUDA a replay is captured once into a CUDA graph and launched as one
// (RecordOptions.graph).
import { checkedOptions, typeError } from './errors';
import { addonFor, NativeProgramInfo, ProgramHandle } from './native';
import type { Device } from './tensor';

export type OpProgramInfo = NativeProgramInfo;

export interface RecordOptions {
  /**
   * A program whose memory pool the new one shares (the blocks of its temporaries, reused by size class): for
   * programs that never run at once, such as one per batch shape of a training stage. A replay refuses to run while
   * a buffer of a recording that shares its pool is still alive.
   */
  poolOf?: OpProgram;
  /**
   * On a backend with graphs (CUDA): capture the first replay that can into a CUDA graph and launch that graph at
   * every later replay, one host call instead of one per op (the same kernels, buffers and order: the same numbers).
   * A replay can when no data check is pending (async mode: the recording's own checks are, until a read or
   * synchronize()). A capture that fails (an op that waits for the device), or a launch that fails (out of graph
   * memory), leaves the program replaying call by call, with the reason in info().graph. Default true, unless the
   * environment sets VWLMM_CUDA_GRAPHS=0. Ignored on the CPU.
   */
  graph?: boolean;
}

const RECORD_KEYS = { poolOf: true, graph: true } satisfies Record<keyof RecordOptions, true>;

/** RecordOptions.graph's default: VWLMM_CUDA_GRAPHS=0 turns graphs off (to compare, or to rule them out). */
function graphsByDefault(): boolean {
  return process.env.VWLMM_CUDA_GRAPHS !== '0';
}

function inputList(where: string, inputs: readonly ArrayBufferView[]): ArrayBufferView[] {
  if (!Array.isArray(inputs)) throw typeError(where, 'inputs', 'an array of typed arrays', inputs);
  inputs.forEach((a, k) => {
    if (!ArrayBuffer.isView(a) || a instanceof DataView) throw typeError(where, `inputs[${k}]`, 'a typed array', a);
  });
  return [...inputs];
}

/** A view's element type ('Float32Array'; a Buffer is a 'Uint8Array'): what a replay's input must be of. */
const elementType = (a: ArrayBufferView): string => (a as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag];

export class OpProgram {
  private handle: ProgramHandle | null;

  private constructor(readonly device: Device, handle: ProgramHandle, private readonly inputTypes: readonly string[]) {
    this.handle = handle;
  }

  /**
   * Runs fn() once, for real, and records every op it runs on `device`, every upload (Tensor.fromArray) and every
   * zeroed allocation. An upload of (a slice of) one of `inputs` becomes a replay input: replay(newInputs) uploads
   * the same slice of newInputs[k] (of the same byte size); any other upload is kept as a constant. Every tensor fn
   * creates must be disposed by its end (a step's temporaries: a scope), a tensor made before it that its ops use
   * must stay alive while the program is used, and fn may not read a value back to the host (toArray): each makes
   * the recording a TypeError that names it (fn still runs to its end, as it would unrecorded). An error thrown by
   * fn is rethrown after the recording is dropped.
   */
  static record(device: Device, inputs: readonly ArrayBufferView[], fn: () => void, opts: RecordOptions = {}): OpProgram {
    const r = OpProgram.tryRecord(device, inputs, fn, opts);
    if ('why' in r) throw new TypeError(`OpProgram.record: the recording cannot be replayed: ${r.why}`);
    return r.program;
  }

  /**
   * record() for a caller that goes on either way: the recording only watches fn, which runs as it would unrecorded,
   * so when fn returns its work is done, and a recording that cannot be replayed is the reason in `why`. An error
   * thrown by fn is rethrown.
   */
  static tryRecord(device: Device, inputs: readonly ArrayBufferView[], fn: () => void, opts: RecordOptions = {}): { program: OpProgram } | { why: string } {
    const addon = addonFor(device, 'OpProgram.record');
    if (typeof fn !== 'function') throw typeError('OpProgram.record', 'fn', 'a function', fn);
    opts = checkedOptions('OpProgram.record', opts, RECORD_KEYS);
    const poolOf = opts.poolOf;
    if (poolOf !== undefined && !(poolOf instanceof OpProgram && poolOf.device === device)) throw typeError('OpProgram.record', 'poolOf', `an OpProgram of ${device}`, poolOf);
    const graph = opts.graph ?? graphsByDefault();
    if (typeof graph !== 'boolean') throw typeError('OpProgram.record', 'graph', 'a boolean', graph);
    const list = inputList('OpProgram.record', inputs);
    addon.programBegin(list, poolOf?.live('OpProgram.record (poolOf)'), graph);
    let ran = false;
    try {
      const r = fn() as unknown;
      if (r instanceof Promise) throw typeError('OpProgram.record', 'fn', 'a synchronous function (a program records one run of it)', r);
      ran = true;
    } finally {
      if (!ran) addon.programAbort();
    }
    try {
      return { program: new OpProgram(device, addon.programEnd(), list.map(elementType)) };
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      return { why: e.message.replace(/^programEnd: the recording cannot be replayed: /, '') };
    }
  }

  private live(where: string): ProgramHandle {
    if (this.handle === null) throw new TypeError(`${where}: the op program has been disposed`);
    return this.handle;
  }

  /**
   * Runs the recorded calls again, uploading from `inputs` what the recording uploaded from its inputs. Each input is
   * of its recorded element type (an Int32Array where a Float32Array was recorded would have its bytes read as floats).
   */
  replay(inputs: readonly ArrayBufferView[]): void {
    const h = this.live('OpProgram.replay');
    const list = inputList('OpProgram.replay', inputs);
    for (let k = 0; k < list.length && k < this.inputTypes.length; k++) {
      const type = elementType(list[k]);
      if (type !== this.inputTypes[k])
        throw typeError('OpProgram.replay', `inputs[${k}]`, `the element type it was recorded with, ${this.inputTypes[k]} (another type's bytes would be read as ${this.inputTypes[k]} values)`, list[k]);
    }
    addonFor(this.device, 'OpProgram.replay').programReplay(h, list);
  }

  /**
   * The first difference between this recording and `other` (same calls, parameters, buffers and constants),
   * or null when a replay of either would do what the other did.
   */
  differenceFrom(other: OpProgram): string | null {
    if (!(other instanceof OpProgram)) throw typeError('OpProgram.differenceFrom', 'other', 'an OpProgram', other);
    if (other.device !== this.device) return `one was recorded on ${this.device}, the other on ${other.device}`;
    return addonFor(this.device, 'OpProgram.differenceFrom').programCompare(this.live('OpProgram.differenceFrom'), other.live('OpProgram.differenceFrom'));
  }

  info(): OpProgramInfo {
    return addonFor(this.device, 'OpProgram.info').programInfo(this.live('OpProgram.info'));
  }

  get disposed(): boolean {
    return this.handle === null;
  }

  /** Frees the program's memory now (idempotent). */
  dispose(): void {
    if (this.handle === null) return;
    const h = this.handle;
    this.handle = null;
    addonFor(this.device, 'OpProgram.dispose').programDispose(h);
  }
}
