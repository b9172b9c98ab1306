/**
 * Which worker rings each topic is copied into: the one owner of topic -> worker routing on the main
 * thread. A worker reports every topic its trie holds a node for (each subscription and its
 * ancestors: the topics whose messages its subscribers receive); the first worker to want a topic
 * subscribes it upstream, the last to leave releases it. A released route lingers until its upstream
 * subscription actually ends (a moment later, see upstream.ts), still confirmed and still tracking its
 * stream, so a topic that comes back meanwhile is routed at once. Each route also tracks its stream's position
 * (the last offset forwarded) for gap detection (fan-out.ts), and answers the workers' reports and
 * requests with a MARK record in their ring once the MPC has confirmed the subscription: an ack means
 * "everything of this stream after this position reaches you".
 */
import type { RingSlot } from './ring-slot.js';

/** Where a topic must be subscribed or released (the gateway's ZeroMQ link). */
export interface UpstreamSubscriptions {
  want(topic: string): void;
  release(topic: string): void;
}

/** A gap repair in progress: frames of the stream held back until the missing ones are delivered. */
export interface Repair {
  /** The repair delivers up to this offset. */
  until: number;
  readonly held: Buffer[];
  heldBytes: number;
}

export class TopicRoute {
  readonly slots: RingSlot[] = [];
  /** The MPC confirmed the subscription (a position arrived). */
  confirmed = false;
  /** The stream's epoch as last seen (bytes of the frame), or null before the first message or position. */
  epoch: Buffer | null = null;
  /** The last offset forwarded to the rings. */
  offset = 0;
  repair: Repair | null = null;
  /** Marks owed once the route is confirmed and not repairing. */
  readonly pendingMarks: Array<{ slot: RingSlot; seq: number }> = [];

  constructor(readonly topic: string) {}

  /** Marks can be written now: confirmed upstream and the stream is continuous. */
  get settled(): boolean {
    return this.confirmed && this.repair === null;
  }
}

const NO_EPOCH = Buffer.alloc(0);
/** The offset of a MARK answering for a topic no longer routed to that worker. */
const NOT_ROUTED = -1;

export class Routing {
  /** Routes, lingering ones (no slot, upstream subscription not yet ended) included. */
  private readonly routes = new Map<string, TopicRoute>();
  /** Routes with at least one slot. */
  private routed = 0;
  private readonly bySlot = new Map<RingSlot, Set<string>>();

  constructor(private readonly upstream: UpstreamSubscriptions) {}

  /** A worker's trie holds `topic` now (its report numbered `seq`): route it, and mark it when settled. */
  add(topic: string, slot: RingSlot, seq: number): void {
    let route = this.routes.get(topic);
    if (route === undefined) {
      route = new TopicRoute(topic);
      this.routes.set(topic, route);
    }
    if (route.slots.length === 0) {
      this.routed++;
      this.upstream.want(topic); // a new subscription, or one not yet ended (lingering)
    }
    if (!route.slots.includes(slot)) route.slots.push(slot);
    let topics = this.bySlot.get(slot);
    if (topics === undefined) this.bySlot.set(slot, (topics = new Set()));
    topics.add(topic);
    this.mark(topic, slot, seq);
  }

  /** A worker asks where `topic`'s stream is for it now (request `seq`): a MARK in its ring says. */
  mark(topic: string, slot: RingSlot, seq: number): void {
    const route = this.routes.get(topic);
    // Released meanwhile: answered all the same, so nothing in the worker waits forever.
    if (route === undefined || !route.slots.includes(slot)) slot.mark(topic, NO_EPOCH, NOT_ROUTED, seq);
    else if (route.settled) slot.mark(topic, route.epoch ?? NO_EPOCH, route.offset, seq);
    else route.pendingMarks.push({ slot, seq });
  }

  /** Writes the marks a route owed, once it is settled (confirmed, no repair in progress). */
  settle(route: TopicRoute): void {
    if (!route.settled || route.pendingMarks.length === 0) return;
    for (const { slot, seq } of route.pendingMarks.splice(0)) {
      if (route.slots.includes(slot)) slot.mark(route.topic, route.epoch ?? NO_EPOCH, route.offset, seq);
    }
  }

  /** Stops routing `topic` to `slot` (a worker's `interest-removed`). */
  remove(topic: string, slot: RingSlot): void {
    this.bySlot.get(slot)?.delete(topic);
    const route = this.routes.get(topic);
    if (route === undefined) return;
    const i = route.slots.indexOf(slot);
    if (i === -1) return;
    route.slots.splice(i, 1);
    for (let m = route.pendingMarks.length - 1; m >= 0; m--) {
      const pending = route.pendingMarks[m]!;
      if (pending.slot !== slot) continue;
      route.pendingMarks.splice(m, 1);
      slot.mark(topic, NO_EPOCH, NOT_ROUTED, pending.seq);
    }
    if (route.slots.length > 0) return;
    this.routed--;
    this.upstream.release(topic);
  }

  /** The upstream subscription of `topic` ended: a route still unwanted goes. */
  forget(topic: string): void {
    const route = this.routes.get(topic);
    if (route !== undefined && route.slots.length === 0) this.routes.delete(topic);
  }

  /** A worker died: none of its topics are routed to it any more. */
  removeSlot(slot: RingSlot): void {
    for (const topic of [...(this.bySlot.get(slot) ?? [])]) this.remove(topic, slot);
    this.bySlot.delete(slot);
    slot.reset(); // the thread is gone: the marks just owed to it go with it
  }

  /** Hot path: the route of a topic (maybe lingering, with no slot), or undefined when there is none. */
  routeOf(topic: string): TopicRoute | undefined {
    return this.routes.get(topic);
  }

  /** Topics routed to at least one worker. */
  topics(): string[] {
    return [...this.routes.values()].filter((r) => r.slots.length > 0).map((r) => r.topic);
  }

  /** Number of topics routed to at least one worker. */
  get size(): number {
    return this.routed;
  }

  /** Topics routed to `slot`. */
  topicsOf(slot: RingSlot): string[] {
    return [...(this.bySlot.get(slot) ?? [])];
  }
}
