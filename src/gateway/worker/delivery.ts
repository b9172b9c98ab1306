/**
 * The worker's delivery loop: drain the ring, frame each message once, walk the trie for each, then
 * have every writer the batch touched write its share once. Control records in the ring (routing
 * marks, gaps) end the batch before them, so they take effect exactly between the messages around them.
 * Hot path: no logging, no per-message closures, no option checks.
 *
 * Writes (measured with `npm run bench`, `node --cpu-prof` on the gateway): the `writev` syscalls are
 * most of the worker's CPU (~3.9 s of ~5.6 s busy in a broadcast to 1,000 clients), so the cost
 * that matters is syscalls per delivered message. A batch's frames are laid back to back in one
 * buffer; each socket gets the run of consecutive messages due to it as one `write` of a view of that
 * buffer (the whole buffer in a broadcast). Measured A/B against cork() + write per message + uncork()
 * in one bench run: 0.18-0.20 vs 0.23-0.25 µs of user CPU per delivery (broadcast, 1,000 clients,
 * 1,000 msgs/s).
 *
 * Variants: the original body is framed as each record is read (the one copy out of shared memory);
 * the tormq.v2 variant (body plus its position) and gopusher's (`{"type":1,"data":<content>}`) are
 * built from it only when a batch has a recipient of that variant, once per message.
 */
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { gopusherPushText } from '../../protocol/gopusher-frames.js';
import { encodeTextFrame, frameHeaderLength } from '../../protocol/ws-frame.js';
import { LATENCY_BOUNDS, LatencyStat, WorkerStat } from '../shared/counters.js';
import { RecordKind, type RecordView, type RingReader } from '../shared/ring.js';
import type { TopicTrie } from './trie.js';
import { VARIANTS, Variant, type BatchView, type Writer } from './writer.js';

/** Records per batch before yielding to the event loop, so sockets and client frames are served. */
export const MAX_BATCH = 256;
const EMPTY = Buffer.alloc(0);

/** One batch of messages: each one's frames (per variant), topic and position, and the frames back to back. */
export class Batch implements BatchView {
  readonly topics: string[] = [];
  readonly epochs: string[] = [];
  readonly offsets = new Float64Array(MAX_BATCH);
  readonly receivedAt = new Float64Array(MAX_BATCH);
  readonly needed: boolean[] = new Array<boolean>(VARIANTS).fill(false);
  /** frames[variant][i]; the BODY variant is always built (it is the source of the others). */
  private readonly frames: Buffer[][] = Array.from({ length: VARIANTS }, () => []);
  private readonly buffers: Buffer[] = new Array<Buffer>(VARIANTS).fill(EMPTY);
  /** Where each frame starts in its variant's buffer (starts[v][size] is the buffer's length). */
  private readonly starts: Int32Array[] = Array.from({ length: VARIANTS }, () => new Int32Array(MAX_BATCH + 1));
  size = 0;
  delivered = 0;

  add(frame: Buffer, topic: string, epoch: string, offset: number, receivedAt: number): void {
    const i = this.size++;
    this.frames[Variant.BODY]![i] = frame;
    this.topics[i] = topic;
    this.epochs[i] = epoch;
    this.offsets[i] = offset;
    this.receivedAt[i] = receivedAt;
  }

  /** Builds the variants the walk found needed, and lays each one's frames back to back. */
  seal(): void {
    const n = this.size;
    for (let v = 0; v < VARIANTS; v++) {
      if (!this.needed[v]) continue;
      const frames = this.frames[v]!;
      if (v === Variant.POSITIONED) {
        const bodies = this.frames[Variant.BODY]!;
        for (let i = 0; i < n; i++) frames[i] = positionedFrame(bodies[i]!, this.epochs[i]!, this.offsets[i]!);
      } else if (v === Variant.GOPUSHER) {
        const bodies = this.frames[Variant.BODY]!;
        for (let i = 0; i < n; i++) frames[i] = gopusherFrame(bodies[i]!);
      }
      const starts = this.starts[v]!;
      starts[0] = 0;
      for (let i = 0; i < n; i++) starts[i + 1] = starts[i]! + frames[i]!.length;
      this.buffers[v] = n === 1 ? frames[0]! : Buffer.concat(frames, starts[n]!);
    }
  }

  chunk(variant: number, start: number, end: number): Buffer {
    if (end - start === 1) return this.frames[variant]![start]!;
    if (start === 0 && end === this.size) return this.buffers[variant]!;
    return this.buffers[variant]!.subarray(this.starts[variant]![start]!, this.starts[variant]![end]!);
  }

  frame(variant: number, i: number): Buffer {
    return this.frames[variant]![i]!;
  }

  clear(): void {
    for (let v = 0; v < VARIANTS; v++) {
      this.frames[v]!.length = 0;
      this.buffers[v] = EMPTY;
      this.needed[v] = false;
    }
    this.topics.length = 0;
    this.epochs.length = 0;
    this.size = 0;
    this.delivered = 0;
  }
}

/**
 * The tormq.v2 frame of a message: its body (an object: the MPC checked) with `"epoch":"…","offset":N`
 * appended before the closing brace. The epoch is base64url text: nothing to escape.
 */
