/**
 * Main thread hot path: one frame from the MPC in (zmq/gateway-link.ts), one copy of the message into
 * the ring of every worker routed for its topic. The MPC validated the message and names its topic in
 * the frame, so nothing is parsed here. Never blocks: a full ring drops the message for that worker
 * only (and owes it a gap).
 *
 * Continuity: each route tracks its stream's last offset. A message that skips offsets (ZeroMQ dropped
 * some past a high-water mark, or the link was down) is held back with everything after it while the
 * missing ones are fetched from the MPC's history and delivered first; when they cannot be had, the
 * workers get a GAP record for the topic instead (their tormq.v2 clients get `gap`). A new epoch (the
 * MPC restarted or forgot the stream) is a gap too.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../log.js';
import { forEachInBatch, LinkKind, parseReply, parseStreamFrame, type PositionsReplyHeader, type StreamFrameView } from '../../zmq/gateway-link.js';
import { RecordKind, type RecordSource } from '../shared/ring.js';
import type { HistoryClient, HistoryResult } from './history-client.js';
import type { RingSlot } from './ring-slot.js';
import type { Repair, Routing, TopicRoute } from './routing.js';

/** Why a frame from the MPC was not fanned out (label values of tormq_publish_drops_total). */
export const PUBLISH_DROP_REASONS = [
  'bad_frames', // not a frame of the tormq link
  'oversized', // body over maxMessageBytes
  'unrouted', // no worker wants the topic (it was just unsubscribed)
  'duplicate', // an offset already forwarded (a repair and the live stream overlapping)
] as const;
export type PublishDropReason = (typeof PUBLISH_DROP_REASONS)[number];

/** Frames and bytes one repair may hold back before it gives up (and the workers get a gap). */
const MAX_HELD_FRAMES = 10_000;
const MAX_HELD_BYTES = 64 * 1024 * 1024;
/** A repair waiting for ring room tries again this often, and gives up after this long without progress. */
const REPAIR_PACE_MS = 2;
/**
 * How long a repair waits for room in a worker's ring before it goes on without that worker (whose
 * copies then drop, counted, with a gap owed to its tormq.v2 clients): one stalled worker must not
 * hold a stream back for the others. It used to give the whole repair up after 5 s, delaying every
 * worker's messages of the topic meanwhile.
 */
const REPAIR_PATIENCE_MS = 1000;
const EMPTY = Buffer.alloc(0);

export interface FanOutLimits {
  readonly maxMessageBytes: number;
}

export class FanOut {
  /** Stream messages received from the MPC, valid or not. */
  messagesIn = 0;
  readonly drops = Object.fromEntries(PUBLISH_DROP_REASONS.map((r) => [r, 0])) as Record<PublishDropReason, number>;
  /** Upstream gaps seen (offsets skipped, epochs changed). */
  upstreamGaps = 0;
  /** Gaps repaired from history, and gaps the workers were told about instead. */
  repairedGaps = 0;
  unrepairedGaps = 0;
  /** Messages delivered from history by repairs. */
  repairedMessages = 0;
  private readonly view: StreamFrameView = { kind: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, offset: 0, bodyStart: 0 };
  private readonly record: RecordSource = {
    kind: RecordKind.MESSAGE, topicSource: EMPTY, epochSource: EMPTY, bodySource: EMPTY,
    topicStart: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, bodyStart: 0, bodyEnd: 0, offset: 0, seq: 0, receivedAt: 0,
  };
  private readonly timeOrigin = performance.timeOrigin;
  /** Where the MPC's answers to position checks go (position-check.ts). */
  positionReplies: ((header: PositionsReplyHeader) => void) | null = null;
  /** An MPC linked up (`ready`) or asked for a presence snapshot (`presence-resync`): presence.ts. */
  presenceResync: (() => void) | null = null;
  /** MPCs linked now (each answers every positions request and confirms every subscription). */
  linkedMpcs: () => number = () => 1;

  constructor(
    private readonly limits: FanOutLimits,
    private readonly routing: Routing,
    private readonly history: HistoryClient,
    private readonly confirmed: (topic: string) => void,
    private readonly log: Logger,
  ) {}

