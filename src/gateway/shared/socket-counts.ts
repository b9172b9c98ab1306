/**
 * Gateway-wide socket and topic accounting, in the Int32Array every thread shares (after the `GatewayShared`
 * cells). Each worker counts in its own cells and a total is the sum over workers, so a worker thread
 * that dies — whose sockets close without running a single 'close' listener — leaves no phantom count:
 * the main thread clears its cells when the thread has exited.
 *
 * - `sockets`: every TCP socket a worker accepted on the WebSocket port, from accept to close (mid
 *   handshake or open), counted against the socket budget `limit` (descriptors, see src/descriptors.ts).
 * - `connections`: sockets that asked to upgrade, from that request to close, counted against
 *   `--max-connections`.
 * - `topicReports`: topics a worker reported to main (interest-added) that main has not applied yet,
 *   plus room a worker reserves while it applies a subscribe frame; with the routed topics
 *   (GatewayShared.TOPICS) it is what `--max-topics` bounds.
 */
import { GATEWAY_SHARED_CELLS, GatewayShared } from './thread-protocol.js';

export const SocketKind = { sockets: 0, connections: 1, topicReports: 2 } as const;
export type SocketKind = (typeof SocketKind)[keyof typeof SocketKind];
const KINDS = 3;

/** Bytes of the shared buffer for `workers` workers. */
export function gatewaySharedBytes(workers: number): number {
  return (GATEWAY_SHARED_CELLS + KINDS * workers) * 4;
}

export class SocketCounts {
  private readonly cells: Int32Array;
  private readonly workers: number;

  constructor(buffer: SharedArrayBuffer) {
    this.cells = new Int32Array(buffer);
    this.workers = (this.cells.length - GATEWAY_SHARED_CELLS) / KINDS;
  }

  /** Adds `delta` to `worker`'s count of `kind`; returns the gateway-wide total after it. */
  add(worker: number, kind: SocketKind, delta: number): number {
    Atomics.add(this.cells, this.cell(worker, kind), delta);
    return this.total(kind);
  }

  /** Gateway-wide total of `kind` (the sum of the workers' cells; each read is atomic, the sum is not). */
  total(kind: SocketKind): number {
    let sum = 0;
    for (let worker = 0; worker < this.workers; worker++) sum += Atomics.load(this.cells, this.cell(worker, kind));
    return sum;
  }

  /** Forgets `worker`'s counts: its thread has exited, its sockets and reports are gone (main thread only). */
  clear(worker: number): void {
    for (let kind = 0; kind < KINDS; kind++) Atomics.store(this.cells, this.cell(worker, kind as SocketKind), 0);
  }

  /** Most sockets the gateway may hold on the WebSocket port; 0 = no budget (not known yet, or not Linux). */
  get limit(): number {
    return Atomics.load(this.cells, GatewayShared.SOCKET_LIMIT);
  }

  set limit(value: number) {
    Atomics.store(this.cells, GatewayShared.SOCKET_LIMIT, value);
  }

  /** Distinct topics main routes (written by main). */
  get routedTopics(): number {
    return Atomics.load(this.cells, GatewayShared.TOPICS);
  }

  set routedTopics(value: number) {
    Atomics.store(this.cells, GatewayShared.TOPICS, value);
  }

  /**
   * Reserves room for `n` topics for `worker` when routed topics, reports in flight and reservations
   * stay within `limit`. Strict across threads: each adds to its own cell before reading the sum, so
   * of two racing reservations at least one sees the other (Atomics are sequentially consistent).
   */
  reserveTopics(worker: number, n: number, limit: number): boolean {
    if (this.add(worker, SocketKind.topicReports, n) + this.routedTopics <= limit) return true;
    this.add(worker, SocketKind.topicReports, -n);
    return false;
  }

  private cell(worker: number, kind: SocketKind): number {
    return GATEWAY_SHARED_CELLS + worker * KINDS + kind;
  }
}
