/**
 * A worker's view of which topics the main thread routes to it. The trie reports each topic it holds a
 * node for (a subscription or an ancestor of one: topics whose messages some connection here
 * receives); the first reference reports it to main. Main answers each report (and each `mark`
 * request) with a MARK record in this worker's ring once the MPC has confirmed the subscription
 * upstream, carrying the stream's position at that point of the ring: everything of the stream after
 * it follows. Reports go by postMessage, which nothing orders against the messages already in the
 * ring; the MARK travels with them. So a subscription is acknowledged (and an auto-subscribed
 * connection opened) only once its topics are marked: an ack means "messages published from now on
 * reach you", and a tormq.v2 ack carries exact positions.
 *
 * Topics are reference-counted: the trie holds one reference per node, and an upgrade may pin a topic
 * before its connection exists (token auto-subscription).
 */
import type { WorkerEvent } from '../shared/thread-protocol.js';

/** Where a stream stands for this worker at a MARK: `epoch` is '' when the topic has no stream yet known. */
export interface Position {
  readonly epoch: string;
  readonly offset: number;
}

/** A MARK answering a request for a topic no longer routed here (released meanwhile). */
export const NOT_ROUTED: Position = Object.freeze({ epoch: '', offset: -1 });

type Waiter = (position: Position) => void;

export class InterestRouting {
  private readonly refs = new Map<string, number>();
  /** Reports and mark requests not yet answered: the latest seq per topic and who waits for it. */
  private readonly pending = new Map<string, { seq: number; waiters: Waiter[] }>();
  private seq = 0;

  constructor(private readonly post: (event: WorkerEvent) => void) {}

  /** Takes a reference on `topic`; the first one reports it to main. */
  acquire(topic: string): void {
    const count = this.refs.get(topic) ?? 0;
    this.refs.set(topic, count + 1);
    if (count > 0) return;
    const seq = ++this.seq;
    const waiting = this.pending.get(topic);
    // Re-added before the previous report was answered: the waiters now wait for this newer report.
    this.pending.set(topic, { seq, waiters: waiting?.waiters ?? [] });
    this.post({ type: 'interest-added', topic, seq });
  }

  /** Drops a reference; the last one reports the topic removed. */
  release(topic: string): void {
    const count = this.refs.get(topic) ?? 0;
    if (count > 1) {
      this.refs.set(topic, count - 1);
      return;
    }
    this.refs.delete(topic);
    this.post({ type: 'interest-removed', topic });
  }

  /** A MARK record read from the ring. A stale one (for an earlier report or request) is ignored. */
  marked(topic: string, seq: number, position: Position): void {
    const entry = this.pending.get(topic);
    if (entry === undefined || entry.seq !== seq) return;
    this.pending.delete(topic);
    for (const waiter of entry.waiters) waiter(position);
  }

  /** Calls `then` once every topic in `topics` is routed: at once when none has a report pending. */
  whenRouted(topics: Iterable<string>, then: () => void): void {
    let waiting = 1; // released after the loop, so `then` runs once, after every topic was looked at
    const done = () => {
      if (--waiting === 0) then();
    };
    for (const topic of topics) {
      const entry = this.pending.get(topic);
      if (entry !== undefined) {
        waiting++;
        entry.waiters.push(done);
      }
    }
    done();
  }

  /**
   * Calls `then` with each topic's position at a MARK read after this call (topics must be acquired):
   * a pending report's MARK serves, otherwise main is asked for one.
   */
  positions(topics: readonly string[], then: (positions: Map<string, Position>) => void): void {
    const positions = new Map<string, Position>();
    let waiting = 1;
    const done = () => {
      if (--waiting === 0) then(positions);
    };
    for (const topic of topics) {
      let entry = this.pending.get(topic);
      if (entry === undefined) {
        entry = { seq: ++this.seq, waiters: [] };
        this.pending.set(topic, entry);
        this.post({ type: 'mark-request', topic, seq: entry.seq });
      }
      waiting++;
      entry.waiters.push((position) => {
        positions.set(topic, position);
        done();
      });
    }
    done();
  }
}
