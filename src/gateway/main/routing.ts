/**
 * Which worker rings each root is copied into: the one owner of root -> worker routing on the main
 * thread. Workers report the roots their tries hold (worker/root-routing.ts); the first worker to want
 * a root subscribes it upstream, the last to leave releases it. FanOut reads `slotsOf` per message.
 */
import type { RingWriter } from '../shared/ring.js';

/** The main thread's view of one worker's ring. */
export interface RingSlot {
  readonly index: number;
  readonly ring: RingWriter;
  /** The worker's counters (counters.ts); main writes its own entries (ring drops, restarts). */
  readonly stats: Float64Array;
}

/** Where a root must be subscribed or released (the gateway's ZeroMQ SUB). */
export interface UpstreamSubscriptions {
  want(root: string): void;
  release(root: string): void;
}

export class Routing {
  private readonly routes = new Map<string, RingSlot[]>();
  private readonly bySlot = new Map<RingSlot, Set<string>>();

  constructor(private readonly upstream: UpstreamSubscriptions) {}

  /** Routes `root` to `slot` from now on (a worker's `root-added`). */
  add(root: string, slot: RingSlot): void {
    const slots = this.routes.get(root);
    if (slots === undefined) {
      this.routes.set(root, [slot]);
      this.upstream.want(root);
    } else if (!slots.includes(slot)) {
      slots.push(slot);
    }
    let roots = this.bySlot.get(slot);
    if (roots === undefined) this.bySlot.set(slot, (roots = new Set()));
    roots.add(root);
  }

  /** Stops routing `root` to `slot` (a worker's `root-removed`). */
  remove(root: string, slot: RingSlot): void {
    this.bySlot.get(slot)?.delete(root);
    const slots = this.routes.get(root);
    if (slots === undefined) return;
    const i = slots.indexOf(slot);
    if (i !== -1) slots.splice(i, 1);
    if (slots.length > 0) return;
    this.routes.delete(root);
    this.upstream.release(root);
  }

  /** A worker died: none of its roots are routed to it any more. */
  removeSlot(slot: RingSlot): void {
    for (const root of [...(this.bySlot.get(slot) ?? [])]) this.remove(root, slot);
    this.bySlot.delete(slot);
  }

  /** Hot path: the rings a message on `root` is copied into, or undefined when none. */
  slotsOf(root: string): readonly RingSlot[] | undefined {
    return this.routes.get(root);
  }

  /** Roots routed anywhere. */
  roots(): string[] {
    return [...this.routes.keys()];
  }

  /** Roots routed to `slot`. */
  rootsOf(slot: RingSlot): string[] {
    return [...(this.bySlot.get(slot) ?? [])];
  }
}
