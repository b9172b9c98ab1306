/**
 * Every TCP socket a worker accepts on the WebSocket port, from accept until its WebSocket handshake
 * completes. Accept is where each socket is first seen, so this is where it gets its one 'error'
 * listener, for its whole life. Node's HTTP server removes its own listener when it emits 'upgrade',
 * and ws adds one only inside `handleUpgrade`: in between — a refusal being written (404, 403, 401,
 * 503), a token being verified, a root being routed — a reset (ECONNRESET) on a socket without a
 * listener was an uncaught error that took the worker and all its clients down (measured before this
 * file existed: 8 worker deaths in 300 upgrades to a wrong path, each reset right after its request).
 *
 * It also keeps idle sockets from exhausting descriptors:
 * - each socket counts gateway-wide from accept (SocketCounts `sockets`) against the socket budget
 *   that main derives from the open-files limit (src/descriptors.ts). Over it, the oldest socket
 *   still in its handshake is closed to make room (an idle one never locks out a client that
 *   completes its handshake promptly), or the new socket when none is;
 * - a socket that has not completed its handshake `handshakeTimeoutMs` after accept is closed.
 */
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../log.js';
import { WorkerStat } from '../shared/counters.js';
import { SocketKind, type SocketCounts } from '../shared/socket-counts.js';

export interface AdmissionOptions {
  readonly counts: SocketCounts;
  /** This worker's index (its cells in `counts`). */
  readonly worker: number;
  readonly stats: Float64Array;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
}

export class Admission {
  /** Sockets still in their handshake, in accept order (so the first is the oldest), with their accept time. */
  private readonly handshaking = new Map<Duplex, number>();
  private readonly counts: SocketCounts;
  private readonly worker: number;
  private readonly stats: Float64Array;
  private readonly timeoutMs: number;
  // One listener function each for all sockets, not a closure per socket: per-connection closures cost
  // heap for as long as the connection lives (see worker.ts).
  private readonly onError: (this: Duplex, error: Error & { code?: string }) => void;
  private readonly onClose: (this: Duplex) => void;

  constructor(options: AdmissionOptions) {
    this.counts = options.counts;
    this.worker = options.worker;
    this.stats = options.stats;
    this.timeoutMs = options.handshakeTimeoutMs;
    const { stats, log, counts, worker } = options;
    const handshaking = this.handshaking;
    // The socket destroys itself on error (autoDestroy); what is left is to count it.
    this.onError = function (error) {
      stats[WorkerStat.socketErrors]++;
      log.debug({ err: error.message, code: error.code }, 'client socket error');
    };
    this.onClose = function () {
      counts.add(worker, SocketKind.sockets, -1);
      handshaking.delete(this);
    };
    // Sockets are closed between timeoutMs and timeoutMs + one sweep interval after accept.
    setInterval(() => this.sweep(), Math.min(1000, Math.ceil(this.timeoutMs / 2))).unref();
  }

  /** Admits every socket `server` accepts from now on. */
  attach(server: Server): void {
    server.on('connection', (socket: Duplex) => this.admit(socket));
  }

  /** A socket just accepted. */
  admit(socket: Duplex): void {
    socket.on('error', this.onError);
    // `on`, not `once`: 'close' is emitted once anyway, and once's wrapper would cost every connection heap.
    socket.on('close', this.onClose);
    this.handshaking.set(socket, performance.now());
    const total = this.counts.add(this.worker, SocketKind.sockets, 1);
    const limit = this.counts.limit;
    if (limit > 0 && total > limit) this.shed(socket);
  }

  /** The socket completed its WebSocket handshake: it is a connection now, no longer on the clock. */
  upgraded(socket: Duplex): void {
    this.handshaking.delete(socket);
  }

  /** Sockets of this worker still in their handshake. */
  get pending(): number {
    return this.handshaking.size;
  }

  /** Over the socket budget: the oldest socket still in its handshake makes room, else the new one goes. */
  private shed(accepted: Duplex): void {
    const oldest = this.handshaking.keys().next().value as Duplex;
    const victim = oldest === accepted ? accepted : oldest;
    this.handshaking.delete(victim);
    this.stats[WorkerStat.socketsShed]++;
    victim.destroy();
  }

  private sweep(): void {
    const deadline = performance.now() - this.timeoutMs;
    for (const [socket, acceptedAt] of this.handshaking) {
      if (acceptedAt > deadline) break; // accept order: every later one is younger
      this.handshaking.delete(socket);
      this.stats[WorkerStat.handshakeTimeouts]++;
      socket.destroy();
    }
  }
}
