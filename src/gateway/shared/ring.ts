/**
 * Single-producer/single-consumer ring in a SharedArrayBuffer: the main thread writes records, one
 * worker reads them. A record is
 * `[u32 bodyLength][u16 topicLength][u8 kind][u8 epochLength][f64 receivedAt][f64 offset][u32 seq][topic][epoch][body]`,
 * padded to 4 bytes: a stream message (its topic, stream position and body), or a control record that
 * must be ordered with the messages (a routing mark, a gap; see RecordKind). `receivedAt` (ms,
 * `performance.timeOrigin + performance.now()`) feeds the in-gateway latency histogram. Positions are
 * free-running u32 counters (wrapping at 2^32); `capacity` is a power of two, so `position & mask` is
 * the byte offset and `(write - read) >>> 0` is the number of bytes in use.
 *
 * Memory ordering: the writer fills the record bytes with plain stores, then publishes them with
 * `Atomics.store(WRITE)`; the reader observes them only after `Atomics.load(WRITE)`. Atomics are
 * sequentially consistent in JS, so the plain stores are visible to the reader (and likewise for READ
 * in the other direction, which frees space).
 *
 * The writer never waits: a record that does not fit is refused (`tryWrite` returns false) and the
 * caller counts the drop. A reader that has caught up parks with `Atomics.waitAsync` on WRITE; the
 * writer notifies only when the reader may have caught up with it (see `tryWrite`).
 */

/** What a ring record is. */
export const RecordKind = {
  /** A published message: topic, stream position (epoch, offset), body. */
  MESSAGE: 0,
  /**
   * Main routes `topic` to this worker now, confirmed upstream: everything of its stream after
   * (epoch, offset) follows this record. Answers the worker's report or request numbered `seq`.
   */
  MARK: 1,
  /** Continuity of `topic`'s stream was lost for this worker (upstream gap not repaired, ring drop, new epoch). */
  GAP: 2,
} as const;

/** The topic of a GAP record that means every topic (a real topic is never empty). */
export const ALL_TOPICS = '';

/**
 * Where the parts of a record to write are: ranges of buffers (on the hot path all three are the one
 * frame received from the MPC; no allocation per message).
 */
export interface RecordSource {
  kind: number;
  topicSource: Buffer;
  epochSource: Buffer;
  bodySource: Buffer;
  topicStart: number;
  topicEnd: number;
  epochStart: number;
  epochEnd: number;
  bodyStart: number;
  bodyEnd: number;
  offset: number;
  seq: number;
  receivedAt: number;
}

/** One record as the reader hands it over (reused: valid only during the sink call). */
export interface RecordView {
  kind: number;
  topic: string;
  epoch: string;
  offset: number;
  seq: number;
  receivedAt: number;
  /** The body is `bytes[bodyOffset, bodyOffset + bodyLength)`, in shared memory: copy it before returning. */
  bytes: Buffer;
  bodyOffset: number;
  bodyLength: number;
}

const HEADER_INTS = 4; // WRITE, READ, two spare
const WRITE = 0;
const READ = 1;
const HEADER_BYTES = HEADER_INTS * 4;
const RECORD_HEADER_BYTES = 28; // see the layout above
const MAX_EPOCH_BYTES = 255;
/** A body length of 0xffffffff at an offset means "skip to offset 0". */
const WRAP_MARKER = 0xffffffff;

export const MIN_RING_BYTES = 4096;

/** Allocates the shared memory for a ring of `capacity` data bytes (a power of two). */
export function createRingBuffer(capacity: number): SharedArrayBuffer {
  if (!Number.isInteger(capacity) || capacity < MIN_RING_BYTES || (capacity & (capacity - 1)) !== 0 || capacity > 2 ** 30) {
    throw new RangeError(`ring capacity must be a power of two between ${MIN_RING_BYTES} and 2^30, got ${capacity}`);
  }
  return new SharedArrayBuffer(HEADER_BYTES + capacity);
}

