/**
 * Stream positions and history. Every topic is a stream; each message published on it gets the
 * stream's `(epoch, offset)`: offsets count 1, 2, 3, … and the epoch is a random string that changes
 * whenever the MPC cannot vouch for the stream's continuity (a new MPC process, or a stream it forgot).
 *
 * `StreamStore` is the one interface the MPC uses, so a replicated engine (Redis Streams, NATS
 * JetStream) can take the memory engine's place when the MPC must not be a single point of failure.
 *
 * The memory engine keeps, per stream, the last `historySize` messages for `historyTtlMs`, all streams
 * together bounded by `historyMaxBytes` (the least recently published streams lose their messages
 * first). A stream's epoch and top offset outlive its messages — a resume after eviction is answered
 * "not recovered", never silently restarted at offset 1 — up to `maxStreams` streams; past that the
 * least recently used stream is forgotten entirely (its next message starts a new epoch).
 *
 * Only published topics are held. A topic nobody has published on stands at offset 0 of the store's
 * fresh epoch, which is also the epoch its first message starts; the fresh epoch changes whenever a
 * stream is forgotten, since from then on the store cannot vouch that an unknown topic was never
 * published. So a subscription asks for a position without making the MPC hold anything: before, a
 * client churning subscriptions to made-up topics (1,500 a second, within the rate limits) made it
 * remember 62,000 streams in 20 s (+57 MB), and past `maxStreams` would have pushed out real streams'
 * positions, making their clients' recoveries fail.
 */
import { randomBytes } from 'node:crypto';
import { HistoryRing, RING_SLOT_BYTES } from './history-ring.js';

export interface StreamPosition {
  readonly epoch: string;
  readonly offset: number;
}

export type HistoryRead =
  | { status: 'ok'; epoch: string; top: number; from: number; bodies: Buffer[]; more: boolean }
  | { status: 'epoch' | 'evicted' | 'ahead'; epoch: string; top: number };

/** Where a stream stands, as the link announces it. */
export interface StreamView {
  readonly epoch: string;
  readonly epochBytes: Buffer;
  readonly topicBytes: Buffer;
  /** Offset of the last message (0: none yet). */
  readonly top: number;
}

export interface StreamStore {
  /** Stamps one message of `topic` and keeps a copy in history (`body` may be a view of a read buffer). Returns the stream (its `epochBytes`, `top`). */
  append(topic: string, body: Buffer, now: number): StreamState;
  /** Where `topic` stands: its stream, or offset 0 of the fresh epoch when it has none (nothing is created). */
  position(topic: string): StreamView;
  /** The stream of `topic` if it is held (a topic nobody published on is not). */
  peek(topic: string): StreamView | undefined;
  /** Up to `limit` messages (and about `maxBytes`) of `topic` after `after` in `epoch`. */
  read(topic: string, epoch: string, after: number, limit: number, maxBytes: number, now: number): HistoryRead;
  /** Drops messages older than the TTL (called periodically). */
  sweep(now: number): void;
  stats(): StreamStoreStats;
}

export interface StreamStoreStats {
  streams: number;
  /** Streams holding at least one message. */
  streamsWithHistory: number;
  messages: number;
  bytes: number;
  /** Messages dropped from history by the size, age or count limits. */
  evictedMessages: number;
  /** Bytes of the messages dropped from history, in all (see mpc/reclaim.ts). */
  evictedBytes: number;
  /** Streams forgotten entirely (past maxStreams). */
  forgottenStreams: number;
}

export interface MemoryStoreLimits {
  /** Messages kept per stream; 0 keeps none (positions are still assigned). */
  readonly historySize: number;
  readonly historyTtlMs: number;
  /** All streams' messages together, bytes (bodies plus a per-message overhead estimate). */
  readonly historyMaxBytes: number;
  /** Streams whose position is remembered. */
  readonly maxStreams: number;
}

/**
 * Bytes one held message is counted beyond its body: its bookkeeping in the stream's ring. The ring
 * itself keeps room free besides (history-ring.ts: at most 4× the live bytes plus one message).
 */
export const MESSAGE_OVERHEAD_BYTES = RING_SLOT_BYTES;

/** One stream: its position, its retained messages (a circular array) and its places in the LRU lists. */
export class StreamState implements StreamView {
  readonly topicBytes: Buffer;
  /** Offset of the last message. */
  top = 0;
  /**
   * Retained messages, oldest first: offsets [top - count + 1, top]. Null when none are held; a stream
   * with a ring is in the store's by-publish list.
   */
  history: HistoryRing | null = null;
  // Intrusive doubly linked lists: every stream by last use; streams with messages by last publish.
  prevUse: StreamState | null = null;
  nextUse: StreamState | null = null;
  prevHeld: StreamState | null = null;
  nextHeld: StreamState | null = null;

