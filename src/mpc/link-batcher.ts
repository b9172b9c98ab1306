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
 * With a hold (the MPC's --coalesce-ms), batches wait up to that long after the reads that brought
 * them, so that more messages share a frame; the reads go on meanwhile. Pausing the publisher sockets
 * instead (the flag's first form) let Node's stream buffer release one chunk per pause: latency grew
 * to 10-45 ms for no CPU saving.
 */
import { encodeBatch } from '../zmq/gateway-link.js';

/** A batch leaves once it holds this many messages or bytes, even if more are readable. */
const MAX_BATCH_MESSAGES = 512;
const MAX_BATCH_BYTES = 256 * 1024;

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

  constructor(
    private readonly sender: FrameSink,
    /** How long pending batches may wait after the reads that brought them, ms; 0: not at all. */
    private readonly holdMs = 0,
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
    if (batch.frames.length >= MAX_BATCH_MESSAGES || batch.bytes >= MAX_BATCH_BYTES) this.flush();
  }

  /** Any other frame (a root's own message, a position, a reply): after everything pending. */
  send(frame: Buffer): void {
    if (this.pending.length > 0) this.flush();
    this.framesSent++;
    this.sender.send(frame);
  }

  /** The publisher sockets have nothing more to read now: what is pending leaves, at once or within the hold. */
  readsDone(): void {
    if (this.holdMs <= 0) this.flush();
    else if (this.pending.length > 0) this.holdTimer ??= setTimeout(this.flushHeld, this.holdMs);
  }

  private readonly flushHeld = (): void => {
    this.holdTimer = null;
    this.flush();
  };

  /** Sends what is pending: one frame per root (a single message as itself). */
  flush(): void {
    if (this.holdTimer !== null) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
    }
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
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
