/**
 * The worker's delivery loop: drain the ring, frame each message once, write it to every recipient
 * the trie yields, then uncork the touched sockets so each pays one writev per batch.
 * Hot path: no logging, no per-message closures, no option checks.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { RingReader } from '../protocol/ring.js';
import { encodeTextFrame } from '../protocol/ws-frame.js';
import type { Session } from './session.js';
import { LATENCY_BOUNDS, WorkerStat } from './thread-protocol.js';
import type { WorkerContext } from './worker-context.js';

/** Records per batch before yielding to the event loop, so sockets and client frames are served. */
const MAX_BATCH = 256;

export class Delivery {
  private running = false;
  private frame: Buffer = Buffer.alloc(0);
  private delivered = 0;
  private readonly receivedAt = new Float64Array(MAX_BATCH);
  private batchSize = 0;
  private readonly timeOrigin = performance.timeOrigin;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly ring: RingReader,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop().catch((error: unknown) => {
      // Delivery failing is a bug: let the worker die so the main thread replaces it.
      queueMicrotask(() => {
        throw error;
      });
    });
  }

  stop(): void {
    this.running = false;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const count = this.ring.drain(this.onRecord, MAX_BATCH);
      if (count > 0) {
        this.flush();
        await yieldToEventLoop();
      } else {
        const wait = this.ring.waitForData();
        if (wait !== null) await wait;
      }
    }
  }

  private readonly onRecord = (topic: string, bytes: Buffer, offset: number, length: number, receivedAt: number): void => {
    // Copy out of shared memory once, already framed: every recipient gets the same bytes.
    this.frame = encodeTextFrame(bytes, offset, length);
    this.receivedAt[this.batchSize++] = receivedAt;
    this.ctx.trie.forEachRecipient(topic, this.deliverTo);
  };

  private readonly deliverTo = (session: Session): void => {
    if (session.deliver(this.frame)) this.delivered++;
  };

  private flush(): void {
    const corked = this.ctx.corked;
    for (let i = 0; i < corked.length; i++) {
      const session = corked[i]!;
      session.corked = false;
      session.socket.uncork();
    }
    corked.length = 0;
    const stats = this.ctx.stats;
    stats[WorkerStat.RECORDS] += this.batchSize;
    stats[WorkerStat.DELIVERIES] += this.delivered;
    this.delivered = 0;
    // In-gateway latency: main-thread receive -> handed to the kernel (uncork above writes).
    const now = this.timeOrigin + performance.now();
    for (let i = 0; i < this.batchSize; i++) {
      const seconds = (now - this.receivedAt[i]!) / 1000;
      stats[WorkerStat.LATENCY_COUNT]++;
      stats[WorkerStat.LATENCY_SUM_SECONDS] += seconds;
      let bucket = 0;
      while (bucket < LATENCY_BOUNDS.length && seconds > LATENCY_BOUNDS[bucket]!) bucket++;
      stats[WorkerStat.LATENCY_BUCKETS + bucket]++;
    }
    this.batchSize = 0;
    stats[WorkerStat.RING_USED_BYTES] = this.ring.used();
  }
}
