/**
 * Which worker rings each topic is copied into: the one owner of topic -> worker routing on the main
 * thread. A worker reports every topic its trie holds a node for (each subscription and its ancestors:
 * the topics whose messages its subscribers receive), and main copies a message only into the rings of
 * workers holding its topic.
 *
 * Upstream, a gateway subscribes per root (DESIGN.md): the root exactly and every topic below it, two
 * ZeroMQ keys however many topics its clients hold there (upstream.ts). The first route under a root
 * subscribes it, the last releases it. The MPC confirms both keys; then each route learns where its
 * stream stands (its baseline, from a positions request, position-check.ts; the root's own from the
 * confirmation), and tracks the last offset forwarded for gap detection (fan-out.ts). A worker's report
 * or request is answered with a MARK record in its ring once the route is settled (confirmed, baseline
 * known, no repair in progress): an ack means "everything of this stream after this position reaches you".
 */
import { rootOf } from '../../protocol/topic.js';
import type { RingSlot } from './ring-slot.js';

/** Where a root must be subscribed or released (the gateway's ZeroMQ link). */
export interface UpstreamSubscriptions {
  want(root: string): void;
  release(root: string): void;
}

/** A gap repair in progress: frames of the stream held back until the missing ones are delivered. */
export interface Repair {
  /** The repair delivers up to this offset. */
  until: number;
  readonly held: Buffer[];
  heldBytes: number;
}

/** A root subscribed upstream: its two keys' confirmations and the routes below it. */
export class RootState {
  /** The MPC confirmed `root` exactly (a position) and `root:` (a subtree confirmation). */
  exact = false;
  subtree = false;
  /** Routes below it (the root's own included) with at least one worker. */
  routed = 0;
  readonly routes = new Set<TopicRoute>();

  constructor(readonly root: string) {}

  get confirmed(): boolean {
    return this.exact && this.subtree;
  }
}

export class TopicRoute {
  readonly slots: RingSlot[] = [];
  /** Where the stream stood when routing began is known (a position for it arrived). */
  baseline = false;
  /** The stream's epoch as last seen (bytes), or null before anything about it arrived. */
  epoch: Buffer | null = null;
  /** The last offset forwarded to the rings. */
  offset = 0;
  repair: Repair | null = null;
  /**
   * Positions from MPCs that hold no stream of the topic, set aside before the baseline while the MPC
   * that holds it may still answer (several MPCs: fan-out.ts, unheldPosition).
   */
  unheld: Array<readonly [epoch: string, top: number]> | null = null;
  /**
   * A baseline adopted from such answers (a topic nobody had published): the other MPCs' fresh epochs.
   * While nothing has passed (offset 0), a stream starting in one of them began on that MPC after the
   * baseline, so nothing was missed (fan-out.ts, beganElsewhere).
   */
  otherFreshEpochs: string[] | null = null;
  /** Marks owed once the route is settled. */
  readonly pendingMarks: Array<{ slot: RingSlot; seq: number }> = [];

  constructor(
    readonly topic: string,
    readonly root: RootState,
  ) {}

  /** Marks can be written now: confirmed upstream, position known, and the stream continuous. */
  get settled(): boolean {
    return this.root.confirmed && this.baseline && this.repair === null;
  }
}

const NO_EPOCH = Buffer.alloc(0);
/** The offset of a MARK answering for a topic no longer routed to that worker. */
const NOT_ROUTED = -1;

export class Routing {
  private readonly routes = new Map<string, TopicRoute>();
  private readonly roots = new Map<string, RootState>();
  private readonly bySlot = new Map<RingSlot, Set<string>>();
  /** Where routes that need their stream's position ask for it (position-check.ts). */
  requestBaseline: (topic: string) => void = () => {};
  /** Told the number of topics routed whenever it changes (the workers check --max-topics against it). */
  sizeChanged: (size: number) => void = () => {};

