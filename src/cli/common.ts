/** What the CLIs share besides their flags: signal handling and start-up failures. */
import { TormqError } from '../errors.js';
import { die, ExitCodes } from './flags.js';

/** Runs `stop` on the first SIGINT/SIGTERM; a second one exits at once. */
export function onShutdownSignal(program: string, stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) die(program, `second ${signal}: exiting without draining`, ExitCodes.FAILURE);
      stopping = true;
      stop(signal).then(
        () => process.exit(ExitCodes.OK),
        (error: Error) => die(program, `shutdown failed: ${error.message}`, ExitCodes.FAILURE),
      );
    });
  }
}

/** Maps a start-up failure to a message and exit code: config errors 2, run-time errors 1. */
export function failStart(program: string, error: unknown): never {
  if (error instanceof TypeError || error instanceof RangeError) die(program, `invalid configuration: ${error.message}`, ExitCodes.USAGE);
  if (error instanceof TormqError) die(program, error.message, ExitCodes.FAILURE);
  die(program, (error as Error)?.stack ?? String(error), ExitCodes.FAILURE);
}
