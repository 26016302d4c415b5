// The trainer's op programs (src/program.ts) for a stage with `prepare` (TrainerOptions.replay). The stage's first
// step in a run runs in JavaScript and leaves its gradients allocated; the next two steps are recorded, one program
// per micro-batch (the first one zeroes the gradients in place); when the two recordings agree call for call, the
// second is replayed for the rest of the stage. A replay runs the recorded kernels on the recorded buffers, so the
// stage trains to the same numbers, bit for bit, as without it (tests/train/replay.test.ts).
import { callOp } from '../call_op';
import { OpProgram } from '../program';
import { Device, keep, Tensor } from '../tensor';

export type ReplayPhase = 'first' | 'record' | 'replay' | 'off';

export class StageReplay {
  phase: ReplayPhase = 'first';
  /** The step's stats tensor, kept through the stage: the programs write the losses there. */
  readonly stats: Tensor;
  private grads: Tensor[] = [];
  private recording: OpProgram[] = [];
  private recorded: OpProgram[][] = [];
  private programs: OpProgram[] = [];
  /** Why the stage went on in JavaScript ('off'), once it has. */
  why: string | null = null;
  private reported = false;

  constructor(readonly device: Device, statsSize: number) {
    this.stats = keep(Tensor.zeros([statsSize], { device }));
  }

  /**
   * Micro-batch m of the step: replayed, recorded, or run by `body` as it is. Returns after the micro-batch's
   * forward and backward, whichever way they ran.
   */
  run(m: number, data: ArrayBufferView[], body: () => void): void {
    if (this.phase === 'replay') {
      this.programs[m].replay(data);
      return;
    }
    if (this.phase !== 'record') {
      body();
      return;
    }
    const r = OpProgram.tryRecord(this.device, data, () => {
      // the gradients kept from the last step, zeroed in place (set_to_none=False): 0 + g is g, so the numbers
      // are those of gradients made anew
      if (m === 0) for (const g of this.grads) callOp('fill', this.device, [], [g], [g.size], [0]);
      body();
    });
    if ('why' in r) this.stop(`step not replayable: ${r.why}`);
    else this.recording.push(r.program);
  }

  /**
   * After the optimizer step: whether the caller frees the gradients now (true) or they stay for the next step's
   * programs. Returns a record to log when the phase changed.
   */
  afterStep(params: Tensor[]): { free: boolean; record?: Record<string, unknown> } {
    if (this.phase === 'first') {
      this.grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      this.phase = 'record';
      return { free: false };
    }
    if (this.phase === 'record') {
      this.recorded.push(this.recording);
      this.recording = [];
      if (this.recorded.length < 2) return { free: false };
      const [a, b] = this.recorded;
      const diff = a.length !== b.length ? `${a.length} micro-batches recorded against ${b.length}` : a.map((p, m) => p.differenceFrom(b[m])).find((d) => d !== null) ?? null;
      if (diff !== null) {
        this.stop(`two recorded steps differ: ${diff}`);
        this.reported = true;
        return { free: true, record: { used: false, why: this.why } };
      }
      a.forEach((p) => p.dispose());
      this.programs = b;
      this.recorded = [];
      this.phase = 'replay';
      const info = b.map((p) => p.info());
      return { free: false, record: { used: true, programs: b.length, ops: info.reduce((n, i) => n + i.ops, 0), poolBytes: info.reduce((n, i) => n + i.poolBytes, 0) } };
    }
    if (this.phase === 'off') {
      const record = this.why && !this.reported ? { used: false, why: this.why } : undefined;
      this.reported = true;
      return { free: true, record };
    }
    return { free: false };
  }

  /** Back to JavaScript for the rest of the stage (a step that cannot be replayed, or a non-finite one). */
  stop(why: string): void {
    if (this.phase === 'off') return;
    this.phase = 'off';
    this.why = why;
    this.disposePrograms();
  }

  private disposePrograms(): void {
    for (const p of [...this.recording, ...this.recorded.flat(), ...this.programs]) p.dispose();
    this.recording = [];
    this.recorded = [];
    this.programs = [];
    this.grads = [];
  }

  dispose(): void {
    this.disposePrograms();
    this.stats.dispose();
  }
}
