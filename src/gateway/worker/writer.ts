/**
 * One connection's outbound path (after centrifuge's writer.go): pre-framed pushes written straight to
 * the socket, control replies through ws, the slow-client policy, and closes that a client which
 * stops reading cannot hold open. The trie stores writers; the delivery loop tells each one which
 * messages of a batch are due to it (`due`), and the writer writes its share once per batch.
 *
 * Variants: a tormq.v2 connection gets each message with its stream position appended, a connection
 * that joined (gopusher) gets gopusher's frame (delivery.ts builds each variant once per message, never
 * per connection). While a tormq.v2 subscription
 * recovers, the writer holds that stream's live messages back (`hold`) and releases them after the
 * replay, without duplicates (`release`). A message it never got (slow-client drop, ring drop, an
 * upstream gap) is noted, and the connection is told with `{"event":"gap","topics":[…]}`.
 *
 * Memory per connection is bounded: before a batch is written, a connection with more than
 * `slowClientBytes` still unsent is closed with 4008 (policy close) or skipped for the whole batch
 * (policy drop), so it holds at most `slowClientBytes` plus one batch. Held messages, all streams
 * together, are bounded by `slowClientBytes` too, and a recovery's replay keeps at most
 * REPLAY_AHEAD_BYTES unsent: a client that takes less than that in `replayStallMs` is a slow client.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { Close } from '../../protocol/close-codes.js';
import { gapFrame } from '../../protocol/client-frames.js';
import { topicMatches } from '../../protocol/topic.js';
import type { SlowClientPolicy } from '../shared/config.js';
import { WorkerStat } from '../shared/counters.js';
import { ALL_TOPICS } from '../shared/ring.js';
import type { Reservation } from './replay-budget.js';
import type { TrieSubscriber } from './trie.js';

const OPEN = 1;
/** How long a client the gateway closes (slow client, expired token) has to finish the close handshake. */
const CLOSE_GRACE_MS = 5_000;
/**
 * Replay written ahead of what the kernel has taken. The kernel's own send buffer keeps the link busy
 * while the next piece is written; more ahead only sits in the gateway when the client stops reading
 * (ahead = --slow-client-bytes, 4 MiB, made each non-reading recovery hold ≈ 10 MB).
 */
const REPLAY_AHEAD_BYTES = 64 * 1024;

/** How a replay ended: written in full, connection closed first, or the client stopped reading. */
export const ReplayOutcome = { WRITTEN: 0, CLOSED: 1, STALLED: 2 } as const;
export type ReplayOutcome = (typeof ReplayOutcome)[keyof typeof ReplayOutcome];

/** The frame variants a connection can take (index into the batch's per-variant frames). */
export const Variant = {
  /** The published body, byte for byte (the original protocol). */
  BODY: 0,
  /** The body with `"epoch":"…","offset":N` appended (tormq.v2). */
  POSITIONED: 1,
  /** gopusher's `{"type":1,"data":<content>}` (a connection that joined; protocol/gopusher-frames.ts). */
  GOPUSHER: 2,
} as const;
export const VARIANTS = 3;

/** What a writer needs of the current delivery batch (owned by Delivery). */
export interface BatchView {
  readonly topics: readonly string[];
  readonly offsets: Float64Array;
  /** Set by writers during the walk: the variants some recipient needs. */
  readonly needed: boolean[];
  /** Frames [start, end) of a variant, back to back, as one buffer (a view, no copy). */
  chunk(variant: number, start: number, end: number): Buffer;
  /** The frame of message `i` in a variant. */
  frame(variant: number, i: number): Buffer;
  /** Messages written to sockets in this batch (the writer adds what it writes). */
  delivered: number;
}

export interface WriterLimits {
  readonly slowClientBytes: number;
  readonly slowClientPolicy: SlowClientPolicy;
  readonly replayStallMs: number;
}

/** Live messages of one stream held back while a subscription to it recovers. */
interface Hold {
  readonly offsets: number[];
  readonly frames: Buffer[];
  bytes: number;
  /** Messages were lost while held (too many, or a gap): the connection is told after the recovery. */
  gapped: boolean;
}

export class Writer implements TrieSubscriber {
  /** Trie scratch: the last message this writer was visited for (at-most-once delivery). */
  mark = 0;
  /** In the "drop" policy: currently over the limit, skipping messages. */
  dropping = false;
  /** Runs of the current batch due to this connection: [start, end) pairs, in order. */
  private readonly runs: number[] = [];
  /** Indices of the current batch's messages to hold, and their streams' holds. */
  private readonly heldIndices: number[] = [];
  private skipped = false;
  private inBatch = false;
  private readonly socket: Socket;
  /** Streams held back while a subscription recovers (null: none). */
  private holds: Map<string, Hold> | null = null;
  /** Bytes of all holds together. */
  private heldBytes = 0;
  /** Streams with messages this connection did not get, to tell it about (tormq.v2 only). */
  private gaps: Set<string> | null = null;