  private batchFrame: Buffer = EMPTY;
  /**
   * Between `ingest` and `flushNotifies`: rings whose parked worker must be woken. One wake-up per
   * worker per read of the MPC socket, not one per message: each wake-up is a thread switch.
   */
  private deferNotify = false;
  private readonly toNotify: RingSlot[] = [];
  private readonly eachInBatch = (start: number, end: number): void => {
    const frame = this.batchFrame.subarray(start, end);
    // A batch holds stream messages only.
    if (parseStreamFrame(frame, this.view) && this.view.kind === LinkKind.MESSAGE) this.dispatch(frame, true);
    else this.drops.bad_frames++;
  };

  /**
   * One frame from an MPC: a stream message, a batch of them, a confirmation or a reply. The workers
   * it wrote to are woken by `flushNotifies`, which the caller runs once the socket has run dry.
   */
  ingest(frame: Buffer): void {
    this.deferNotify = true;
    const view = this.view;
    const parsed = parseStreamFrame(frame, view);
    if (parsed && view.kind === LinkKind.BATCH) {
      this.batchFrame = frame;
      if (!forEachInBatch(frame, view, this.eachInBatch)) this.drops.bad_frames++;
      this.batchFrame = EMPTY;
      return;
    }
    this.dispatch(frame, parsed);
  }

  /** Wakes the workers that `ingest` wrote to since the last call (if they are parked). */
  flushNotifies(): void {
    this.deferNotify = false;
    const slots = this.toNotify;
    for (let i = 0; i < slots.length; i++) slots[i]!.ring.notify();
    slots.length = 0;
  }

  /** A single message frame again (one held back during a repair). */
  private ingestMessage(frame: Buffer): void {
    this.dispatch(frame, parseStreamFrame(frame, this.view));
  }

  /** One frame that is not a batch, already parsed into `view` when `parsed`. */
  private dispatch(frame: Buffer, parsed: boolean): void {
    const view = this.view;
    if (!parsed) {
      const reply = frame[0] === 0 ? parseReply(frame) : null;
      if (reply === null) this.drops.bad_frames++;
      else if (reply.header.type === 'positions') this.positionReplies?.(reply.header);
      else if (reply.header.type === 'ready' || reply.header.type === 'presence-resync') this.presenceResync?.();
      else this.history.reply(reply.header, reply.parts);
      return;
    }
    const topic = frame.toString('utf8', 0, view.topicEnd);
    if (view.kind === LinkKind.SUBTREE) {
      // `root:` confirmed: every topic below the root reaches this gateway from here on.
      this.confirmed(topic);
      this.routing.confirmed(topic.slice(0, -1), 'subtree');
      return;
    }
    const route = this.routing.routeOf(topic);
    if (view.kind === LinkKind.POSITION) {
      // A root confirmed exactly, with its stream's position.
      this.confirmed(topic);
      if (route !== undefined) this.position(route, frame, view);
      this.routing.confirmed(topic, 'exact');
      return;
    }
    this.messagesIn++;
    if (route === undefined) return this.drop('unrouted');
    if (frame.length - view.bodyStart > this.limits.maxMessageBytes) return this.drop('oversized');
    if (route.repair !== null) return this.hold(route, route.repair, frame);
    if (route.epoch === null) {
      // The first of the stream seen here (before the subscription's position): the baseline.
      route.epoch = Buffer.from(frame.subarray(view.epochStart, view.epochEnd));
    } else if (!sameBytes(route.epoch, frame, view.epochStart, view.epochEnd)) {
      this.epochChanged(route, Buffer.from(frame.subarray(view.epochStart, view.epochEnd)), view.offset - 1);
      if (route.repair !== null) return this.hold(route, route.repair, frame);
    } else if (view.offset !== route.offset + 1) {
      if (view.offset <= route.offset) return this.drop('duplicate');
      this.upstreamGaps++;
      this.startRepair(route, view.offset - 1);
      return this.hold(route, route.repair!, frame);
    }
    route.offset = view.offset;
    this.deliver(route, frame, view.topicEnd, frame, view.epochStart, view.epochEnd, frame, view.bodyStart, frame.length, view.offset);
  }

