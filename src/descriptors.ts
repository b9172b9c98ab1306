/**
 * A process's socket budget (Linux): the sockets its peers open may use the open-files limit
 * (`ulimit -n`; Node raises the soft limit to the hard one at start-up) less the descriptors the
 * process holds once started, less `--fd-reserve` for what opens later.
 *
 * - The gateway: sockets on the WebSocket port. Its own descriptors are workers and their listeners,
 *   the MPC links and the admin port (≈ 60 with 2 workers); the reserve covers admin requests and
 *   scrapes, MPC reconnects and worker restarts. Without it, ~19,900 idle connections under a 20,000
 *   limit left the admin port unable to accept `/healthz` and new clients failing (issue 10).
 * - The MPC: connections on its publisher and gateway ports, and on the HTTP and gRPC ingress ports
 *   when they run, each port with its own share (mpc/mpc.ts); the reserve covers the admin port and
 *   the ingresses' own links to the publisher port.
 *
 * Elsewhere than Linux (no /proc) there is no budget: the limits of the platform apply.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { ErrorCodes, TormqError } from './errors.js';

export interface SocketBudget {
  /** The process's soft open-files limit. */
  readonly fileLimit: number;
  /** Descriptors open when the budget was taken. */
  readonly inUse: number;
  readonly reserve: number;
  /** Most sockets peers may open: fileLimit − inUse − reserve. */
  readonly limit: number;
}

/** The soft open-files limit in `/proc/self/limits` text, or null when absent or unlimited. */
export function openFilesLimit(limits: string): number | null {
  const match = /^Max open files\s+(\d+)\s/m.exec(limits);
  return match === null ? null : Number(match[1]);
}

/**
 * The budget now, or null when the platform does not tell (no /proc). Throws ERR_DESCRIPTOR_LIMIT when
 * the limit leaves no descriptor for `what`.
 */
export function socketBudget(reserve: number, what = 'client sockets'): SocketBudget | null {
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
      `the open-files limit ${fileLimit} leaves no descriptor for ${what} (${inUse} in use, ${reserve} reserved by --fd-reserve): raise ulimit -n`,
    );
  }
  return { fileLimit, inUse, reserve, limit };
}

/**
 * Connections on a port, capped at its share of a socket budget: one that would pass it is closed as
 * it is accepted, counted and reported, so a flood of connections (idle or not) cannot take the
 * descriptors the process needs for its other ports. Without a cap, 300 idle connections to the MPC's
 * publisher port under `ulimit -n 256` left its admin port, its HTTP ingress and its gateway port
 * accepting nothing, and nothing said so (libuv closes what it cannot accept, silently).
 */
export class ConnectionBudget {
  /** Connections held now. */
  open = 0;
  /** Connections closed at accept because the budget was spent. */
  refused = 0;

  /** Most connections at once: Infinity until known (see `socketBudget`). */
  limit = Infinity;

  /**
   * @param port the port's name, for the report
   * @param onRefused told of each refusal (the caller throttles its logging)
   */
  constructor(
    readonly port: string,
    private readonly onRefused: (port: string, address: string, limit: number) => void = () => {},
  ) {}

  /** Takes a slot for `socket` until it closes; false (and the socket destroyed) when none is left. */
  admit(socket: Socket): boolean {
    if (this.open >= this.limit) {
      this.refused++;
      const address = `${socket.remoteAddress}:${socket.remotePort}`; // gone once destroyed
      socket.destroy();
      this.onRefused(this.port, address, this.limit);
      return false;
    }
    this.open++;
    socket.once('close', () => this.open--);
    return true;
  }

  /** For /stats: the limit is null while there is none. */
  stats(): { open: number; limit: number | null; refused: number } {
    return { open: this.open, limit: Number.isFinite(this.limit) ? this.limit : null, refused: this.refused };
  }
}
