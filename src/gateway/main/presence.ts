/**
 * The gateway's gopusher presence, reported upstream: the workers' counts of joined connections per
 * card (worker/presence.ts) summed for the whole gateway and sent to the MPC(s) over the link
 * (zmq/gateway-link.ts, `PresenceReport`; mpc/presence.ts aggregates every gateway):
 *
 * - changes, coalesced over DELTA_MS, as absolute counts of the changed cards;
 * - a heartbeat every `heartbeatMs` (an empty change list when nothing changed): the MPC forgets this
 *   gateway HEARTBEATS_PER_TTL heartbeats after the last report it got, so a gateway that dies drops
 *   out within that window;
 * - a snapshot (every card, in parts of MAX_CARDS_PER_FRAME) every SNAPSHOT_EVERY heartbeats, when an
 *   MPC links up (its `ready`) and when it asks (`presence-resync`: it missed a report);
 * - `bye` when the gateway stops.
 *
 * A worker that dies takes its connections with it: its counts are withdrawn at once. Memory: one
 * count per (worker, card) and per card, bounded by the connections' joins (--max-topics).
 */
import { encodePresence, type PresenceReport } from '../../zmq/gateway-link.js';

/** Changes are sent at most this often. */
const DELTA_MS = 100;
/** The MPC forgets the gateway after this many heartbeats without a report. */
export const HEARTBEATS_PER_TTL = 3;
/** A full snapshot goes out every this many heartbeats even when no MPC asked for one. */
const SNAPSHOT_EVERY = 30;
/** Cards per report frame (a frame of ~100 KB for typical ids). */
export const MAX_CARDS_PER_FRAME = 4096;

export interface PresenceCounters {
  /** Report frames sent (deltas, heartbeats and snapshot parts). */
  reports: number;
  snapshots: number;
  /** Snapshots the MPC asked for (or its `ready`). */
  resyncs: number;
}

export class GatewayPresence {
  readonly counters: PresenceCounters = { reports: 0, snapshots: 0, resyncs: 0 };
  /** Per worker slot, its connections per card. */
  private readonly perWorker = new Map<number, Map<string, number>>();
  /** The gateway's connections per card (cards with none are absent). */
  private readonly byCard = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private seq = 0;
  private deltaTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private beats = 0;
  private stopped = false;

  constructor(
    /** Sends a frame to every linked MPC. */
    private readonly send: (frame: Buffer) => void,
    /** This gateway's id (base64url). */
    private readonly id: string,
    private readonly heartbeatMs: number,
    /** WebSocket connections on the gateway, and worker threads up. */
    private readonly gauges: () => { clients: number; workers: number },
  ) {}

  /** Cards with at least one connection on this gateway. */
  get cards(): number {
    return this.byCard.size;
  }

  /** Connections of this gateway that joined `card`. */
  connections(card: string): number {
    return this.byCard.get(card) ?? 0;
  }

  start(): void {
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs);
    this.heartbeat.unref();
  }

  /** A worker's report: `[card, count, …]`, its absolute counts of the cards that changed. */
  worker(slot: number, cards: ReadonlyArray<string | number>): void {
    let counts = this.perWorker.get(slot);
    if (counts === undefined) this.perWorker.set(slot, (counts = new Map()));
    for (let i = 0; i < cards.length; i += 2) {
      const card = cards[i] as string;
      const count = cards[i + 1] as number;
      const old = counts.get(card) ?? 0;
      if (count > 0) counts.set(card, count);
      else counts.delete(card);
      this.add(card, count - old);
    }
  }

  /** A worker thread ended: its connections are gone. */
  workerGone(slot: number): void {
    const counts = this.perWorker.get(slot);
    if (counts === undefined) return;
    this.perWorker.delete(slot);
    for (const [card, count] of counts) this.add(card, -count);
  }

  /** An MPC linked up or asked for the full list: a snapshot goes out (several asks, one snapshot). */
  resync(): void {
    this.counters.resyncs++;
    if (this.resyncTimer !== null || this.stopped) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      this.snapshot();
    }, 10);
    this.resyncTimer.unref();
  }

  /** Stops reporting and tells the MPC(s) to forget this gateway now. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of [this.heartbeat, this.resyncTimer]) if (timer !== null) clearTimeout(timer);
    this.flush(true); // the last changes first: an MPC that misses the bye still expires it
    this.emit('bye', []);
  }

  private add(card: string, delta: number): void {
    if (delta === 0) return;
    const total = (this.byCard.get(card) ?? 0) + delta;
    if (total > 0) this.byCard.set(card, total);
    else this.byCard.delete(card);
    this.dirty.add(card);
    if (this.deltaTimer === null && !this.stopped) {
      this.deltaTimer = setTimeout(() => this.flush(), DELTA_MS);
      this.deltaTimer.unref();
    }
  }

  /** Sends the pending changes (and with none, a heartbeat when `always`). */
  private flush(always = false): void {
    if (this.deltaTimer !== null) clearTimeout(this.deltaTimer);
    this.deltaTimer = null;
    if (this.dirty.size === 0) {
      if (always) this.emit('delta', []);
      return;
    }
    let cards: Array<string | number> = [];
    for (const card of this.dirty) {
      cards.push(card, this.byCard.get(card) ?? 0);
      if (cards.length === 2 * MAX_CARDS_PER_FRAME) {
        this.emit('delta', cards);
        cards = [];
      }
    }
    this.dirty.clear();
    if (cards.length > 0) this.emit('delta', cards);
  }

  private beat(): void {
    if (++this.beats % SNAPSHOT_EVERY === 0) this.snapshot();
    else this.flush(true);
  }

  /** Every card, in parts sent back to back (nothing can come between them: this is synchronous). */
  private snapshot(): void {
    if (this.stopped) return;
    // A snapshot covers every pending change.
    if (this.deltaTimer !== null) clearTimeout(this.deltaTimer);
    this.deltaTimer = null;
    this.dirty.clear();
    this.counters.snapshots++;
    const parts = Math.max(1, Math.ceil(this.byCard.size / MAX_CARDS_PER_FRAME));
    let part = 0;
    let cards: Array<string | number> = [];
    for (const [card, count] of this.byCard) {
      cards.push(card, count);
      if (cards.length === 2 * MAX_CARDS_PER_FRAME) {
        this.emit('snapshot', cards, part++, parts);
        cards = [];
      }
    }
    if (part < parts) this.emit('snapshot', cards, part, parts);
  }

  private emit(kind: PresenceReport['kind'], cards: Array<string | number>, part?: number, parts?: number): void {
    const { clients, workers } = this.gauges();
    const report: PresenceReport = {
      gw: this.id,
      seq: ++this.seq,
      ttl: this.heartbeatMs * HEARTBEATS_PER_TTL,
      clients,
      workers,
      kind,
      ...(part === undefined ? {} : { part, parts }),
      cards,
    };
    this.counters.reports++;
    this.send(encodePresence(report));
  }
}
