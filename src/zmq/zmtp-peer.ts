/**
 * One accepted ZMTP 3.0 connection (rfc.zeromq.org/spec/23, NULL security) read without libzmq: the
 * greeting, the READY handshake, then whole messages handed over as they are parsed in place. Shared
 * by the MPC's two ports that tormq serves itself: the publisher port (zmtp-subscriber.ts, a SUB) and
 * the gateway link (zmtp-publisher.ts, an XPUB).
 *
 * Bounded: a frame over `maxFrameBytes` is skipped as it streams past (its message is reported unread
 * `oversized`, its bytes never held); parts past `maxParts` are skipped too (`bad_frames`); a command
 * over MAX_COMMAND_BYTES, a message before the handshake, or a handshake not done within
 * HANDSHAKE_TIMEOUT_MS closes the connection. What a peer holds is at most one frame being assembled.
 *
 * Heartbeats (ZMTP 3.1's PING/PONG, as libzmq's ZMQ_HEARTBEAT_*): a PING is answered with a PONG; a PING
 * carrying a TTL makes this side close the connection once nothing has arrived for that long (the peer
 * asked to be dropped when it goes quiet: stopped, or the network between is down, which TCP alone
 * notices only after many minutes). With `heartbeat` set, this side pings too and closes the connection
 * when nothing arrives for `timeoutMs`. With `probe` set (the MPC's ports), a peer that greets as ZMTP
 * 3.1 (libzmq 4.2 and later, which answers every PING by itself) is pinged likewise until its own PINGs
 * bring a TTL: publishers that never ping (pyzmq's defaults, the original TORMQ's) and peers whose host
 * vanished are no longer held for ever. A 3.0 peer is never pinged: libzmq 4.1 does not know PING.
 */
import type net from 'node:net';
import { appendGrowing } from '../append-growing.js';

const GREETING_BYTES = 64;
const EMPTY = Buffer.alloc(0);
const FLAG_MORE = 1;
const FLAG_LONG = 2;
const FLAG_COMMAND = 4;
const MAX_COMMAND_BYTES = 64 * 1024;
/** libzmq's default ZMQ_HANDSHAKE_IVL. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** The smallest buffer allocated for input spanning reads. */
const MIN_HELD_BYTES = 4096;

/**
 * Our greeting: signature, version 3.0, NULL, not as-server. 3.0 rather than 3.1 so that libzmq peers
 * send subscriptions as messages (`0x01 prefix`), the one form older peers know too.
 */
const GREETING = (() => {
  const g = Buffer.alloc(GREETING_BYTES);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 0;
  g.write('NULL', 12, 'latin1');
  return g;
})();

export type UnreadReason = 'bad_frames' | 'oversized';

export interface ZmtpPeerOptions {
  /** Our socket type, sent in READY. */
  readonly socketType: 'SUB' | 'XPUB' | 'XSUB';
  /** Socket types we talk to (others are refused at the handshake, as libzmq does). */
  readonly peerTypes: readonly string[];
  readonly maxFrameBytes: number;
  /** Parts kept per message; a message with more is skipped (`bad_frames`). */
  readonly maxParts: number;
  /** We connected (the gateway's link): the rest of our greeting goes as soon as the peer's signature is read. */
  readonly connecting?: boolean;
  /** Ping every `intervalMs` once the handshake is done, asking the peer to close after `ttlMs` without traffic; close after `timeoutMs` without any (heartbeatEvery; null or absent: none). */
  readonly heartbeat?: ZmtpHeartbeat | null;
  /** The accepting side's heartbeat for a ZMTP 3.1 peer that does not ping with a TTL itself (probeEvery: its PINGs ask for no TTL). */
  readonly probe?: ZmtpHeartbeat | null;
}

export interface ZmtpHeartbeat {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly ttlMs: number;
}

/** A link with nothing from its peer for this many heartbeat intervals is closed (libzmq's ZMQ_HEARTBEAT_TIMEOUT). */
const HEARTBEAT_TIMEOUT_INTERVALS = 5;
/** The peer drops us after this many intervals without a word (ZMQ_HEARTBEAT_TTL, sent in each PING). */
const HEARTBEAT_TTL_INTERVALS = 10;