  constructor(
    readonly ws: WebSocket,
    /**
     * Variant.BODY, Variant.POSITIONED (tormq.v2) or Variant.GOPUSHER (from the connection's first
     * join on; changed only between batches, by the session).
     */
    public variant: number,
    private readonly limits: WriterLimits,
    private readonly stats: Float64Array,
    /** The connection's subscriptions (for gap notices: which of them a stream feeds). */
    private readonly subscriptions: ReadonlySet<string>,
  ) {
    // ws keeps the raw socket privately; pushes are pre-built frames written to it directly.
    this.socket = (ws as unknown as { _socket: Socket })._socket;
  }

  /**
   * Hot path: message `i` of the current batch is due to this connection. Returns true the first time
   * in a batch (the caller then calls `endBatch` once the batch has been walked). Consecutive messages
   * extend one run.
   */
  due(i: number, batch: BatchView): boolean {
    const first = !this.inBatch;
    if (first) {
      this.inBatch = true;
      // The first message of this batch for the connection: the one place its slowness is judged.
      this.skipped = !this.beginBatch();
    }
    if (this.skipped) {
      // The batch for a client over its limit: counted per message under policy drop.
      if (this.dropping) {
        this.stats[WorkerStat.slowClientDrops]++;
        this.noteGap(batch.topics[i]!);
      }
      return first;
    }
    if (this.holds !== null && this.holds.has(batch.topics[i]!)) {
      this.heldIndices.push(i);
      batch.needed[this.variant] = true;
      return first;
    }
    const runs = this.runs;
    const n = runs.length;
    if (n > 0 && runs[n - 1] === i) runs[n - 1] = i + 1;
    else runs.push(i, i + 1);
    batch.needed[this.variant] = true;
    return first;
  }

  /**
   * Writes the batch's share (one write for one run; several runs — this connection missed messages
   * in between, as in prefix fan-out — corked into one writev: measured A/B in one `npm run bench`
   * run, prefix fan-out to 1,000 connections at 1,000 msgs/s: 7.9 vs 8.5 µs gateway CPU per delivery
   * against one write syscall per run; broadcast unchanged), then any gap notice.
   */
  endBatch(batch: BatchView): void {
    this.inBatch = false;
    const runs = this.runs;
    if (runs.length > 0) {
      const corked = runs.length > 2;
      if (corked) this.socket.cork();
      for (let r = 0; r < runs.length; r += 2) {
        // Writing beside ws's own sender is safe: tormq sends ws only control replies and close frames,
        // never compressed or Blob data, so ws never holds a queue of its own that this could overtake.
        this.socket.write(batch.chunk(this.variant, runs[r]!, runs[r + 1]!));
        batch.delivered += runs[r + 1]! - runs[r]!;
      }
      if (corked) this.socket.uncork();
      runs.length = 0;
    }
    if (this.heldIndices.length > 0) {
      for (const i of this.heldIndices) this.keep(batch.topics[i]!, batch.offsets[i]!, batch.frame(this.variant, i));
      this.heldIndices.length = 0;
    }
    if (this.gaps !== null && !this.dropping) this.flushGaps();
  }

  /**
   * Judged once per batch, on what earlier batches left unsent: within a batch `writableLength` also
   * counts the batch's own writes, so a client reading at full speed would look slow whenever one
   * batch alone exceeds the limit. False when the connection is closing or over the limit (the policy
   * is applied and counted here).
   */
  private beginBatch(): boolean {
    if (this.ws.readyState !== OPEN) return false;
    if (this.socket.writableLength <= this.limits.slowClientBytes) {
      this.dropping = false;
      return true;
    }
    if (this.limits.slowClientPolicy === 'drop') {
      if (!this.dropping) {
        this.dropping = true;
        // Caught up without another message to deliver: the gap notice must not wait for one.
        this.socket.once('drain', this.drained);
      }
      return false;
    }
    this.stats[WorkerStat.slowClientDisconnects]++;
    this.closeThenCut(Close.SLOW_CLIENT);
    return false;
  }

  private readonly drained = (): void => {
    this.dropping = false;
    this.flushGaps();
  };

  /**
   * A recovery's replay, in order, paced by the socket: past REPLAY_AHEAD_BYTES unsent it waits for the
   * socket to drain. Written at once, a client that never read held everything it asked to recover in
   * the gateway (one subscribe of 256 streams of 100 × 1 KB messages: ≈ 76 MB of RSS per connection,
   * for as long as it stayed open). What is written leaves `reservation`.
   *
   * A client that takes nothing for `replayStallMs` is slow: under policy close it is closed with 4008
   * (CLOSED); under policy drop the replay stops there, the rest counted as drops (STALLED).
   */
  async replay(frames: readonly Buffer[], reservation: Reservation): Promise<ReplayOutcome> {
    const ahead = Math.min(REPLAY_AHEAD_BYTES, this.limits.slowClientBytes);
    let i = 0;
    while (i < frames.length) {
      if (this.ws.readyState !== OPEN) return ReplayOutcome.CLOSED;
      if (this.socket.writableLength > ahead) {
        if (!(await drainedOrClosed(this.socket, this.limits.replayStallMs)) && this.ws.readyState === OPEN) {
          if (this.limits.slowClientPolicy === 'drop') {
            this.stats[WorkerStat.slowClientDrops] += frames.length - i;
            return ReplayOutcome.STALLED;
          }
          this.stats[WorkerStat.slowClientDisconnects]++;
          this.closeThenCut(Close.SLOW_CLIENT);
          return ReplayOutcome.CLOSED;
        }
        continue;
      }
      // What fits goes as one buffer: unsent, thousands of small writes cost ≈ 2.7× their bytes.
      const room = ahead - this.socket.writableLength;
      let end = i + 1;
      let bytes = frames[i]!.length;
      while (end < frames.length && bytes + frames[end]!.length <= room) bytes += frames[end++]!.length;
      this.socket.write(end - i === 1 ? frames[i]! : Buffer.concat(frames.slice(i, end), bytes));
      reservation.release(bytes);
      this.stats[WorkerStat.deliveries] += end - i;
      i = end;
    }
    return this.ws.readyState === OPEN ? ReplayOutcome.WRITTEN : ReplayOutcome.CLOSED;
  }