  /** The MPC's position for a subscribed root's own stream: its baseline, or a continuity check. */
  private position(route: TopicRoute, frame: Buffer, view: StreamFrameView): void {
    if (view.bodyStart < frame.length) {
      this.unheldPosition(route, frame.toString('latin1', view.epochStart, view.epochEnd), view.offset);
      return;
    }
    route.baseline = true;
    route.unheld = null;
    if (route.epoch === null) {
      route.epoch = Buffer.from(frame.subarray(view.epochStart, view.epochEnd));
      route.offset = view.offset;
    } else if (!sameBytes(route.epoch, frame, view.epochStart, view.epochEnd)) {
      this.epochChanged(route, Buffer.from(frame.subarray(view.epochStart, view.epochEnd)), view.offset);
    } else if (route.repair !== null) {
      if (view.offset > route.repair.until) route.repair.until = view.offset;
    } else if (view.offset > route.offset) {
      // Messages up to the position were sent while this gateway was subscribed and never arrived.
      this.upstreamGaps++;
      this.startRepair(route, view.offset);
    }
    this.routing.settle(route);
  }

  /**
   * The MPC says `route`'s stream is at (epoch, top) as of now, in the order of the messages: more than
   * arrived means messages were lost on the way (repaired like any gap); another epoch, a new stream.
   */
  checkPosition(route: TopicRoute, epoch: string, top: number): void {
    if (!route.baseline || route.epoch === null || route.repair !== null || epoch === '') return;
    if (route.epoch.toString('latin1') !== epoch) {
      this.epochChanged(route, Buffer.from(epoch, 'latin1'), top);
    } else if (top > route.offset) {
      this.upstreamGaps++;
      this.startRepair(route, top);
    }
  }

  /**
   * Where a newly routed stream stands (the answer to its positions request, in the order of the
   * messages): messages already seen since routing began are checked against it, and marks can go.
   */
  baseline(route: TopicRoute, epoch: string, top: number, held = true): void {
    if (!held) return this.unheldPosition(route, epoch, top);
    if (route.baseline) {
      this.checkPosition(route, epoch, top);
      return;
    }
    route.baseline = true;
    route.unheld = null;
    const bytes = Buffer.from(epoch, 'latin1');
    if (route.epoch === null) {
      route.epoch = bytes;
      route.offset = top;
    } else if (!route.epoch.equals(bytes)) {
      this.epochChanged(route, bytes, top);
    } else if (top > route.offset && route.repair === null) {
      this.upstreamGaps++;
      this.startRepair(route, top);
    }
    this.routing.settle(route);
  }

  /**
   * A position from an MPC that holds no stream of the topic: its fresh epoch at 0, what it answers
   * for any topic nobody published there. With one MPC that is where the stream stands. With several,
   * the topic is published through one of them and the others' answers say nothing about its stream:
   * taken as the baseline, they made a subscription's ack carry the wrong epoch and its client a gap
   * notice as soon as the holder's position or messages arrived (test/e2e/recovery, two MPCs). So
   * before the baseline such answers are set aside until the holder answers (baseline, position) or
   * every linked MPC has answered without a stream (the topic was never published) or the request has
   * waited its retry time: then adoptUnheld. After the baseline they are ignored.
   */
  private unheldPosition(route: TopicRoute, epoch: string, top: number): void {
    const linked = this.linkedMpcs();
    if (linked > 1) {
      if (route.baseline) return;
      // One answer per MPC: each has its own fresh epoch, and one MPC may answer twice (a root's
      // confirmation and its baseline request), which must not pass for the other MPC's answer.
      route.unheld ??= [];
      if (!route.unheld.some(([answered]) => answered === epoch)) route.unheld.push([epoch, top]);
      if (route.unheld.length < linked) return;
      this.adoptUnheld(route);
      return;
    }
    if (route.baseline) this.checkPosition(route, epoch, top);
    else this.baseline(route, epoch, top);
  }

