/**
 * gopusher presence for the whole cluster, on the MPC: which cards are online, through how many
 * connections, on every gateway linked to this MPC. Each gateway reports its own counts over its link
 * (zmq/gateway-link.ts, `PresenceReport`): changes as they happen (absolute counts per changed card),
 * a heartbeat when nothing changed, and a full snapshot now and then, when the MPC asks for one
 * (`presence-resync`: it missed a report, or never heard of the gateway) and at the gateway's start.
 * The table sums them per card and forgets a gateway `ttl` ms after its last report, so a gateway
 * that dies (SIGKILL, a lost host) drops out within its heartbeat window.
 *
 * Memory is bounded: at most `maxEntries` (gateway, card) pairs and `maxGateways` gateways; past
 * them new entries are refused and counted (those cards then read as offline), never buffered.
 * Control plane: reports arrive per change of presence, never per published message.
 */
import type { PresenceReport } from '../zmq/gateway-link.js';

export interface PresenceLimits {
  /** (gateway, card) pairs held, all gateways together. */
  readonly maxEntries: number;
  readonly maxGateways: number;
  /** Longest card id accepted (the MPC's topic limit). */
  readonly maxCardLength: number;
}

/** What gopusher's IsOnline, Group and System read (gopusher/service.ts). */
export interface PresenceView {
  /** Connections that joined `card`, all gateways; 0 when none. */
  connections(card: string): number;
  /** Cluster-wide counts. */
  totals(): PresenceTotals;
}

export interface PresenceTotals {
  /** WebSocket connections on every gateway, joined or not. */
  clients: number;
  /** Cards with at least one connection. */
  cards: number;
  /** Gateways reporting. */
  gateways: number;
  /** Their worker threads. */
  workers: number;
}

export interface PresenceStats extends PresenceTotals {
  /** (gateway, card) pairs held. */
  entries: number;
  reports: number;
  /** Reports that were not well-formed, or named a bad card. */
  badReports: number;
  snapshots: number;
  /** Snapshots asked of gateways (a report lost, or an unknown gateway). */
  resyncs: number;
  /** Gateways forgotten because they stopped reporting. */
  expiredGateways: number;
  /** Entries not taken because `maxEntries` was reached (those cards read as offline). */
  refusedEntries: number;
  /** Reports of gateways not taken because `maxGateways` was reached. */
  refusedGateways: number;
}

/** A gateway is asked for a snapshot at most this often. */
const RESYNC_INTERVAL_MS = 1000;
const MIN_TTL_MS = 100;
const MAX_TTL_MS = 600_000;

interface GatewayPresence {
  readonly cards: Map<string, number>;
  clients: number;
  workers: number;
  seq: number;
  expiresAt: number;
  /** A snapshot being received: the parts so far (null: none). */
  pending: { cards: Map<string, number>; next: number; parts: number } | null;
  lastResyncAt: number;
}

export class PresenceTable implements PresenceView {
  private readonly gateways = new Map<string, GatewayPresence>();
  /** Connections per card, all gateways. */
  private readonly byCard = new Map<string, number>();
  private entries = 0;
  private readonly counters = { reports: 0, badReports: 0, snapshots: 0, resyncs: 0, expiredGateways: 0, refusedEntries: 0, refusedGateways: 0 };

  constructor(
    private readonly limits: PresenceLimits,
    /** Asks gateway `gw` (base64url id) for a snapshot. */
    private readonly resync: (gw: string) => void,
  ) {}

  connections(card: string): number {
    return this.byCard.get(card) ?? 0;
  }

  totals(): PresenceTotals {
    let clients = 0;
    let workers = 0;
    for (const gateway of this.gateways.values()) {
      clients += gateway.clients;
      workers += gateway.workers;
    }
    return { clients, cards: this.byCard.size, gateways: this.gateways.size, workers };
  }

  stats(): PresenceStats {
    return { ...this.totals(), entries: this.entries, ...this.counters };
  }

