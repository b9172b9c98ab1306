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
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ErrorCodes, TormqError } from './errors.js';
import { logThrottle, type Logger } from './log.js';

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
 * Connections on a port, capped at its share of a socket budget, so a flood of connections (idle or
 * not) cannot take the descriptors the process needs for its other ports. Without a cap, 300 idle
 * connections to the MPC's publisher port under `ulimit -n 256` left its admin port, its HTTP ingress
 * and its gateway port accepting nothing, and nothing said so (libuv closes what it cannot accept,
 * silently).
 *
 * At the cap, the oldest connection still in its protocol's handshake (`established` not yet called)
 * is closed to make room, as the gateway does for its WebSocket port: idle connections cannot keep a
 * peer that completes its handshake out of the flooded port itself. When every connection is
 * established, the new one is closed instead. Either is counted and reported.
 */
/** Told of each connection a ConnectionBudget closes at its cap: the new one (`shed` false) or an older one in its handshake (`shed` true). */
export type OnConnectionClosed = (port: string, address: string, limit: number, shed: boolean) => void;

/**
 * An OnConnectionClosed that logs, one line a minute per port and kind (they arrive in floods);
 * `cap` says what a port's limit is made of.
 */
export function logConnectionsClosed(log: Logger, cap: (port: string) => string): OnConnectionClosed {
  const throttle = logThrottle();
  return (port, address, limit, shed) => {
    const line = throttle(`${port} ${shed}`);
    if (line === null) return;
    const open = `${limit} connections are open on it (${cap(port)})`;
    if (shed) {
      log.warn({ port, address, limit, shedSinceLastLine: line.held }, `${port} port: ${open}; the oldest still in its handshake was closed to make room for a new one`);
    } else {
      log.warn({ port, address, limit, refusedSinceLastLine: line.held }, `${port} port: connection closed, ${open} and all have completed their handshake; raise ulimit -n if they are legitimate`);
    }
  };
}

export class ConnectionBudget {
  /** Connections closed at accept because the budget was spent and none was in its handshake. */
  refused = 0;
  /** Connections closed in their handshake to make room for a new one. */
  shed = 0;
  /** Connections held now, in accept order. */
  private readonly sockets = new Set<Socket>();
  /** Of them, those still in their handshake, oldest first. */
  private readonly handshaking = new Set<Socket>();

  /** Most connections at once: Infinity until known (see `socketBudget`). */
  limit = Infinity;
  /** Called whenever a connection is admitted with the budget at least half spent (see budgetHttpServer). */
  onCrowded: (() => void) | null = null;

  constructor(
    /** The port's name, for the report. */
    readonly port: string,
    /** Told of each connection closed at the cap: the new one (`shed` false) or an older one in its handshake (`shed` true); the caller throttles its logging. */
    private readonly onRefused: OnConnectionClosed = () => {},
  ) {}

  /**
   * Takes a slot for `socket` until it closes, counted as in its handshake until `established`. At
   * the cap the oldest one in its handshake is closed for it; false (and `socket` destroyed) when
   * there is none.
   */
  admit(socket: Socket): boolean {
    if (this.sockets.size >= this.limit) {
      const oldest = this.handshaking.values().next();
      if (oldest.done === true) {
        this.refused++;
        const address = `${socket.remoteAddress}:${socket.remotePort}`; // gone once destroyed
        socket.destroy();
        this.onRefused(this.port, address, this.limit, false);
        return false;
      }
      const victim = oldest.value;
      this.shed++;
      this.forget(victim);
      const address = `${victim.remoteAddress}:${victim.remotePort}`;
      victim.destroy();
      this.onRefused(this.port, address, this.limit, true);
    }
    this.sockets.add(socket);
    this.handshaking.add(socket);
    socket.once('close', () => this.forget(socket));
    if (this.onCrowded !== null && this.crowded) this.onCrowded();
    return true;
  }

  /** At least half the budget is spent. */
  get crowded(): boolean {
    return this.sockets.size * 2 >= this.limit;
  }

  /** `socket` completed its handshake: it is no longer the first to go at the cap. */
  established(socket: Socket): void {
    this.handshaking.delete(socket);
  }

  /**
   * `socket`, established, has begun something it must finish to count as established again (the
   * next request on an HTTP keep-alive connection): among the first to go at the cap meanwhile, in
   * order from now. Already so: unchanged (a trickle does not renew its place).
   */
  unsettled(socket: Socket): void {
    if (this.sockets.has(socket) && !this.handshaking.has(socket)) this.handshaking.add(socket);
  }

  /** For /stats: the limit is null while there is none. */
  stats(): { open: number; handshaking: number; limit: number | null; refused: number; shed: number } {
    return { open: this.sockets.size, handshaking: this.handshaking.size, limit: Number.isFinite(this.limit) ? this.limit : null, refused: this.refused, shed: this.shed };
  }

  private forget(socket: Socket): void {
    this.sockets.delete(socket);
    this.handshaking.delete(socket);
  }
}

/**
 * Node's options for an HTTP server on a budget: a request's headers within 10 s and all of it within
 * 30 s, checked every second (Node's defaults: 60 s and 300 s, checked every 30 s), so a connection
 * that trickles a request in holds its slot that long at most.
 */
export const HTTP_REQUEST_TIMEOUTS = { headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1_000 } as const;

/**
 * Puts an HTTP(S) server's connections on `budget`, from TCP accept (before TLS or a request: idle
 * connections count too). A connection is in its handshake until its first request has been
 * answered, not merely asked: one that sends a request's headers and then its body a byte at a time
 * stays the first to go at the cap. When the headers were enough, 21 such connections (the MPC's HTTP
 * cap under `ulimit -n 256`) kept every new client out for as long as Node let them trickle. The same
 * holds for every later request on a keep-alive connection.
 */
export function budgetHttpServer(server: HttpServer, budget: ConnectionBudget): void {
  // Keep-alive: bytes after the first request begin another, which is in its handshake until it is
  // answered too. Before, a connection answered once could trickle its next request for the whole
  // request timeout without ever being shed, and do it again after one quick request. Seeing those
  // bytes takes a 'data' listener, which makes Node hand the parser every read through JavaScript:
  // 6-8 µs more per request on the MPC's HTTP ingress (62.5-64.5 µs → 69.0-70.3, /tmp httpcost.mjs).
  // So connections are watched only once the budget is half spent: below that nobody is shed anyway.
  const watched = new WeakSet<Socket>();
  /** Connections answered while the budget was not crowded: accepted socket → the one requests arrive on. */
  const unwatched = new Map<Socket, Socket>();
  const watch = (socket: Socket, requests: Socket) => {
    watched.add(socket);
    requests.on('data', () => budget.unsettled(socket));
  };
  budget.onCrowded = () => {
    for (const [socket, requests] of unwatched) watch(socket, requests);
    unwatched.clear();
  };
  server.on('connection', (socket: Socket) => {
    if (budget.admit(socket)) socket.once('close', () => unwatched.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Over TLS the request's socket wraps the one accepted (its `_parent`, long-standing if undocumented).
    const socket = (req.socket as Socket & { _parent?: Socket })._parent ?? (req.socket as Socket);
    res.once('finish', () => budget.established(socket));
    if (watched.has(socket)) return;
    if (budget.crowded) {
      unwatched.delete(socket);
      watch(socket, req.socket as Socket);
    } else unwatched.set(socket, req.socket as Socket);
  });
}
