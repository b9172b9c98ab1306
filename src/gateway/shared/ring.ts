/**
 * Single-producer/single-consumer ring in a SharedArrayBuffer: the main thread writes published
 * messages, one worker reads them. Records are
 * `[u32 bodyLength][u16 topicLength][u16 pad][f64 receivedAt][topic][body]`, padded to 4 bytes;
 * `receivedAt` (ms, `performance.timeOrigin + performance.now()`) feeds the in-gateway latency histogram. Positions are free-running u32 counters (wrapping at 2^32); `capacity` is a power of two, so
 * `position & mask` is the byte offset and `(write - read) >>> 0` is the number of bytes in use.
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

const HEADER_INTS = 4; // WRITE, READ, two spare
const WRITE = 0;
const READ = 1;
const HEADER_BYTES = HEADER_INTS * 4;
const RECORD_HEADER_BYTES = 16; // u32 body length, u16 topic length, u16 pad, f64 receive time
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

/** The largest body a ring of `capacity` bytes accepts with a topic of `topicBytes` bytes. */
export function maxBodyFor(capacity: number, topicBytes: number): number {
  // Half the ring, so a record always fits once the reader has caught up, even after a wrap.
  return (capacity >>> 1) - RECORD_HEADER_BYTES - topicBytes - 3;
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
   * Appends one record. Returns false (and writes nothing) when it does not fit: the caller drops the
   * message for this ring and counts it. Sets `needsNotify` when the reader may be parked.
   */
  tryWrite(topic: Buffer, body: Buffer, receivedAt: number): boolean {
    const recordLength = align4(RECORD_HEADER_BYTES + topic.length + body.length);
    if (recordLength > this.capacity >>> 1 || topic.length > 0xffff) return false;
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
    this.view.setUint32(offset, body.length, true);
    this.view.setUint16(offset + 4, topic.length, true);
    this.view.setFloat64(offset + 8, receivedAt, true);
    topic.copy(this.bytes, offset + RECORD_HEADER_BYTES);
    body.copy(this.bytes, offset + RECORD_HEADER_BYTES + topic.length);
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

/** Receives one record: `topic` decoded, the body as offset/length into `bytes` (valid only during the call). */
export interface RecordSink {
  (topic: string, bytes: Buffer, bodyOffset: number, bodyLength: number, receivedAt: number): void;
}

export class RingReader extends RingBase {
  private read: number;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.read = Atomics.load(this.header, READ) >>> 0;
  }

  /**
   * Hands up to `maxRecords` records to `sink`, then frees their space. The body bytes passed to the
   * sink live in shared memory and must be copied before `drain` returns. Returns the count read.
   */
  drain(sink: RecordSink, maxRecords: number): number {
    const write = Atomics.load(this.header, WRITE) >>> 0;
    let read = this.read;
    let count = 0;
    while (read !== write && count < maxRecords) {
      let offset = read & this.mask;
      let bodyLength = this.view.getUint32(offset, true);
      if (bodyLength === WRAP_MARKER) {
        read = (read + (this.capacity - offset)) >>> 0;
        offset = 0;
        bodyLength = this.view.getUint32(0, true);
      }
      const topicLength = this.view.getUint16(offset + 4, true);
      const topicStart = offset + RECORD_HEADER_BYTES;
      const topic = this.bytes.toString('utf8', topicStart, topicStart + topicLength);
      sink(topic, this.bytes, topicStart + topicLength, bodyLength, this.view.getFloat64(offset + 8, true));
      const recordLength = align4(RECORD_HEADER_BYTES + topicLength + bodyLength);
      read = (read + recordLength) >>> 0;
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
