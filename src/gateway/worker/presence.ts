/**
 * A worker's share of gopusher presence: how many of its connections have joined each card. Sessions
 * report a connection's first join of a card and its last leave (close, unsubscribe); the changes go
 * to the main thread as absolute counts per changed card, coalesced over FLUSH_MS, so a burst of joins
 * costs one message. Main sums the workers and reports the gateway's counts to the MPC
 * (main/presence.ts). Control plane: nothing here runs per published message.
 */

/** Changes are sent to main at most this often (presence is "within a few seconds", not per event). */
const FLUSH_MS = 50;

export class WorkerPresence {
  /** Connections of this worker that joined each card (cards with none are absent). */
  private readonly counts = new Map<string, number>();
  /** Cards whose count changed since the last flush. */
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Sends `[card, count, card, count, …]` (absolute counts of the changed cards) to main. */
    private readonly post: (cards: Array<string | number>) => void,
    private readonly flushMs = FLUSH_MS,
  ) {}

  /** A connection joined `card` (its first join of it). */
  joined(card: string): void {
    this.counts.set(card, (this.counts.get(card) ?? 0) + 1);
    this.changed(card);
  }

  /** A connection left `card` (its last join of it ended). */
  left(card: string): void {
    const n = (this.counts.get(card) ?? 0) - 1;
    if (n > 0) this.counts.set(card, n);
    else this.counts.delete(card);
    this.changed(card);
  }

  /** Connections of this worker that joined `card`. */
  count(card: string): number {
    return this.counts.get(card) ?? 0;
  }

  /** Cards with at least one connection here. */
  get cards(): number {
    return this.counts.size;
  }

  /** Sends the pending changes now. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.dirty.size === 0) return;
    const cards: Array<string | number> = [];
    for (const card of this.dirty) cards.push(card, this.counts.get(card) ?? 0);
    this.dirty.clear();
    this.post(cards);
  }

  private changed(card: string): void {
    this.dirty.add(card);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
  }
}
