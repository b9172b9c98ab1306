/**
 * The MPC's one way out to gateways. Stream messages below a root are gathered per root and leave as
 * one batch frame (zmq/gateway-link.ts) when the publisher socket has nothing more to read, or when a
 * batch is full: each sent ZeroMQ frame costs the MPC a wake-up of libzmq's I/O thread and a TCP write,
 * and each received one costs the gateway as much again, whatever the frame's size.
 *
 * Only while every gateway linked to the MPC reads batches (it says so with a subscription,
 * zmq/gateway-link.ts `batchCapability`): a gateway older than batches keeps getting one frame per
 * message, so gateways and MPC can be upgraded in any order.
 *
 * Order: everything else (positions, confirmations, replies) flushes the batches first, so every frame
 * leaves in the order it was produced, as without batching — a position still follows the messages
 * it counts, and "a message older than a reply arrives before it" still holds.
 *
 * With a hold (the MPC's --coalesce-ms), batches leave at most once per hold: what the reads bring
 * within a hold of the last flush waits for the rest of it, so that more messages share a frame; the
 * reads go on meanwhile. A read after a quiet hold leaves at once, so the hold costs latency only
 * while messages come faster than one per hold (it used to hold every read for the whole window:
 * p50 1.3 ms at 1k msgs/s with 1 ms; now 0.2, as without a hold). Pausing the publisher sockets
 * instead (the flag's first form) let Node's stream buffer release one chunk per pause: latency grew
 * to 10-45 ms for no CPU saving. Stopping their reads in libuv for the hold (the handle's readStop,
 * so that one read brings a hold's messages) was measured too (2026-12-07, unicast 40k msgs/s): the
 * MPC's CPU per message stayed 5.1 µs, p50 went from 1.9 to 3.1 ms. Its cost is per message, not per read.
 */
import { encodeBatch } from '../zmq/gateway-link.js';

/** A batch leaves once it holds this many messages or bytes, even if more are readable. */
const MAX_BATCH_MESSAGES = 512;
export const MAX_BATCH_BYTES = 256 * 1024;

/** Where frames to gateways go: zeromq.js's XPUB (through a SerialSender) or the ZMTP link server. */
export interface FrameSink {
  send(frame: Buffer): void;
}

interface Batch {
  readonly key: Buffer;
  frames: Buffer[];
  bytes: number;
}

export class LinkBatcher {
  /** Frames sent to gateways (a batch counts one). */
  framesSent = 0;
  private readonly batches = new Map<string, Batch>();
  /** Gateways linked (their private key is subscribed), and those of them that read batches (by id). */
  private readonly linked = new Set<string>();
  private readonly readsBatches = new Set<string>();
  private batching = true;
  /** Roots with something pending, in the order their first message came. */
  private pending: Batch[] = [];

  /** Set while held batches wait (only with a hold). */
  private holdTimer: NodeJS.Timeout | null = null;
  /** When something last left (performance.now()), for the hold. */
  private lastFlushAt = -Infinity;

  constructor(
    private readonly sender: FrameSink,
    /** At most one flush per this many ms while messages keep coming; 0: every read's leave at once. */
    private readonly holdMs = 0,
    /** A batch leaves once it holds this many bytes (the MPC sizes it to the gateway queue). */
    private readonly maxBatchBytes = MAX_BATCH_BYTES,
  ) {}

  gatewayLinked(id: string): void {
    this.linked.add(id);
    this.update();
  }

  gatewayReadsBatches(id: string): void {
    this.readsBatches.add(id);
    this.update();
  }

  gatewayGone(id: string): void {
    this.linked.delete(id);
    this.readsBatches.delete(id);
    this.update();
  }

  private update(): void {
    let all = true;
    for (const id of this.linked) {
      if (!this.readsBatches.has(id)) {
        all = false;
        break;
      }
    }
    // Turning off: what is pending leaves as single frames (flush looks at `batching`).
    this.batching = all;
    if (!all) this.flush();
  }

  /** A stream message of a topic below `root` (not the root's own topic: see `send`). */
  message(root: string, frame: Buffer): void {
    if (!this.batching) {
      this.framesSent++;
      this.sender.send(frame);
      return;
    }
    let batch = this.batches.get(root);
    if (batch === undefined) {
      if (this.batches.size >= 100_000) this.batches.clear(); // roots come and go: keep the map bounded
      batch = { key: Buffer.from(`${root}:`, 'utf8'), frames: [], bytes: 0 };
      this.batches.set(root, batch);
    }
    if (batch.frames.length === 0) this.pending.push(batch);
    batch.frames.push(frame);
    batch.bytes += frame.length;
    if (batch.frames.length >= MAX_BATCH_MESSAGES || batch.bytes >= this.maxBatchBytes) this.flush();
  }

  /** Any other frame (a root's own message, a position, a reply): after everything pending. */
  send(frame: Buffer): void {
    if (this.pending.length > 0) this.flush();
    this.framesSent++;
    this.sender.send(frame);
  }

  /** The publisher sockets have nothing more to read now: what is pending leaves, at once or within the hold. */
  readsDone(): void {
    if (this.holdMs <= 0) return this.flush();
    if (this.pending.length === 0 || this.holdTimer !== null) return;
    const wait = this.lastFlushAt + this.holdMs - performance.now();
    if (wait <= 0) this.flush();
    else this.holdTimer = setTimeout(this.flushHeld, wait);
  }

  private readonly flushHeld = (): void => this.flush();

  /** Sends what is pending: one frame per root (a single message as itself). */
  flush(): void {
    if (this.holdTimer !== null) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
    }
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    if (this.holdMs > 0) this.lastFlushAt = performance.now();
    for (const batch of pending) {
      const frames = batch.frames;
      if (frames.length === 1 || !this.batching) {
        for (const frame of frames) this.sender.send(frame);
        this.framesSent += frames.length;
      } else {
        this.framesSent++;
        this.sender.send(encodeBatch(batch.key, frames, batch.bytes));
      }
      batch.frames = [];
      batch.bytes = 0;
    }
  }
}
