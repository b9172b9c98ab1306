/**
 * A guard in front of grpc-js on the gRPC port: it reads the HTTP/2 frame headers of what a client
 * sends (plain HTTP/2, no TLS on this port) and cuts a connection whose request streams carry their
 * bytes in too many DATA frames.
 *
 * Why: grpc-js keeps every DATA frame of a message being received as a Buffer of its own until the
 * message is whole, ≈ 450 bytes of memory per frame however small. 100 KB sent as one-byte frames grew
 * the MPC's RSS by 45 MB, and only the 4 MB message limit bounded one stream (≈ 1.8 GB); the bearer
 * token is checked only once the message is whole, so an unauthenticated client could do it. grpc-go
 * fixed the same class in its own receive buffers (CVE-2026-84304, grpc-go #9331); grpc-js 1.14 has no
 * option for it.
 *
 * The rule, per stream: at most MIN_FRAMES DATA frames, plus one per FRAME_ALLOWANCE_BYTES it carried.
 * Real clients fill frames up to the peer's max frame size (16 KB by default) and a unary call of a
 * few KB is one frame, so none comes near it; a stream held open in one-byte frames is cut after 16.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/** DATA frames any stream may send, whatever their size. */
const MIN_FRAMES = 16;
/** Each this many bytes of DATA allow one more frame. */
const FRAME_ALLOWANCE_BYTES = 1024;
const PREFACE_BYTES = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", checked by nghttp2
const FRAME_HEADER_BYTES = 9;
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const END_STREAM = 0x1;

/** Why a connection was cut: a message in too many DATA frames, or the port's unfinished bytes past their limit. */
export type CutReason = 'fragmented' | 'unfinished';

/**
 * The bytes of calls not yet whole (DATA on streams not ended), all of a port's connections together:
 * grpc-js buffers each message until it is whole, so this is what clients make it hold. One connection
 * with 100 calls of 1.3 MB, each one byte short, held 134 MB; the port's connection cap multiplied that.
 * Past `limit`, the connection holding the most is cut (and its bytes released).
 */
export class UnfinishedBytes {
  held = 0;
  /** Connections cut to bring `held` back under `limit`. */
  cuts = 0;
  readonly counters = new Set<DataFrameCounter>();

  constructor(readonly limit: number) {}
}

/** HTTP/2 frame headers read from bytes as they arrive (frames span reads; payloads are skipped). */
class FrameHeaderReader {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private fill = 0;

  /** `skip`: bytes before the first frame (the client's connection preface). */
  constructor(private skip: number) {}

  /** Calls `frame` for each frame header in `chunk`, until one returns non-null: that is returned. */
  read<T>(chunk: Buffer, frame: (length: number, type: number, flags: number, stream: number) => T | null): T | null {
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const n = Math.min(FRAME_HEADER_BYTES - this.fill, chunk.length - at);
      chunk.copy(this.header, this.fill, at, at + n);
      this.fill += n;
      at += n;
      if (this.fill < FRAME_HEADER_BYTES) break;
      this.fill = 0;
      this.skip = this.header.readUIntBE(0, 3);
      const result = frame(this.skip, this.header[3]!, this.header[4]!, this.header.readUInt32BE(5) & 0x7fffffff);
      if (result !== null) return result;
    }
    return null;
  }
}

/** Streams the server ended while their client was still sending, remembered at most (their DATA is dropped). */
const MAX_ANSWERED = 1000;

/**
 * Reads frame headers from a client's bytes as they arrive (`feed`: the rule a stream has broken, or
 * null) and from the server's (`sent`): a call the server has answered before its message was whole
 * (UNAUTHENTICATED at its metadata, RESOURCE_EXHAUSTED at its length prefix) or reset is no longer
 * held by grpc-js, so what its client still sends is not counted.
 */
export class DataFrameCounter {
  private readonly incoming = new FrameHeaderReader(PREFACE_BYTES);
  private readonly outgoing = new FrameHeaderReader(0);
  /** Open request streams that have sent DATA: frames and bytes so far. */
  private readonly streams = new Map<number, { frames: number; bytes: number }>();
  /** Streams the client has opened and not ended. */
  private readonly clientOpen = new Set<number>();
  /** Streams the server ended while the client had not (oldest first). */
  private readonly answered = new Set<number>();
  /** Told once, when the client's first request has arrived whole (END_STREAM on one of its streams). */
  private onFirstRequest: (() => void) | null;
  /** Bytes of this connection's unfinished calls. */
  held = 0;
  /** Told when another connection's bytes pushed the port past its limit and this one holds the most. */
  evict: () => void = () => {};
  private readonly clientFrame = (length: number, type: number, flags: number, stream: number) => this.frame(length, type, flags, stream);
  private readonly serverFrame = (_length: number, type: number, flags: number, stream: number): null => {
    if ((type === HEADERS && (flags & END_STREAM) !== 0) || type === RST_STREAM) this.serverEnded(stream);
    return null;
  };