  /**
   * The MPCs' answers without a stream set aside for `route` stand as its baseline (every MPC has
   * answered so, or one has not answered in time: position-check.ts): the one whose epoch matches
   * messages seen meanwhile, else the first.
   */
  adoptUnheld(route: TopicRoute): void {
    if (route.baseline || route.unheld === null || route.unheld.length === 0) return;
    const seen = route.epoch?.toString('latin1');
    const [epoch, top] = route.unheld.find(([answered]) => answered === seen) ?? route.unheld[0]!;
    const others = route.unheld.filter(([answered]) => answered !== epoch).map(([answered]) => answered);
    this.baseline(route, epoch, top);
    if (route.offset === 0 && others.length > 0) route.otherFreshEpochs = others;
  }

  /**
   * `route`'s stream is in another `epoch` now, with messages up to `top` in it (a message's, a
   * position's, a check's): the one place an epoch changes. Continuity across epochs cannot be vouched
   * for, so the stream starts again at `top` for everyone routed, with a gap — unless it began
   * elsewhere (beganElsewhere): then nothing was missed, and offsets below `top` are repaired.
   */
  private epochChanged(route: TopicRoute, epoch: Buffer, top: number): void {
    if (this.beganElsewhere(route, epoch)) {
      if (top > 0) {
        this.upstreamGaps++;
        this.startRepair(route, top);
      }
      return;
    }
    this.upstreamGaps++;
    this.unrepairedGaps++;
    for (const slot of route.slots) slot.gap(route.topic);
    route.epoch = epoch;
    route.offset = top;
  }

  /**
   * True when `route`'s baseline was adopted from MPCs' answers without a stream, nothing has passed
   * since, and `epoch` is another of those MPCs' fresh epochs: the topic's first stream began on that
   * MPC after the baseline (an MPC starts a stream in its fresh epoch, and renews that epoch when it
   * forgets one), so nothing was missed. Before, the first message of a topic nobody had published
   * brought a gap notice whenever it came through another MPC than the one whose answer the ack
   * carried. The route moves to offset 0 of it.
   */
  private beganElsewhere(route: TopicRoute, epoch: Buffer): boolean {
    const fresh = route.otherFreshEpochs;
    if (fresh === null) return false;
    route.otherFreshEpochs = null;
    if (route.offset !== 0 || route.repair !== null || !fresh.includes(epoch.toString('latin1'))) return false;
    route.epoch = epoch;
    return true;
  }

  private startRepair(route: TopicRoute, until: number): void {
    const repair: Repair = { until, held: [], heldBytes: 0 };
    route.repair = repair;
    this.repairPage(route, repair);
  }

  /** Asks for the next page of what is missing; the pages go into the rings paced by their room. */
  private repairPage(route: TopicRoute, repair: Repair): void {
    const epoch = route.epoch!.toString('latin1');
    void this.history.page(route.topic, epoch, route.offset, repair.until - route.offset).then((page) => {
      if (route.repair !== repair) return; // given up (held too much), or the route is gone
      if (page.status !== 'ok' || page.from !== route.offset + 1) this.repairFailed(route, repair, page.status);
      else this.repairDeliver(route, repair, page, 0, Date.now());
    });
  }

  /**
   * Delivers a page of history into the rings, never past half a ring: a repair is not worth ring
   * drops (live traffic needs the other half), so it waits for the workers to read instead — for
   * REPAIR_PATIENCE_MS at most; then it goes on, and a worker still without room drops its copies.
   */
  private repairDeliver(route: TopicRoute, repair: Repair, page: HistoryResult, start: number, lastProgress: number): void {
    if (route.repair !== repair) return;
    const topic = Buffer.from(route.topic, 'utf8');
    const epoch = route.epoch!;
    let i = start;
    for (; i < page.bodies.length && route.offset < repair.until; i++) {
      const body = page.bodies[i]!;
      if (!this.roomFor(route, body.length + topic.length + 64) && Date.now() - lastProgress <= REPAIR_PATIENCE_MS) {
        const next = i;
        setTimeout(() => this.repairDeliver(route, repair, page, next, next > start ? Date.now() : lastProgress), REPAIR_PACE_MS).unref();
        return;
      }
      route.offset = page.from + i;
      this.repairedMessages++;
      this.deliver(route, topic, topic.length, epoch, 0, epoch.length, body, 0, body.length, route.offset);
    }
    if (route.offset >= repair.until) {
      this.repairedGaps++;
      this.endRepair(route, repair);
    } else if (page.more && page.bodies.length > 0) {
      this.repairPage(route, repair);
    } else {
      this.repairFailed(route, repair, 'incomplete');
    }
  }

