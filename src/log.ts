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

/**
 * A log throttle: a line for the first event of each key, then one per key per `intervalMs` (null
 * between); `held` is how many were held back since the last line. At most 1000 keys (they may carry
 * peers' words).
 */
export function logThrottle(intervalMs = 60_000): (key: string) => { held: number } | null {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (key) => {
    const now = Date.now();
    const entry = last.get(key);
    if (entry !== undefined && now - entry.at < intervalMs) {
      entry.suppressed++;
      return null;
    }
    if (last.size >= 1000) last.clear();
    last.set(key, { at: now, suppressed: 0 });
    return { held: entry?.suppressed ?? 0 };
  };
}
