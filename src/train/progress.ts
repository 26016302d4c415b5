// Training progress for the CLI: a cli-progress bar on a terminal (step, loss split into CE and KL,
// tokens/s, ETA), plain lines every `every` steps otherwise (logs, CI). A stage with its own loss
// (Stage.loss) logs no CE, KL or tokens: its line shows the loss and ETA only; a plain LLaVA's, no split.
import { SingleBar } from 'cli-progress';

export class Progress {
  private bar: SingleBar | null = null;
  private stage = '';
  /** `kl`: false for a model without the visual-word KL (vmWeight 0): its loss is the CE, and no split is shown. */
  constructor(private readonly every = 50, private readonly stream: NodeJS.WriteStream = process.stdout, private readonly opts: { kl?: boolean } = {}) {}

  /**
   * A bar only on a real terminal. Open MPI gives every rank a pseudo-terminal even when mpirun's output goes to a
   * file, so under it the launcher's VWLMM_STDOUT_TTY decides (src/distributed/launch.ts), and plain lines without it.
   */
  private onTerminal(): boolean {
    const told = process.env.VWLMM_STDOUT_TTY;
    if (told !== undefined) return told === '1' && !!this.stream.isTTY;
    return !!this.stream.isTTY && process.env.OMPI_COMM_WORLD_SIZE === undefined;
  }

  update(r: Record<string, unknown>): void {
    if (r.type !== 'train') return;
    const parts = r.ce === undefined || this.opts.kl === false ? '' : ` (CE ${(r.ce as number).toFixed(3)}, KL ${(r.kl as number).toFixed(3)})`;
    const tps = r.tokensPerSec === undefined ? null : Math.round(r.tokensPerSec as number);
    const payload = { stage: String(r.stage), loss: (r.loss as number).toFixed(3), parts, speed: tps === null ? '' : ` ${tps} tok/s`, etaS: Math.round(r.eta as number) };
    if (this.onTerminal()) {
      if (!this.bar || this.stage !== payload.stage) {
        this.bar?.stop();
        this.stage = payload.stage;
        this.bar = new SingleBar({ format: '{stage} |{bar}| {value}/{total} loss {loss}{parts}{speed} ETA {etaS} s', stream: this.stream, hideCursor: true }, undefined as never);
        this.bar.start(r.steps as number, 0, payload);
      }
      this.bar.update(r.step as number, payload);
      if (r.step === r.steps) {
        this.bar.stop();
        this.bar = null;
      }
    } else if ((r.step as number) % this.every === 0 || r.step === r.steps) {
      this.stream.write(`  ${payload.stage.padEnd(9)} step ${String(r.step).padStart(5)}/${r.steps}  loss ${payload.loss}${parts}${tps === null ? '' : `  ${tps} tok/s`}  ETA ${payload.etaS} s\n`);
    }
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