/** The largest body a ring of `capacity` bytes accepts with a topic of `topicBytes` bytes (and any epoch). */
export function maxBodyFor(capacity: number, topicBytes: number): number {
  // Half the ring, so a record always fits once the reader has caught up, even after a wrap.
  return (capacity >>> 1) - RECORD_HEADER_BYTES - topicBytes - MAX_EPOCH_BYTES - 3;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

class RingBase {
  protected readonly header: Int32Array;
  protected readonly bytes: Buffer;
  protected readonly view: DataView;
  readonly capacity: number;
  protected readonly mask: number;

  constructor(sab: SharedArrayBuffer) {
    this.header = new Int32Array(sab, 0, HEADER_INTS);
    this.capacity = sab.byteLength - HEADER_BYTES;
    this.mask = this.capacity - 1;
    this.bytes = Buffer.from(sab, HEADER_BYTES, this.capacity);
    this.view = new DataView(sab, HEADER_BYTES, this.capacity);
  }

  /** Bytes currently in use (written, not yet read). */
  used(): number {
    return (Atomics.load(this.header, WRITE) - Atomics.load(this.header, READ)) >>> 0;
  }
}

export class RingWriter extends RingBase {
  /**
   * Appends one record. Returns false (and writes nothing) when it does not fit: the caller drops it
   * for this ring and counts it. Sets `needsNotify` when the reader may be parked.
   */
  tryWrite(r: RecordSource): boolean {
    const topicLength = r.topicEnd - r.topicStart;
    const epochLength = r.epochEnd - r.epochStart;
    const bodyLength = r.bodyEnd - r.bodyStart;
    const recordLength = align4(RECORD_HEADER_BYTES + topicLength + epochLength + bodyLength);
    if (recordLength > this.capacity >>> 1 || topicLength > 0xffff || epochLength > MAX_EPOCH_BYTES) return false;
    const write = Atomics.load(this.header, WRITE) >>> 0;
    const read = Atomics.load(this.header, READ) >>> 0;
    const free = this.capacity - ((write - read) >>> 0);
    let offset = write & this.mask;
    const tail = this.capacity - offset;
    let advance = recordLength;
    if (recordLength > tail) {
      // Does not fit before the end: burn the tail (marker) and write at offset 0.
      advance += tail;
      if (advance > free) return false;
      this.view.setUint32(offset, WRAP_MARKER, true);
      offset = 0;
    } else if (advance > free) {
      return false;
    }
    const view = this.view;
    view.setUint32(offset, bodyLength, true);
    view.setUint16(offset + 4, topicLength, true);
    view.setUint8(offset + 6, r.kind);
    view.setUint8(offset + 7, epochLength);
    view.setFloat64(offset + 8, r.receivedAt, true);
    view.setFloat64(offset + 16, r.offset, true);
    view.setUint32(offset + 24, r.seq >>> 0, true);
    let at = offset + RECORD_HEADER_BYTES;
    r.topicSource.copy(this.bytes, at, r.topicStart, r.topicEnd);
    at += topicLength;
    r.epochSource.copy(this.bytes, at, r.epochStart, r.epochEnd);
    at += epochLength;
    r.bodySource.copy(this.bytes, at, r.bodyStart, r.bodyEnd);
    Atomics.store(this.header, WRITE, (write + advance) | 0);
    // The reader parks only after publishing READ === the WRITE it saw, and waitAsync re-checks WRITE
    // atomically. So READ must be read again *after* publishing WRITE: with the READ loaded above, a
    // reader that finished draining and parked between that load and the store above would never be
    // woken (a lost wake-up that stalled a worker for good under sustained load). Re-loaded here, either
    // the reader parked before our store (READ === write: notify) or its waitAsync sees the new WRITE.
    if ((Atomics.load(this.header, READ) >>> 0) === write) this.needsNotify = true;
    return true;
  }

  needsNotify = false;

  /** Wakes the reader if a write since the last call found it idle. */
  notify(): void {
    if (this.needsNotify) {
      this.needsNotify = false;
      Atomics.notify(this.header, WRITE);
    }
  }
}

/** Receives one record (the view is reused for the next one). */
export interface RecordSink {
  (record: RecordView): void;
}

export class RingReader extends RingBase {
  private read: number;

  private readonly record: RecordView;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.read = Atomics.load(this.header, READ) >>> 0;
    this.record = { kind: 0, topic: '', epoch: '', offset: 0, seq: 0, receivedAt: 0, bytes: this.bytes, bodyOffset: 0, bodyLength: 0 };
  }

  /**
   * Hands up to `maxRecords` records to `sink`, then frees their space. The body bytes passed to the
   * sink live in shared memory and must be copied before `drain` returns. Returns the count read.
   */
  drain(sink: RecordSink, maxRecords: number): number {
    const write = Atomics.load(this.header, WRITE) >>> 0;
    let read = this.read;
    let count = 0;
    const view = this.view;
    const record = this.record;
    while (read !== write && count < maxRecords) {
      let offset = read & this.mask;
      let bodyLength = view.getUint32(offset, true);
      if (bodyLength === WRAP_MARKER) {
        read = (read + (this.capacity - offset)) >>> 0;
        offset = 0;
        bodyLength = view.getUint32(0, true);
      }
      const topicLength = view.getUint16(offset + 4, true);
      const epochLength = view.getUint8(offset + 7);
      const topicStart = offset + RECORD_HEADER_BYTES;
      const epochStart = topicStart + topicLength;
      record.kind = view.getUint8(offset + 6);
      record.receivedAt = view.getFloat64(offset + 8, true);
      record.offset = view.getFloat64(offset + 16, true);
      record.seq = view.getUint32(offset + 24, true);
      record.topic = this.bytes.toString('utf8', topicStart, epochStart);
      record.epoch = epochLength === 0 ? '' : this.bytes.toString('latin1', epochStart, epochStart + epochLength);
      record.bodyOffset = epochStart + epochLength;
      record.bodyLength = bodyLength;
      sink(record);
      read = (read + align4(RECORD_HEADER_BYTES + topicLength + epochLength + bodyLength)) >>> 0;
      count++;
    }
    if (count > 0) {
      this.read = read;
      Atomics.store(this.header, READ, read | 0);
    }
    return count;
  }

  /**
   * Resolves when the writer has published past the current read position (immediately if it
   * already has). Uses `Atomics.waitAsync`, never `Atomics.wait`: the worker's event loop keeps
   * serving its sockets while it is parked.
   */
  waitForData(): Promise<unknown> | null {
    const result = Atomics.waitAsync(this.header, WRITE, this.read | 0);
    return result.async ? result.value : null;
  }

  /** `true` when unread records are waiting. */
  hasData(): boolean {
    return (Atomics.load(this.header, WRITE) >>> 0) !== this.read;
  }
}