  private roomFor(route: TopicRoute, bytes: number): boolean {
    for (const slot of route.slots) if (slot.ring.used() + bytes > slot.ring.capacity >>> 1) return false;
    return true;
  }

  private repairFailed(route: TopicRoute, repair: Repair, status: string): void {
    this.unrepairedGaps++;
    this.log.warn({ topic: route.topic, status, missing: repair.until - route.offset }, 'upstream gap not repaired; tormq.v2 clients get a gap');
    for (const slot of route.slots) slot.gap(route.topic);
    route.offset = repair.until;
    this.endRepair(route, repair);
  }

  private hold(route: TopicRoute, repair: Repair, frame: Buffer): void {
    if (repair.held.length >= MAX_HELD_FRAMES || repair.heldBytes + frame.length > MAX_HELD_BYTES) {
      // Too much to hold while waiting: give the repair up; the workers are told of the gap.
      this.unrepairedGaps++;
      for (const slot of route.slots) slot.gap(route.topic);
      route.offset = repair.until;
      this.endRepair(route, repair);
      this.messagesIn--; // counted when it arrived
      this.ingestMessage(frame);
      return;
    }
    // A copy: the frame is a view of a batch or of a read buffer, which it would keep in memory.
    repair.held.push(Buffer.from(frame));
    repair.heldBytes += frame.length;
  }

  /** Ends a repair: what was held goes through the continuity check again, in order. */
  private endRepair(route: TopicRoute, repair: Repair): void {
    route.repair = null;
    const held = repair.held;
    for (let i = 0; i < held.length; i++) {
      this.messagesIn--; // counted when it first arrived
      this.ingestMessage(held[i]!);
      if (route.repair !== null && route.repair !== repair) {
        // A new gap among the held frames: the rest wait for that repair in turn.
        for (let j = i + 1; j < held.length; j++) this.hold(route, route.repair, held[j]!);
        break;
      }
    }
    if (route.repair === null) this.routing.settle(route);
  }

  /** Copies one message into the ring of every worker routed for it. */
  private deliver(route: TopicRoute, topicSource: Buffer, topicEnd: number, epochSource: Buffer, epochStart: number, epochEnd: number,
    bodySource: Buffer, bodyStart: number, bodyEnd: number, offset: number): void {
    const r = this.record;
    r.topicSource = topicSource;
    r.topicEnd = topicEnd;
    r.epochSource = epochSource;
    r.epochStart = epochStart;
    r.epochEnd = epochEnd;
    r.bodySource = bodySource;
    r.bodyStart = bodyStart;
    r.bodyEnd = bodyEnd;
    r.offset = offset;
    r.receivedAt = this.timeOrigin + performance.now();
    const slots = route.slots;
    if (slots.length === 0) this.drops.unrouted++; // a lingering route: tracked, delivered to no one
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      slot.message(r, route.topic);
      if (!this.deferNotify) slot.ring.notify();
      else if (slot.ring.needsNotify && !this.toNotify.includes(slot)) this.toNotify.push(slot);
    }
  }

  private drop(reason: PublishDropReason): void {
    this.drops[reason]++;
  }
}

/** `a` equals `b[start, end)`. */
function sameBytes(a: Buffer, b: Buffer, start: number, end: number): boolean {
  if (a.length !== end - start) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[start + i]) return false;
  return true;
}
