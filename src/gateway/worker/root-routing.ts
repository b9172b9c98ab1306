/**
 * A worker's view of which roots the main thread routes to it. Roots are reported to main by
 * postMessage, which nothing orders against the messages main is already receiving from the MPC: until
 * main has processed the report, a message on that root is not copied into this worker's ring. So a
 * subscription is acknowledged (and an auto-subscribed connection opened) only once main has answered
 * `root-routed`: an ack means "messages published from now on reach you".
 *
 * Roots are reference-counted: the trie holds one reference per root it contains, and an upgrade may
 * pin a root before its connection exists (token auto-subscription).
 */
import type { WorkerEvent } from '../shared/thread-protocol.js';

export class RootRouting {
  private readonly refs = new Map<string, number>();
  /** Roots reported but not yet answered: the report's seq and who waits for it. */
  private readonly pending = new Map<string, { seq: number; waiters: Array<() => void> }>();
  private seq = 0;

  constructor(private readonly post: (event: WorkerEvent) => void) {}

  /** Takes a reference on `root`; the first one reports it to main. */
  acquire(root: string): void {
    const count = this.refs.get(root) ?? 0;
    this.refs.set(root, count + 1);
    if (count > 0) return;
    const seq = ++this.seq;
    const waiting = this.pending.get(root);
    // Re-added before the previous report was answered: the waiters now wait for this newer report.
    this.pending.set(root, { seq, waiters: waiting?.waiters ?? [] });
    this.post({ type: 'root-added', root, seq });
  }

  /** Drops a reference; the last one reports the root removed. */
  release(root: string): void {
    const count = this.refs.get(root) ?? 0;
    if (count > 1) {
      this.refs.set(root, count - 1);
      return;
    }
    this.refs.delete(root);
    this.post({ type: 'root-removed', root });
  }

  /** Main's answer to a `root-added`. A stale answer (for an earlier report) is ignored. */
  routed(root: string, seq: number): void {
    const entry = this.pending.get(root);
    if (entry === undefined || entry.seq !== seq) return;
    this.pending.delete(root);
    for (const waiter of entry.waiters) waiter();
  }

  /** Calls `then` once every root in `roots` is routed: at once when none is pending. */
  whenRouted(roots: Iterable<string>, then: () => void): void {
    let waiting = 1; // released after the loop, so `then` runs once, after every root was looked at
    const done = () => {
      if (--waiting === 0) then();
    };
    for (const root of roots) {
      const entry = this.pending.get(root);
      if (entry !== undefined) {
        waiting++;
        entry.waiters.push(done);
      }
    }
    done();
  }
}
