// Graceful interruption of training (SIGINT / SIGTERM): a StopRequest the Trainer checks between optimizer
// steps; when set, the Trainer lets the current step finish, writes a checkpoint (weights, optimizer state,
// data position) and throws TrainingInterrupted, which the caller turns into an exit code (130 / 143).
//
// Node delivers signals on the main thread's event loop only, so a handler cannot run while a synchronous
// training loop holds that thread: Trainer.runAsync() (which the demo's stage 0 also runs on) yields to the
// event loop after every step, so handlers installed by installStopHandlers (or the Trainer's own with
// `handleSignals: true`) set the request in time. A synchronous run() can be given a StopRequest that other
// code requests.
import { launchEnv } from '../distributed/env';
import type { TrainerState } from './state';

export type StopSignal = 'SIGINT' | 'SIGTERM';
export const STOP_SIGNALS: readonly StopSignal[] = ['SIGINT', 'SIGTERM'];

/** The conventional exit status of a process stopped by the signal: 128 + its number (130, 143). */
export function exitCodeFor(signal: string): number {
  return signal === 'SIGTERM' ? 143 : signal === 'SIGINT' ? 130 : 1;
}

/** A request to stop training at the next step boundary. */
export class StopRequest {
  private signal: string | null = null;

  /** Asks the trainer(s) checking this request to stop after the current step. */
  request(signal: string = 'SIGINT'): void {
    if (this.signal === null) this.signal = signal;
  }

  /** The signal (or reason) of a pending request, or null. */
  requested(): string | null {
    return this.signal;
  }
}

/**
 * Whether this process is the one of a run that reports (a single process, or rank 0 of a data-parallel run, read
 * from its launcher's variables: src/distributed/env.ts), so that N ranks stopped together print one message.
 */
function isLeadProcess(env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    return launchEnv(env).rank === 0;
  } catch {
    return true; // a malformed launch environment is refused where the run starts; say what happens here anyway
  }
}

/** A second signal this soon after the first is taken as a copy of it (installStopHandlers). */
const DUPLICATE_MS = 500;

/**
 * Installs SIGINT / SIGTERM listeners that request a stop (and print what happens next on stderr: with `quiet`, not;
 * by default only the lead process of a data-parallel run prints, see isLeadProcess); a second
 * signal (DUPLICATE_MS or more after the first) exits at once (130 / 143: every checkpoint on disk is complete, see
 * saveCheckpoint). Returns the function that removes them. While installed, the signals no longer kill the
 * process by themselves: only use with something that checks `stop` between steps and yields to the event
 * loop (Trainer.runAsync).
 */
export function installStopHandlers(stop: StopRequest, opts: { quiet?: boolean } = {}): () => void {
  let firstAt: number | null = null;
  const quiet = opts.quiet ?? !isLeadProcess();
  const say = (text: string) => {
    if (!quiet) process.stderr.write(text);
  };
  const handler = (signal: StopSignal) => {
    // a signal sent to a whole process tree (a scheduler's stop, `kill` of a process group) reaches a rank both by itself
    // and through its launcher, which forwards it (src/distributed/launch.ts): one within DUPLICATE_MS is the same stop
    if (firstAt !== null && Date.now() - firstAt < DUPLICATE_MS) return;
    if (firstAt === null) {
      firstAt = Date.now();
      stop.request(signal);
      say(`\nvwlmm: ${signal}: stopping after the current step and writing a checkpoint (${signal === 'SIGINT' ? 'Ctrl-C' : 'send it'} again to quit at once; the last complete checkpoint stays loadable)\n`);
    } else {
      say(`vwlmm: ${signal} again: quitting without a new checkpoint\n`);
      process.exit(exitCodeFor(signal));
    }
  };
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return () => {
    for (const s of STOP_SIGNALS) process.removeListener(s, handler);
  };
}

/** Thrown by the Trainer after it stopped on a StopRequest (the checkpoint, if any, is written). */
export class TrainingInterrupted extends Error {
  readonly signal: string;
  /** 130 (SIGINT), 143 (SIGTERM), else 1. */
  readonly exitCode: number;
  /** The checkpoint directory to resume from; null when the stop came before the first step, or without outDir. */
  readonly checkpoint: string | null;
  readonly state: TrainerState;
  constructor(signal: string, checkpoint: string | null, state: TrainerState, where: string) {
    const none = state.globalStep === 0 ? 'no step was taken, so no checkpoint was written' : 'this training writes no checkpoints (no outDir), so there is nothing to resume from it';
    super(`training interrupted by ${signal} ${where}; ${checkpoint ? `checkpoint ${checkpoint} (weights, optimizer state and data position) is complete` : none}`);
    this.name = 'TrainingInterrupted';
    this.signal = signal;
    this.exitCode = exitCodeFor(signal);
    this.checkpoint = checkpoint;
    this.state = state;
  }
}

/** Thrown by the Trainer with `nonFinite: 'stop'` when a step's loss or gradient norm is NaN or Inf. */
export class NonFiniteError extends Error {
  constructor(message: string, readonly record: Record<string, unknown>) {
    super(message);
    this.name = 'NonFiniteError';
  }
}