  constructor(
    readonly topic: string,
    readonly epoch: string,
    readonly epochBytes: Buffer,
  ) {
    this.topicBytes = Buffer.from(topic, 'utf8');
  }

  /** Messages held. */
  get count(): number {
    return this.history?.count ?? 0;
  }

  /** What they count toward `historyMaxBytes`: bodies plus MESSAGE_OVERHEAD_BYTES each. */
  get bytes(): number {
    return this.history === null ? 0 : this.history.liveBytes + this.history.count * MESSAGE_OVERHEAD_BYTES;
  }
}

/** A doubly linked list threaded through StreamState by one pair of fields. */
class Lru {
  head: StreamState | null = null;
  tail: StreamState | null = null;
  size = 0;

  constructor(private readonly held: boolean) {}

  private prev(s: StreamState) {
    return this.held ? s.prevHeld : s.prevUse;
  }
  private next(s: StreamState) {
    return this.held ? s.nextHeld : s.nextUse;
  }
  private link(s: StreamState, prev: StreamState | null, next: StreamState | null) {
    if (this.held) {
      s.prevHeld = prev;
      s.nextHeld = next;
    } else {
      s.prevUse = prev;
      s.nextUse = next;
    }
  }
  private setNext(s: StreamState, next: StreamState | null) {
    if (this.held) s.nextHeld = next;
    else s.nextUse = next;
  }
  private setPrev(s: StreamState, prev: StreamState | null) {
    if (this.held) s.prevHeld = prev;
    else s.prevUse = prev;
  }

  remove(s: StreamState): void {
    const prev = this.prev(s);
    const next = this.next(s);
    if (prev === null) this.head = next;
    else this.setNext(prev, next);
    if (next === null) this.tail = prev;
    else this.setPrev(next, prev);
    this.link(s, null, null);
    this.size--;
  }

  /** Appends `s` (most recent); it must not be in the list. */
  push(s: StreamState): void {
    this.link(s, this.tail, null);
    if (this.tail === null) this.head = s;
    else this.setNext(this.tail, s);
    this.tail = s;
    this.size++;
  }

  /** Moves a member to the most recent end. */
  touch(s: StreamState): void {
    if (this.tail === s) return;
    this.remove(s);
    this.push(s);
  }
}

export class MemoryStreamStore implements StreamStore {
  private readonly streams = new Map<string, StreamState>();
  private readonly byUse = new Lru(false);
  private readonly byPublish = new Lru(true);
  private messages = 0;
  private bytes = 0;
  private evictedMessages = 0;
  private evictedBytes = 0;
  private forgottenStreams = 0;
  /** The epoch of topics not held: new streams start in it; renewed when a stream is forgotten. */
  private fresh = newEpoch();

  constructor(private readonly limits: MemoryStoreLimits) {}

  /** Bytes dropped from history so far (cheap to read on the hot path; see mpc/reclaim.ts). */
  get evictedBytesSoFar(): number {
    return this.evictedBytes;
  }

  append(topic: string, body: Buffer, now: number): StreamState {
    const stream = this.streamOf(topic);
    const capacity = this.limits.historySize;
    if (capacity === 0) {
      stream.top++;
      return stream;
    }
    if (stream.history === null) {
      stream.history = new HistoryRing(capacity);
      this.byPublish.push(stream);
    } else {
      // Full: the oldest goes first.
      if (stream.count === capacity) this.dropOldest(stream);
      this.byPublish.touch(stream);
    }
    stream.top++;
    stream.history.push(body, now);
    this.bytes += body.length + MESSAGE_OVERHEAD_BYTES;
    this.messages++;
    // Over the memory budget: the least recently published streams lose their messages first.
    while (this.bytes > this.limits.historyMaxBytes) {
      const victim = this.byPublish.head!;
      if (victim !== stream) {
        this.clearMessages(victim);
        continue;
      }
      // Only this stream holds messages: its oldest go, but the newest stays until the next one.
      if (stream.count <= 1) break;
      this.dropOldest(stream);
    }
    return stream;
  }

  position(topic: string): StreamView {
    const stream = this.streams.get(topic);
    if (stream === undefined) return { epoch: this.fresh.epoch, epochBytes: this.fresh.bytes, topicBytes: Buffer.from(topic, 'utf8'), top: 0 };
    this.byUse.touch(stream);
    return stream;
  }