export function positionedFrame(bodyFrame: Buffer, epoch: string, offset: number): Buffer {
  const bodyStart = bodyFrame[1]! === 126 ? 4 : bodyFrame[1]! === 127 ? 10 : 2;
  let brace = bodyFrame.length - 1;
  while (brace > bodyStart && bodyFrame[brace] !== 0x7d) brace--; // skip trailing whitespace after `}`
  const suffix = `,"epoch":"${epoch}","offset":${offset}}`;
  const length = brace - bodyStart + suffix.length;
  const header = frameHeaderLength(length);
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x81;
  if (length < 126) frame[1] = length;
  else if (length < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  bodyFrame.copy(frame, header, bodyStart, brace);
  frame.write(suffix, header + brace - bodyStart, 'latin1');
  return frame;
}

/** gopusher's frame of a message (protocol/gopusher-frames.ts), from its body's frame. */
export function gopusherFrame(bodyFrame: Buffer): Buffer {
  const bodyStart = bodyFrame[1]! === 126 ? 4 : bodyFrame[1]! === 127 ? 10 : 2;
  const text = Buffer.from(gopusherPushText(bodyFrame.toString('utf8', bodyStart)), 'utf8');
  return encodeTextFrame(text, 0, text.length);
}

/** What the worker does with the ring's control records. */
export interface ControlHandler {
  /** A routing MARK: `topic`'s stream is at (epoch, offset) here; answers the report or request `seq`. */
  mark(topic: string, seq: number, epoch: string, offset: number): void;
  /** Continuity of `topic` was lost for this worker (ALL_TOPICS: of every topic). */
  gap(topic: string): void;
}

export class Delivery {
  private running = false;
  private readonly batch = new Batch();
  /** Writers with messages due in the current batch. */
  private readonly touched: Writer[] = [];
  /** Index in the batch of the message being walked through the trie. */
  private current = 0;
  private readonly timeOrigin = performance.timeOrigin;

  constructor(
    private readonly ring: RingReader,
    private readonly trie: TopicTrie<Writer>,
    private readonly stats: Float64Array,
    private readonly control: ControlHandler,
    /** Coalescing window after an idle -> busy wake-up (GatewayConfig.batchDelayMs); 0 = off. */
    private readonly batchDelayMs = 0,
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
      // More is waiting after a full batch: let the event loop serve sockets first. A ring left empty
      // parks at once (no extra turn of the loop per wake-up: at 10k unicast msgs/s most wake-ups
      // bring one or two messages).
      if (this.deliverAvailable() > 0 && this.ring.hasData()) {
        await yieldToEventLoop();
      } else {
        const wait = this.ring.waitForData();
        if (wait !== null) await wait;
        // Coalescing window: after an idle -> busy wake-up, let more messages arrive so that one
        // write per socket carries several (see GatewayConfig.batchDelayMs for the measured trade).
        if (this.batchDelayMs > 0) await sleep(this.batchDelayMs);
      }
    }
  }

  /** Delivers what the ring holds, at most MAX_BATCH records; returns the number of records read. */
  deliverAvailable(): number {
    const count = this.ring.drain(this.onRecord, MAX_BATCH);
    if (this.batch.size > 0) this.deliverBatch();
    return count;
  }

  /** Walks the trie for `topic` on behalf of a control record (gaps), outside any batch. */
  forEachWriter(topic: string, visit: (writer: Writer) => void): void {
    this.trie.forEachRecipient(topic, visit);
  }

  private readonly onRecord = (record: RecordView): void => {
    if (record.kind === RecordKind.MESSAGE) {
      // Copy out of shared memory once, already framed: every recipient gets the same bytes.
      this.batch.add(encodeTextFrame(record.bytes, record.bodyOffset, record.bodyLength), record.topic, record.epoch, record.offset, record.receivedAt);
      return;
    }
    // Control records take effect between the messages around them: the batch so far goes first.
    if (this.batch.size > 0) this.deliverBatch();
    if (record.kind === RecordKind.MARK) this.control.mark(record.topic, record.seq, record.epoch, record.offset);
    else if (record.kind === RecordKind.GAP) this.control.gap(record.topic);
  };

  private deliverBatch(): void {
    const batch = this.batch;
    for (let i = 0; i < batch.size; i++) {
      this.current = i;
      this.trie.forEachRecipient(batch.topics[i]!, this.visit);
    }
    batch.seal();
    const touched = this.touched;
    for (let i = 0; i < touched.length; i++) touched[i]!.endBatch(batch);
    touched.length = 0;
    this.count(batch);
    batch.clear();
  }

  /** Trie visitor: message `current` is due to `writer`. */
  private readonly visit = (writer: Writer): void => {
    if (writer.due(this.current, this.batch)) this.touched.push(writer);
  };

  private count(batch: Batch): void {
    const stats = this.stats;
    stats[WorkerStat.messages] += batch.size;
    stats[WorkerStat.deliveries] += batch.delivered;
    // In-gateway latency: main-thread receive -> handed to the kernel (the writes above).
    const now = this.timeOrigin + performance.now();
    for (let i = 0; i < batch.size; i++) {
      const seconds = (now - batch.receivedAt[i]!) / 1000;
      stats[LatencyStat.COUNT]++;
      stats[LatencyStat.SUM_SECONDS] += seconds;
      let bucket = 0;
      while (bucket < LATENCY_BOUNDS.length && seconds > LATENCY_BOUNDS[bucket]!) bucket++;
      stats[LatencyStat.BUCKETS + bucket]++;
    }
  }
}