  /** One report (already parsed; cards are checked here). */
  report(report: PresenceReport, now: number): void {
    this.counters.reports++;
    if (!this.cardsValid(report.cards)) {
      this.counters.badReports++;
      return;
    }
    let gateway = this.gateways.get(report.gw);
    if (report.kind === 'bye') {
      if (gateway !== undefined) this.forget(report.gw, gateway);
      return;
    }
    let continuous = true;
    if (gateway === undefined) {
      if (this.gateways.size >= this.limits.maxGateways) {
        this.counters.refusedGateways++;
        return;
      }
      gateway = { cards: new Map(), clients: 0, workers: 0, seq: 0, expiresAt: 0, pending: null, lastResyncAt: -Infinity };
      this.gateways.set(report.gw, gateway);
      continuous = false; // whatever it reported before is unknown here
    } else if (report.seq !== gateway.seq + 1) {
      continuous = false;
    }
    gateway.seq = report.seq;
    gateway.clients = report.clients;
    gateway.workers = report.workers;
    gateway.expiresAt = now + Math.min(Math.max(report.ttl, MIN_TTL_MS), MAX_TTL_MS);

    if (report.kind === 'snapshot') {
      if (report.part === 0) gateway.pending = { cards: new Map(), next: 0, parts: report.parts! };
      const pending = gateway.pending;
      if (pending === null || report.part !== pending.next || report.parts !== pending.parts || (!continuous && report.part !== 0)) {
        // A part of a snapshot whose beginning (or a middle part) was lost: wait for another one.
        gateway.pending = null;
        this.askResync(report.gw, gateway, now);
        return;
      }
      const cards = report.cards;
      for (let i = 0; i < cards.length; i += 2) {
        const n = cards[i + 1] as number;
        if (n === 0) continue;
        // Bounded like the table itself: past it the rest of the snapshot is refused (and counted).
        if (pending.cards.size < this.limits.maxEntries) pending.cards.set(cards[i] as string, n);
        else this.counters.refusedEntries++;
      }
      pending.next++;
      if (pending.next === pending.parts) {
        gateway.pending = null;
        this.replace(gateway, pending.cards);
        this.counters.snapshots++;
      }
      return;
    }
    // A delta. Its counts are absolute: apply them even after a hole, then ask for the rest.
    if (gateway.pending !== null) {
      // Deltas never come between the parts of a snapshot: the snapshot was cut short.
      gateway.pending = null;
      continuous = false;
    }
    const cards = report.cards;
    for (let i = 0; i < cards.length; i += 2) this.set(gateway, cards[i] as string, cards[i + 1] as number);
    if (!continuous) this.askResync(report.gw, gateway, now);
  }

  /** Forgets gateways whose last report is older than their ttl. */
  sweep(now: number): void {
    for (const [id, gateway] of this.gateways) {
      if (gateway.expiresAt <= now) {
        this.forget(id, gateway);
        this.counters.expiredGateways++;
      }
    }
  }

  private cardsValid(cards: ReadonlyArray<string | number>): boolean {
    for (let i = 0; i < cards.length; i += 2) {
      const card = cards[i] as string;
      if (card.length === 0 || card.length > this.limits.maxCardLength || card.includes(':')) return false;
    }
    return true;
  }

  private askResync(id: string, gateway: GatewayPresence, now: number): void {
    if (now - gateway.lastResyncAt < RESYNC_INTERVAL_MS) return;
    gateway.lastResyncAt = now;
    this.counters.resyncs++;
    this.resync(id);
  }

  /** Sets the gateway's count of `card` (0: none), keeping the per-card sums and the entry bound. */
  private set(gateway: GatewayPresence, card: string, count: number): void {
    const old = gateway.cards.get(card) ?? 0;
    if (count === old) return;
    if (count === 0) {
      gateway.cards.delete(card);
      this.entries--;
    } else if (old === 0) {
      if (this.entries >= this.limits.maxEntries) {
        this.counters.refusedEntries++;
        return;
      }
      gateway.cards.set(card, count);
      this.entries++;
    } else {
      gateway.cards.set(card, count);
    }
    const total = (this.byCard.get(card) ?? 0) + count - old;
    if (total > 0) this.byCard.set(card, total);
    else this.byCard.delete(card);
  }

  /** A complete snapshot: the gateway's counts become exactly `cards`. */
  private replace(gateway: GatewayPresence, cards: Map<string, number>): void {
    for (const card of [...gateway.cards.keys()]) if (!cards.has(card)) this.set(gateway, card, 0);
    for (const [card, count] of cards) this.set(gateway, card, count);
  }

  private forget(id: string, gateway: GatewayPresence): void {
    for (const card of [...gateway.cards.keys()]) this.set(gateway, card, 0);
    this.gateways.delete(id);
  }
}