  /** Frames written outside a batch, in order (held messages released after a replay). */
  writeFrames(frames: readonly Buffer[]): void {
    if (this.ws.readyState !== OPEN || frames.length === 0) return;
    this.socket.cork();
    for (const frame of frames) this.socket.write(frame);
    this.socket.uncork();
    this.stats[WorkerStat.deliveries] += frames.length;
  }

  /** Holds `streams`' live messages back from now on (a tormq.v2 subscription starts recovering). */
  hold(streams: Iterable<string>): void {
    this.holds ??= new Map();
    for (const stream of streams) if (!this.holds.has(stream)) this.holds.set(stream, { offsets: [], frames: [], bytes: 0, gapped: false });
  }

  /**
   * Ends the hold of `stream`: its held messages after `after` go out (those at or before it were in
   * the replay, or before the subscription's position), in order. Notes a gap if some were lost.
   */
  release(stream: string, after: number): void {
    const hold = this.holds?.get(stream);
    if (hold === undefined) return;
    this.holds!.delete(stream);
    this.heldBytes -= hold.bytes;
    if (this.holds!.size === 0) this.holds = null;
    const frames: Buffer[] = [];
    let last = after;
    for (let i = 0; i < hold.offsets.length; i++) {
      const offset = hold.offsets[i]!;
      if (offset <= last) continue;
      if (offset !== last + 1) hold.gapped = true; // held messages are in stream order: a jump is a loss
      frames.push(hold.frames[i]!);
      last = offset;
    }
    this.writeFrames(frames);
    if (hold.gapped) {
      this.noteGap(stream);
      this.flushGaps();
    }
  }

  /** This connection missed messages of `stream` (ALL_TOPICS: of every stream). */
  noteGap(stream: string): void {
    if (this.variant !== Variant.POSITIONED) return; // the original protocol has no way to say so
    const hold = this.holds?.get(stream);
    if (hold !== undefined) {
      hold.gapped = true;
      return;
    }
    (this.gaps ??= new Set()).add(stream);
  }

  /** Sends the pending gap notice: which of the connection's subscriptions the gapped streams feed. */
  flushGaps(): void {
    const gaps = this.gaps;
    if (gaps === null || this.ws.readyState !== OPEN) return;
    this.gaps = null;
    const topics: string[] = [];
    for (const subscription of this.subscriptions) {
      for (const stream of gaps) {
        if (stream === ALL_TOPICS || topicMatches(stream, subscription)) {
          topics.push(subscription);
          break;
        }
      }
    }
    if (topics.length > 0) this.reply(gapFrame(topics));
  }

  private keep(stream: string, offset: number, frame: Buffer): void {
    const hold = this.holds?.get(stream);
    if (hold === undefined) return;
    // Bounded like the outbound buffer, all streams together (a recovery may hold 256 streams): past
    // it, the rest is lost and the client told.
    if (this.heldBytes + frame.length > this.limits.slowClientBytes) {
      hold.gapped = true;
      return;
    }
    hold.offsets.push(offset);
    hold.frames.push(frame);
    hold.bytes += frame.length;
    this.heldBytes += frame.length;
  }

  /** A control reply (ack, error, pong, gap): only while open. */
  reply(text: string): void {
    if (this.ws.readyState === OPEN) this.ws.send(text);
  }

  /**
   * Sends a close frame, and cuts the connection if the close handshake has not finished after
   * CLOSE_GRACE_MS: a client that does not read (slow, or gone) will not read the close frame either.
   */
  closeThenCut(close: { code: number; reason: string }): void {
    this.ws.close(close.code, close.reason);
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }
}

/** Resolves true once `socket` has drained its write buffer or closed, false after `timeoutMs` without. */
function drainedOrClosed(socket: Socket, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const end = (drained: boolean): void => {
      clearTimeout(timer);
      socket.off('drain', done);
      socket.off('close', done);
      resolve(drained);
    };
    const done = (): void => end(true);
    const timer = setTimeout(() => end(false), timeoutMs);
    socket.on('drain', done);
    socket.on('close', done);
  });
}