  peek(topic: string): StreamView | undefined {
    return this.streams.get(topic);
  }

  read(topic: string, epoch: string, after: number, limit: number, maxBytes: number, now: number): HistoryRead {
    const stream = this.streams.get(topic);
    if (stream === undefined) {
      // Nothing published: offset 0 of the fresh epoch, with nothing after it.
      if (epoch !== this.fresh.epoch) return { status: 'epoch', epoch: this.fresh.epoch, top: 0 };
      if (after > 0) return { status: 'ahead', epoch, top: 0 };
      return { status: 'ok', epoch, top: 0, from: 1, bodies: [], more: false };
    }
    if (stream.epoch !== epoch) return { status: 'epoch', epoch: stream.epoch, top: stream.top };
    if (after > stream.top) return { status: 'ahead', epoch: stream.epoch, top: stream.top };
    if (after === stream.top) return { status: 'ok', epoch: stream.epoch, top: stream.top, from: after + 1, bodies: [], more: false };
    this.expire(stream, now);
    const oldest = stream.top - stream.count + 1;
    if (stream.count === 0 || after + 1 < oldest) return { status: 'evicted', epoch: stream.epoch, top: stream.top };
    const history = stream.history!;
    const bodies: Buffer[] = [];
    let size = 0;
    let offset = after + 1;
    for (; offset <= stream.top && bodies.length < limit; offset++) {
      const length = history.length(offset - oldest);
      if (bodies.length > 0 && size + length > maxBytes) break;
      bodies.push(history.body(offset - oldest));
      size += length;
    }
    return { status: 'ok', epoch: stream.epoch, top: stream.top, from: after + 1, bodies, more: offset <= stream.top };
  }

  sweep(now: number): void {
    // Least recently published first; a stream published within the TTL ends the sweep (the ones after
    // it were published later still). Older messages of recent streams go on their next append/read.
    for (let stream = this.byPublish.head; stream !== null; ) {
      const next = stream.nextHeld;
      const newest = stream.history!.time(stream.count - 1);
      if (now - newest < this.limits.historyTtlMs) {
        this.expire(stream, now);
        break;
      }
      this.clearMessages(stream);
      stream = next;
    }
  }

  stats(): StreamStoreStats {
    return {
      streams: this.streams.size,
      streamsWithHistory: this.byPublish.size,
      messages: this.messages,
      bytes: this.bytes,
      evictedMessages: this.evictedMessages,
      evictedBytes: this.evictedBytes,
      forgottenStreams: this.forgottenStreams,
    };
  }

  private streamOf(topic: string): StreamState {
    let stream = this.streams.get(topic);
    if (stream !== undefined) {
      this.byUse.touch(stream);
      return stream;
    }
    stream = new StreamState(topic, this.fresh.epoch, this.fresh.bytes);
    this.streams.set(topic, stream);
    this.byUse.push(stream);
    while (this.streams.size > this.limits.maxStreams && this.byUse.head !== null && this.byUse.head !== stream) {
      this.forget(this.byUse.head);
    }
    return stream;
  }

  private forget(stream: StreamState): void {
    this.clearMessages(stream);
    this.byUse.remove(stream);
    this.streams.delete(stream.topic);
    this.forgottenStreams++;
    // Any unknown topic may now be this one: positions of topics not held must not read as continuous.
    this.fresh = newEpoch();
  }

  /** Drops the messages older than the TTL from the front of `stream`. */
  private expire(stream: StreamState, now: number): void {
    while (stream.count > 0) {
      if (now - stream.history!.time(0) < this.limits.historyTtlMs) return;
      this.dropOldest(stream);
    }
    if (stream.history !== null) {
      stream.history = null;
      this.byPublish.remove(stream);
    }
  }

  private dropOldest(stream: StreamState): void {
    const cost = stream.history!.dropOldest() + MESSAGE_OVERHEAD_BYTES;
    this.bytes -= cost;
    this.messages--;
    this.evictedMessages++;
    this.evictedBytes += cost;
  }

  private clearMessages(stream: StreamState): void {
    if (stream.history === null) return;
    const bytes = stream.bytes;
    const count = stream.count;
    this.evictedBytes += bytes;
    this.bytes -= bytes;
    this.messages -= count;
    this.evictedMessages += count;
    stream.history = null;
    this.byPublish.remove(stream);
  }
}

/** A random epoch, and its bytes as the link frames carry them. */
function newEpoch(): { readonly epoch: string; readonly bytes: Buffer } {
  const epoch = randomBytes(6).toString('base64url');
  return { epoch, bytes: Buffer.from(epoch, 'latin1') };
}