/** tormq's heartbeat for a PING every `intervalMs` (null: off), for its ZMTP code and libzmq's sockets alike. */
export function heartbeatEvery(intervalMs: number): ZmtpHeartbeat | null {
  return intervalMs > 0 ? { intervalMs, timeoutMs: HEARTBEAT_TIMEOUT_INTERVALS * intervalMs, ttlMs: HEARTBEAT_TTL_INTERVALS * intervalMs } : null;
}

/** The MPC's heartbeat for peers that do not ping it (`probe`): as heartbeatEvery, but its PINGs ask for no TTL. */
export function probeEvery(intervalMs: number): ZmtpHeartbeat | null {
  const heartbeat = heartbeatEvery(intervalMs);
  return heartbeat === null ? null : { ...heartbeat, ttlMs: 0 };
}

/** libzmq's socket options for `heartbeat` (none when null). */
export function libzmqHeartbeat(heartbeat: ZmtpHeartbeat | null): { heartbeatInterval?: number; heartbeatTimeout?: number; heartbeatTimeToLive?: number } {
  return heartbeat === null ? {} : { heartbeatInterval: heartbeat.intervalMs, heartbeatTimeout: heartbeat.timeoutMs, heartbeatTimeToLive: heartbeat.ttlMs };
}

/** A peer's PING TTL is in tenths of a second (16 bits). */
const TTL_UNIT_MS = 100;
/** A TTL asked for by the peer is checked this many times within it, but not more often than every MIN_WATCH_MS. */
const TTL_CHECKS = 4;
const MIN_WATCH_MS = 100;
/** A PING's context is at most 16 bytes (ZMTP 3.1). */
const MAX_PING_CONTEXT_BYTES = 16;
/** PONGs are not written while this much waits in the socket (the peer is not reading them). */
const MAX_PONG_BACKLOG_BYTES = 64 * 1024;

export interface ZmtpPeerHandlers {
  /** The handshake is done: traffic may flow both ways. */
  ready(): void;
  /**
   * A whole message (every part at most `maxFrameBytes`, at most `maxParts` parts). The parts are views
   * of the read buffer: a handler that keeps one past the call keeps a copy, as a view would pin the
   * whole read buffer (up to 64 KB) for a 100-byte message.
   */
  message(frames: Buffer[]): void;
  /** A message that was skipped rather than read: too many parts, or a part over `maxFrameBytes`. */
  unread(reason: UnreadReason, bytes: number): void;
  /**
   * The connection was closed because the peer is not what we talk to, or broke the protocol;
   * `mechanism` when it is the security mechanism that differs (a CURVE peer: libzmq's
   * ERR_ZMTP_MECHANISM_MISMATCH).
   */
  refused(why: string, mechanism?: boolean): void;
  /** Nothing arrived for `ms` (our heartbeat timeout, or the TTL the peer asked for): the connection was closed. */
  silent?(ms: number): void;
}

const enum State {
  Greeting,
  Handshake,
  Traffic,
  /** Refused: whatever still arrives is ignored. */
  Closed,
}

