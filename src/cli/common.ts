/** What the CLIs share: exit codes, flag value parsing, signal handling. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TormqError } from '../errors.js';

export const ExitCodes = {
  OK: 0,
  /** Failed at run time (e.g. a port already in use). */
  FAILURE: 1,
  /** Bad flags or configuration. */
  USAGE: 2,
} as const;

export function die(program: string, message: string, code: number): never {
  process.stderr.write(`${program}: ${message}\n`);
  process.exit(code);
}

type FlagSpecs = NonNullable<ParseArgsConfig['options']>;
type FlagValue<S> = S extends { type: 'boolean' } ? boolean : string;
export type FlagValues<T extends FlagSpecs> = {
  [K in keyof T]?: T[K] extends { multiple: true } ? FlagValue<T[K]>[] : FlagValue<T[K]>;
};

/** parseArgs that turns unknown flags and missing values into a usage error (exit 2). */
export function parseFlags<T extends FlagSpecs>(program: string, options: T, usage: string): FlagValues<T> {
  try {
    const parsed = parseArgs({ options, strict: true, allowPositionals: false });
    if ((parsed.values as Record<string, unknown>).help) {
      process.stdout.write(usage);
      process.exit(ExitCodes.OK);
    }
    return parsed.values as FlagValues<T>;
  } catch (error) {
    die(program, `${(error as Error).message}\n\n${usage}`, ExitCodes.USAGE);
  }
}

/** A whole number, or the raw text so that validation reports exactly what was typed. */
export function intFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  return /^-?\d+$/.test(value) ? Number(value) : (value as unknown as number);
}

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
