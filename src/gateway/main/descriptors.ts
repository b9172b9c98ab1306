/**
 * The gateway's socket budget (Linux): sockets on the WebSocket port may use the open-files limit
 * (`ulimit -n`; Node raises the soft limit to the hard one at start-up) less the descriptors the
 * process holds once started (workers and their listeners, the MPC links, the admin port: ≈ 60 with
 * 2 workers) less `--fd-reserve` for what opens later (admin requests and scrapes, MPC reconnects,
 * worker restarts). Without it, ~19,900 idle connections under a 20,000 limit left the admin port
 * unable to accept `/healthz` and new clients failing (issue 10).
 *
 * Elsewhere than Linux (no /proc) there is no budget: the limits of the platform apply.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { ErrorCodes, TormqError } from '../../errors.js';

export interface SocketBudget {
  /** The process's soft open-files limit. */
  readonly fileLimit: number;
  /** Descriptors open when the budget was taken. */
  readonly inUse: number;
  readonly reserve: number;
  /** Most sockets on the WebSocket port: fileLimit − inUse − reserve. */
  readonly limit: number;
}

/** The soft open-files limit in `/proc/self/limits` text, or null when absent or unlimited. */
export function openFilesLimit(limits: string): number | null {
  const match = /^Max open files\s+(\d+)\s/m.exec(limits);
  return match === null ? null : Number(match[1]);
}

/**
 * The budget now, or null when the platform does not tell (no /proc). Throws ERR_DESCRIPTOR_LIMIT when
 * the limit leaves no descriptor for a client socket.
 */
export function socketBudget(reserve: number): SocketBudget | null {
  let fileLimit: number | null;
  let inUse: number;
  try {
    fileLimit = openFilesLimit(readFileSync('/proc/self/limits', 'utf8'));
    inUse = readdirSync('/proc/self/fd').length - 1; // less the directory's own descriptor
  } catch {
    return null;
  }
  if (fileLimit === null) return null;
  const limit = fileLimit - inUse - reserve;
  if (limit < 1) {
    throw new TormqError(
      ErrorCodes.DESCRIPTOR_LIMIT,
      `the open-files limit ${fileLimit} leaves no descriptor for client sockets (${inUse} in use, ${reserve} reserved by --fd-reserve): raise ulimit -n`,
    );
  }
  return { fileLimit, inUse, reserve, limit };
}