export class ZmtpPeer {
  private state = State.Greeting;
  /**
   * Unparsed bytes, `pending[0, buffered)`: the rest of a read that did not complete a frame (a view of
   * it, exactly that long), or, once more reads are needed, a buffer of our own that grows by doubling
   * up to the frame's size (append-growing.ts: not a list of the reads).
   */
  private pending: Buffer = EMPTY;
  private buffered = 0;
  /** Bytes the buffer must hold (from its start) before parsing can go on. */
  private need: number;
  /** Our greeting past its first 11 bytes has been sent. */
  private restSent = false;
  /** Bytes of the current frame still to skip, and whether its message goes on after it. */
  private skip = 0;
  private skipMore = false;
  private parts: Buffer[] = [];
  private partCount = 0;
  private messageBytes = 0;
  private unreadReason: UnreadReason | null = null;
  private readonly timer: NodeJS.Timeout;
  /** Something arrived since the silence watch last looked (one store per read: the hot path's only cost). */
  private heard = false;
  private silentMs = 0;
  private watch: NodeJS.Timeout | null = null;
  /** The TTL (ms) the peer's PINGs asked for, and being watched. */
  private peerTtlMs = 0;
  /** The context of the last PING of the read being parsed, answered once it is parsed (see `pong`). */
  private pongContext: Buffer | null = null;
  /** The ZMTP minor version of the peer's greeting (1: it knows PING). */
  private peerMinor = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: ZmtpPeerOptions,
    private readonly handlers: ZmtpPeerHandlers,
  ) {
    // The accepting side reads the whole greeting before it sends the rest of its own (see below).
    this.need = options.connecting === true ? 11 : GREETING_BYTES;
    this.timer = setTimeout(() => this.refuse('no ZMTP handshake within 30 s'), HANDSHAKE_TIMEOUT_MS);
    this.timer.unref();
    // Signature and major version first, the rest once the peer's greeting is read: libzmq, like us,
    // sends its security mechanism only after seeing ours begin, and hangs up silently on a mismatch
    // once it has ours, so a CURVE peer would otherwise vanish unexplained.
    socket.write(GREETING.subarray(0, 11));
  }

  /** The handshake is done. */
  get ready(): boolean {
    return this.state === State.Traffic;
  }

  data(chunk: Buffer): void {
    if (this.state === State.Closed) return;
    this.heard = true;
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      this.messageBytes += n;
      chunk = chunk.subarray(n);
      if (this.skip === 0) {
        this.need = 2;
        this.endPart(this.skipMore);
      }
      if (chunk.length === 0) return;
    }
    let buf: Buffer;
    if (this.buffered === 0) {
      // The hot path: the read is parsed in place, its messages handed over as views of it.
      buf = chunk;
      if (chunk.length < this.need) {
        this.keep(chunk);
        return;
      }
    } else {
      // A view kept by `keep` is exactly `buffered` long, so any read lands in a new buffer: never in
      // bytes that messages already handed over may still view.
      this.pending = appendGrowing(this.pending, this.buffered, chunk, this.need, MIN_HELD_BYTES);
      this.buffered += chunk.length;
      if (this.buffered < this.need) return;
      buf = this.pending.subarray(0, this.buffered);
    }
    const at = this.parse(buf);
    if (at < buf.length && !this.socket.destroyed) this.keep(buf.subarray(at));
    else this.keep(EMPTY);
    if (this.pongContext !== null) this.pong();
  }

  /**
   * One PONG for the PINGs of a read, and none while PONGs already wait in the socket: a peer that
   * sends PINGs and never reads made every 11-byte PING a write held in memory (30 MB of PINGs grew
   * the MPC by 1.2 GB, /tmp pingflood). A heartbeat needs only the latest answer.
   */
  private pong(): void {
    const context = this.pongContext!;
    this.pongContext = null;
    if (this.state === State.Traffic && !this.socket.destroyed && this.socket.writableLength < MAX_PONG_BACKLOG_BYTES) this.socket.write(command('PONG', context));
  }

  /** Bytes of memory held for unparsed input (at most twice what is unparsed, or 4 KB). */
  get heldBytes(): number {
    return this.pending.length;
  }

  /** Holds `rest` as it is (see `pending`). */
  private keep(rest: Buffer): void {
    this.pending = rest;
    this.buffered = rest.length;
  }


  close(): void {
    clearTimeout(this.timer);
    if (this.watch !== null) clearInterval(this.watch);
    this.watch = null;
  }

  /**
   * Every `everyMs`: a PING if we send heartbeats, and the connection closed once nothing has arrived
   * for `limitMs`. What arrived while this thread was busy (a long GC, a burst) is read before judging:
   * the verdict waits one pass of the event loop's I/O (setImmediate runs after it).
   */
  private watchSilence(everyMs: number, limitMs: number, ping: Buffer | null): void {
    if (this.watch !== null) clearInterval(this.watch);
    this.heard = false;
    this.silentMs = 0;
    this.watch = setInterval(() => {
      if (ping !== null && !this.socket.destroyed) this.socket.write(ping);
      if (this.heard) {
        this.heard = false;
        this.silentMs = 0;
        return;
      }
      this.silentMs += everyMs;
      if (this.silentMs < limitMs) return;
      setImmediate(() => {
        if (this.heard || this.state === State.Closed) return;
        this.shut();
        this.socket.destroy();
        this.handlers.silent?.(this.silentMs);
      });
    }, everyMs);
    this.watch.unref();
  }

  /** Parses frames from `buf`; returns where parsing stopped (sets `need`, or `skip` for a frame being skipped). */
  private parse(buf: Buffer): number {
    let at = 0;
    const end = buf.length;
    if (this.state === State.Greeting) {
      if (buf[0] !== 0xff || (buf[9]! & 1) !== 1) return this.refuse('not a ZMTP 3 peer (bad signature)');
      if (buf[10]! < 3) return this.refuse(`ZMTP ${buf[10]}.x peer: version 3 or later needed`);
      if (!this.restSent && this.options.connecting === true) {
        // The connecting side goes on once it has seen the peer's signature and version, as libzmq
        // does (two peers that both waited for the other's whole greeting would wait forever).
        this.socket.write(GREETING.subarray(11));
        this.restSent = true;
      }
      if (end < GREETING_BYTES) return this.wait(0, GREETING_BYTES);
      this.peerMinor = buf[10]! > 3 ? 0xff : buf[11]!;
      const mechanism = buf.toString('latin1', 12, 32).replace(/\0+$/, '');
      if (mechanism !== 'NULL') {
        // The rest of our greeting first, as libzmq does: a libzmq peer then sees the mismatch and says
        // so (its ERR_ZMTP_MECHANISM_MISMATCH event; the gateway's link monitor names the cause).
        return this.refuse(`security mechanism ${mechanism}: this side is plain (NULL); CURVE must be configured on both sides`, this.restSent ? EMPTY : GREETING.subarray(11), true);
      }
      const ready = command('READY', property('Socket-Type', this.options.socketType));
      this.socket.write(this.restSent ? ready : Buffer.concat([GREETING.subarray(11), ready]));
      this.restSent = true;
      this.state = State.Handshake;
      at = GREETING_BYTES;
    }
    while (at < end) {
      if (end - at < 2) return this.wait(at, 2);
      const flags = buf[at]!;
      let headerBytes = 2;
      let size: number;
      if ((flags & FLAG_LONG) !== 0) {
        if (end - at < 9) return this.wait(at, 9);
        headerBytes = 9;
        const big = buf.readBigUInt64BE(at + 1);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) return this.refuse('frame size out of range');
        size = Number(big);
      } else {
        size = buf[at + 1]!;
      }
      if ((flags & FLAG_COMMAND) !== 0) {
        if (size > MAX_COMMAND_BYTES) return this.refuse(`command of ${size} bytes`);
        if (end - at < headerBytes + size) return this.wait(at, headerBytes + size);
        if (!this.command(buf.subarray(at + headerBytes, at + headerBytes + size))) return end;
        at += headerBytes + size;
        continue;
      }
      if (this.state !== State.Traffic) return this.refuse('message before the handshake');
      const more = (flags & FLAG_MORE) !== 0;
      const tooMany = this.partCount >= this.options.maxParts;
      if (tooMany || size > this.options.maxFrameBytes) {
        // Skipped as it streams past: never held.
        this.unreadReason = tooMany || this.unreadReason === 'bad_frames' ? 'bad_frames' : 'oversized';
        at += headerBytes;
        const available = end - at;
        if (available >= size) {
          this.messageBytes += size;
          at += size;
          this.endPart(more);
          continue;
        }
        this.messageBytes += available;
        this.skip = size - available;
        this.skipMore = more;
        this.need = 0;
        return end;
      }
      if (end - at < headerBytes + size) return this.wait(at, headerBytes + size);
      if (this.unreadReason === null) {
        const start = at + headerBytes;
        this.parts.push(buf.subarray(start, start + size));
      }
      this.messageBytes += size;
      at += headerBytes + size;
      this.endPart(more);
    }
    this.need = 2;
    return at;
  }

  private wait(at: number, frameBytes: number): number {
    this.need = frameBytes;
    return at;
  }

  private endPart(more: boolean): void {
    this.partCount++;
    if (more) return;
    if (this.unreadReason !== null) this.handlers.unread(this.unreadReason, this.messageBytes);
    else this.handlers.message(this.parts);
    this.parts = [];
    this.partCount = 0;
    this.messageBytes = 0;
    this.unreadReason = null;
  }

  /** Handles a command; false when the connection was closed. */
  private command(body: Buffer): boolean {
    const nameLength = body[0] ?? 0;
    const name = body.toString('latin1', 1, 1 + nameLength);
    const data = body.subarray(1 + nameLength);
    if (name === 'READY' && this.state === State.Handshake) {
      const type = readProperties(data).get('socket-type');
      if (type === undefined || !this.options.peerTypes.includes(type)) {
        this.refuse(`a ${type ?? 'peer without Socket-Type'} cannot talk to a ${this.options.socketType}`);
        return false;
      }
      this.state = State.Traffic;
      clearTimeout(this.timer);
      const heartbeat = this.options.heartbeat ?? (this.peerMinor >= 1 ? this.options.probe : null);
      if (heartbeat != null) {
        const ttl = Math.min(0xffff, Math.floor(heartbeat.ttlMs / TTL_UNIT_MS));
        this.watchSilence(heartbeat.intervalMs, heartbeat.timeoutMs, command('PING', Buffer.from([ttl >> 8, ttl & 0xff])));
      }
      this.handlers.ready();
    } else if (name === 'PING' && this.state === State.Traffic) {
      // Heartbeat (ZMTP 3.1 peers with ZMQ_HEARTBEAT_IVL): answered with its context (see `pong`). Its
      // TTL asks us to drop the connection once the peer goes quiet that long (watched unless we ping
      // with `heartbeat`; it replaces a `probe`, which then stops pinging).
      this.pongContext = Buffer.from(data.subarray(2, 2 + MAX_PING_CONTEXT_BYTES));
      const ttlMs = data.length >= 2 ? data.readUInt16BE(0) * TTL_UNIT_MS : 0;
      if (ttlMs > 0 && ttlMs !== this.peerTtlMs && this.options.heartbeat == null) {
        this.peerTtlMs = ttlMs;
        this.watchSilence(Math.max(MIN_WATCH_MS, Math.ceil(ttlMs / TTL_CHECKS)), ttlMs, null);
      }
    } else if ((name === 'SUBSCRIBE' || name === 'CANCEL') && this.state === State.Traffic) {
      // ZMTP 3.1's form of a subscription: handed over as the 3.0 message it stands for.
      const message = Buffer.allocUnsafe(1 + data.length);
      message[0] = name === 'SUBSCRIBE' ? 1 : 0;
      data.copy(message, 1);
      this.handlers.message([message]);
    } else if (name === 'ERROR') {
      this.refuse(`peer error: ${data.toString('latin1', 1, 1 + (data[0] ?? 0))}`);
      return false;
    } else if (this.state !== State.Traffic) {
      this.refuse(`unexpected ${name} command during the handshake`);
      return false;
    }
    return true;
  }

  /** Closes the connection (after writing `last`, if given) and reports why. */
  private refuse(why: string, last?: Buffer, mechanism = false): number {
    const open = this.shut();
    if (open) {
      if (last === undefined) this.socket.destroy();
      else {
        this.socket.end(last);
        setTimeout(() => this.socket.destroy(), 1000).unref();
      }
      this.handlers.refused(why, mechanism);
    }
    return Number.MAX_SAFE_INTEGER;
  }

  /** Stops parsing and the timers; whatever still arrives is ignored. True when the socket was still open. */
  private shut(): boolean {
    this.close();
    this.state = State.Closed;
    this.need = Number.MAX_SAFE_INTEGER;
    return !this.socket.destroyed;
  }
}