  constructor(private readonly upstream: UpstreamSubscriptions) {}

  /** A worker's trie holds `topic` now (its report numbered `seq`): route it, and mark it when settled. */
  add(topic: string, slot: RingSlot, seq: number): void {
    let route = this.routes.get(topic);
    if (route === undefined) {
      const rootName = rootOf(topic);
      let root = this.roots.get(rootName);
      if (root === undefined) this.roots.set(rootName, (root = new RootState(rootName)));
      route = new TopicRoute(topic, root);
      this.routes.set(topic, route);
      this.sizeChanged(this.routes.size);
      root.routes.add(route);
      if (root.routed++ === 0) this.upstream.want(rootName);
      if (root.confirmed) this.requestBaseline(topic);
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

  /** Writes the marks a route owed, once it is settled. */
  settle(route: TopicRoute): void {
    if (!route.settled || route.pendingMarks.length === 0) return;
    for (const { slot, seq } of route.pendingMarks.splice(0)) {
      if (route.slots.includes(slot)) slot.mark(route.topic, route.epoch ?? NO_EPOCH, route.offset, seq);
    }
  }

  /** The MPC confirmed one of a root's keys; once both are, the routes below it learn their positions. */
  confirmed(rootName: string, key: 'exact' | 'subtree'): void {
    const root = this.roots.get(rootName);
    if (root === undefined) return;
    const was = root.confirmed;
    root[key] = true;
    if (was || !root.confirmed) return;
    for (const route of root.routes) {
      // The root's own position came with its confirmation; every other route asks for its own.
      if (!route.baseline) this.requestBaseline(route.topic);
      this.settle(route);
    }
  }

  /**
   * A link to an MPC came back, perhaps to a restarted one: every root waits for its confirmations
   * again and every route for its baseline, so no mark (no ack) goes out with a position from before.
   * A stream whose epoch changed then reports a gap, one with messages missing starts a repair.
   */
  unconfirmAll(): void {
    for (const root of this.roots.values()) {
      root.exact = false;
      root.subtree = false;
      for (const route of root.routes) {
        route.baseline = false;
        route.unheld = null;
        route.otherFreshEpochs = null;
      }
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
    // No worker wants it: it goes (a later report asks for its position again). The root's upstream
    // subscription ends a moment after its last route (upstream.ts), then `forget`.
    route.repair = null;
    this.routes.delete(topic);
    this.sizeChanged(this.routes.size);
    const root = route.root;
    root.routes.delete(route);
    if (--root.routed === 0) this.upstream.release(root.root);
  }

  /** The upstream subscription of `root` ended: unless a route came back meanwhile, its state goes. */
  forget(rootName: string): void {
    const root = this.roots.get(rootName);
    if (root !== undefined && root.routed === 0) this.roots.delete(rootName);
  }

  /** A worker died: none of its topics are routed to it any more. */
  removeSlot(slot: RingSlot): void {
    for (const topic of [...(this.bySlot.get(slot) ?? [])]) this.remove(topic, slot);
    this.bySlot.delete(slot);
    slot.reset(); // the thread is gone: the marks just owed to it go with it
  }

  /** Hot path: the route of a topic, or undefined when no worker wants it. */
  routeOf(topic: string): TopicRoute | undefined {
    return this.routes.get(topic);
  }

  /** The state of a root subscribed upstream (or releasing), if any. */
  rootOf(root: string): RootState | undefined {
    return this.roots.get(root);
  }

  /** Topics routed to at least one worker. */
  topics(): string[] {
    return [...this.routes.keys()];
  }

  /** Number of topics routed. */
  get size(): number {
    return this.routes.size;
  }

  /** Roots subscribed upstream (routed, or released less than a moment ago). */
  get rootCount(): number {
    return this.roots.size;
  }

  /** Topics routed to `slot`. */
  topicsOf(slot: RingSlot): string[] {
    return [...(this.bySlot.get(slot) ?? [])];
  }
}