  constructor(onFirstRequest: () => void = () => {}, private readonly unfinished = new UnfinishedBytes(Infinity)) {
    this.onFirstRequest = onFirstRequest;
    unfinished.counters.add(this);
  }

  /** The connection is gone: its unfinished bytes are no longer held. */
  release(): void {
    this.unfinished.held -= this.held;
    this.held = 0;
    this.streams.clear();
    this.unfinished.counters.delete(this);
  }

  feed(chunk: Buffer): CutReason | null {
    return this.incoming.read(chunk, this.clientFrame);
  }

  /** Bytes the server sends the client. */
  sent(chunk: Buffer): void {
    this.outgoing.read(chunk, this.serverFrame);
  }

  /** Streams being counted (bounded by the streams a connection may have open). */
  get openStreams(): number {
    return this.streams.size;
  }

  private frame(length: number, type: number, flags: number, stream: number): CutReason | null {
    const ends = (flags & END_STREAM) !== 0;
    if (type === RST_STREAM || ((type === DATA || type === HEADERS) && ends)) {
      this.clientOpen.delete(stream);
      if (this.answered.delete(stream)) return null; // answered already: nothing of it is held
    } else if (type === HEADERS) {
      this.clientOpen.add(stream);
    }
    if (type === RST_STREAM) this.end(stream);
    if (type === DATA && !this.answered.has(stream)) {
      let counted = this.streams.get(stream);
      if (counted === undefined) this.streams.set(stream, (counted = { frames: 0, bytes: 0 }));
      counted.frames++;
      counted.bytes += length;
      this.hold(length);
      if (counted.frames > MIN_FRAMES + counted.bytes / FRAME_ALLOWANCE_BYTES) return 'fragmented';
      if ((flags & END_STREAM) !== 0) this.end(stream);
      else if (this.unfinished.held > this.unfinished.limit && this.evictLargest()) return 'unfinished';
    }
    if ((type === DATA || type === HEADERS) && (flags & END_STREAM) !== 0 && this.onFirstRequest !== null) {
      this.onFirstRequest();
      this.onFirstRequest = null;
    }
    return null;
  }

  private hold(bytes: number): void {
    this.held += bytes;
    this.unfinished.held += bytes;
  }

  /** The server ended `stream` (its status sent, or a reset): if its client is still sending, that is dropped. */
  private serverEnded(stream: number): void {
    if (!this.clientOpen.delete(stream)) return;
    this.end(stream);
    this.answered.add(stream);
    if (this.answered.size > MAX_ANSWERED) this.answered.delete(this.answered.values().next().value!);
  }

  /** `stream` is whole (its message handed on) or reset: its bytes are no longer waiting. */
  private end(stream: number): void {
    const counted = this.streams.get(stream);
    if (counted === undefined) return;
    this.hold(-counted.bytes);
    this.streams.delete(stream);
  }

  /** Cuts the connection holding the most unfinished bytes: true when that is this one (the caller cuts it). */
  private evictLargest(): boolean {
    let largest: DataFrameCounter = this;
    for (const counter of this.unfinished.counters) if (counter.held > largest.held) largest = counter;
    this.unfinished.cuts++;
    if (largest === this) return true;
    largest.release();
    largest.evict();
    return false;
  }
}

/**
 * `socket` behind a DataFrameCounter, as a Duplex to hand to grpc-js (createConnectionInjector). A
 * connection that breaks the rule, or holds the most of `unfinished` when the port goes past its
 * limit, is destroyed and `onCut` told why; grpc-js sees it end. `onFirstRequest`
 * is told when the client's first request has arrived whole.
 */
export function guardDataFrames(socket: Socket, onCut: (reason: CutReason) => void, onFirstRequest?: () => void, unfinished?: UnfinishedBytes): Duplex {
  const counter = new DataFrameCounter(onFirstRequest, unfinished);
  const guarded = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      counter.sent(chunk);
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  const cut = (reason: CutReason) => {
    counter.release();
    socket.destroy();
    guarded.destroy();
    onCut(reason);
  };
  counter.evict = () => cut('unfinished');
  socket.on('data', (chunk: Buffer) => {
    const reason = counter.feed(chunk);
    if (reason !== null) {
      cut(reason);
      return;
    }
    if (!guarded.push(chunk)) socket.pause();
  });
  socket.on('end', () => guarded.push(null));
  socket.on('error', (error) => guarded.destroy(error));
  socket.on('close', () => {
    counter.release();
    guarded.destroy();
  });
  return guarded;
}