const SHORT_HEADERS = Array.from({ length: 256 }, (_, size) => Buffer.from([0, size]));

/** The header of a (last-part) message frame of `size` bytes: the short form below 256. */
export function frameHeader(size: number): Buffer {
  if (size < 256) return SHORT_HEADERS[size]!;
  const header = Buffer.allocUnsafe(9);
  header[0] = FLAG_LONG;
  header.writeBigUInt64BE(BigInt(size), 1);
  return header;
}

/**
 * Message frames queued for one socket and written together: each `write` is a system call and a
 * wake-up of the reader, so what one turn of the event loop sends leaves in one.
 */
export class FrameQueue {
  private parts: Buffer[] = [];
  /** Bytes queued, headers included. */
  bytes = 0;

  /** Queues `frame` (its header may be given, when one frame goes to several queues). */
  add(frame: Buffer, header = frameHeader(frame.length)): void {
    this.parts.push(header, frame);
    this.bytes += header.length + frame.length;
  }

  /** What is queued, as one buffer; the queue is left empty. */
  take(): Buffer {
    const bytes = Buffer.concat(this.parts, this.bytes);
    this.clear();
    return bytes;
  }

  clear(): void {
    this.parts = [];
    this.bytes = 0;
  }
}

/** A trigger that runs `flush` at the end of the current turn, once however often it is pulled before. */
export function endOfTurn(flush: () => void): () => void {
  let scheduled = false;
  const run = (): void => {
    scheduled = false;
    flush();
  };
  return () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(run);
  };
}

