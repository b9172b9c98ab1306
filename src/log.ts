import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Structured JSON logs on stdout, one line per event. Synchronous writes keep lines whole when
 * several threads of one process log at once (each write is one line, well under PIPE_BUF).
 */
export function createLogger(name: string, level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    { name, level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 1, sync: true }),
  );
}