/** Listens on host:port with a `net` server (0: any free port); resolves with the port. */
export function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/**
 * TCP keepalive on an accepted connection: the backstop for peers no PING reaches (ZMTP 3.0, or
 * --peer-heartbeat-ms 0), whose host may vanish without a FIN. The kernel probes after a minute idle
 * (then every tcp_keepalive_intvl, 75 s by default on Linux, up to tcp_keepalive_probes, 9).
 */
export function keepAlive(socket: net.Socket): void {
  socket.setKeepAlive(true, 60_000);
}

function command(name: string, data: Buffer): Buffer {
  const size = 1 + name.length + data.length;
  const long = size > 255;
  const frame = Buffer.alloc((long ? 9 : 2) + size);
  frame[0] = FLAG_COMMAND | (long ? FLAG_LONG : 0);
  let at = 1;
  if (long) {
    frame.writeBigUInt64BE(BigInt(size), 1);
    at = 9;
  } else {
    frame[at++] = size;
  }
  frame[at++] = name.length;
  frame.write(name, at, 'latin1');
  data.copy(frame, at + name.length);
  return frame;
}

function property(name: string, value: string): Buffer {
  const p = Buffer.alloc(1 + name.length + 4 + value.length);
  p[0] = name.length;
  p.write(name, 1, 'latin1');
  p.writeUInt32BE(value.length, 1 + name.length);
  p.write(value, 5 + name.length, 'latin1');
  return p;
}

/** ZMTP metadata: names are case-insensitive (lower-cased here). Malformed trailing bytes are ignored. */
function readProperties(data: Buffer): Map<string, string> {
  const properties = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const nameLength = data[at]!;
    if (at + 1 + nameLength + 4 > data.length) break;
    const name = data.toString('latin1', at + 1, at + 1 + nameLength).toLowerCase();
    const valueLength = data.readUInt32BE(at + 1 + nameLength);
    const valueStart = at + 5 + nameLength;
    if (valueStart + valueLength > data.length) break;
    properties.set(name, data.toString('latin1', valueStart, valueStart + valueLength));
    at = valueStart + valueLength;
  }
  return properties;
}
