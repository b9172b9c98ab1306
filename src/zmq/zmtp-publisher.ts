/**
 * The MPC's gateway port served without libzmq: a ZMTP 3.0 XPUB endpoint (NULL security) on a plain
 * `net` server. Gateways keep their libzmq XSUB (zeromq.js) and see an ordinary XPUB.
 *
 * Why: zeromq.js's send costs the MPC about 10 µs per frame (a readiness check, which libzmq answers
 * with a poll() and a getpid() system call, then a hand-over to libzmq's I/O thread, which wakes up
 * to write): `node dist/bench/zmq-frames.js`, and in a V8 profile of the MPC at 10k unicast msgs/s,
 * `send` was 13 µs of the main thread's ≈ 17 µs per message, plus ≈ 3 µs in the I/O thread. Here
 * the frames of one turn of the event loop leave in one `write` per gateway.
 *
 * What libzmq's XPUB did, this does (with `verbosity: 'allSubs'`, as the MPC had it):
 * - every subscription a gateway sends is handed to the MPC (a repeated one too: each is confirmed);
 *   an unsubscription only once no gateway holds the key any more, and when a gateway's connection
 *   ends, an unsubscription for each key only it held (how the MPC learns a gateway is gone);
 * - any other message a gateway sends is handed over as is (requests, presence reports);
 * - a frame goes to every gateway subscribed to a key it matches (`keysOf`), in the order sent;
 * - past a gateway's high-water mark frames are dropped for it and counted (the gateway sees the
 *   offsets skip and repairs from history, as it did after libzmq's drops).
 *
 * Matching: libzmq matches any prefix; here a frame travels under the keys of the link's format only
 * (zmq/gateway-link.ts `linkKeys`: a topic exactly, a root's subtree, a gateway's private key), which
 * is all a gateway subscribes. Anything else a gateway subscribes is held but matches nothing (the MPC
 * counts it as a bad gateway frame).
 *
 * Bounded: a gateway's queue (bytes handed to its socket and not yet written) is at most
 * `maxQueuedBytes`; a frame from a gateway over `maxFrameBytes` is skipped as it streams past
 * (zmtp-peer.ts), and so is a message of more than one part; a gateway holds at most
 * MAX_KEYS_PER_GATEWAY keys.
 */
import net from 'node:net';
import type { ConnectionBudget } from '../descriptors.js';
import { REQUEST } from './gateway-link.js';
import { endOfTurn, FrameQueue, frameHeader, keepAlive, listenOn, ZmtpPeer, type UnreadReason, type ZmtpHeartbeat } from './zmtp-peer.js';

export interface ZmtpPublisherHandlers {
  /** A subscription, an unsubscription (see above) or another message from a gateway: one frame. */
  message(frame: Buffer): void;
  /** A message from a gateway skipped rather than read (too large, more than one part, a key too many). */
  unread(reason: UnreadReason): void;
  /** A connection closed at the handshake: not a ZMTP 3 SUB/XSUB with NULL security, or a protocol break. */
  refused(address: string, why: string): void;
  /** A gateway went quiet past the TTL its PINGs asked for, or left our PINGs unanswered (`probe`): its connection was closed. */
  silent(address: string, ms: number): void;
  /** All gateways together held more than `limit` bytes: this one, holding the most, was closed. */
  overTotal(address: string, limit: number): void;
}

export interface ZmtpPublisherOptions {
  /** Largest frame a gateway may send (presence snapshots are the largest, about 1 MB). */
  readonly maxFrameBytes: number;
  /** Bytes queued for one gateway past which frames to it are dropped (its high-water mark). */
  readonly maxQueuedBytes: number;
  /** Bytes queued for all gateways together: past it, the connection holding the most is closed. */
  readonly maxTotalQueuedBytes: number;
  /** The keys a frame travels under (at most two; `out` is reused); see zmq/gateway-link.ts. */
  readonly keysOf: (frame: Buffer, out: string[]) => number;
  /** Connections past this port's budget are closed as they are accepted (src/descriptors.ts). */
  readonly budget?: ConnectionBudget;
  /** Pings gateways that do not ping (zmtp-peer.ts `probe`). */
  readonly probe?: ZmtpHeartbeat | null;
}

class Subscriber {
  /** Keys this gateway subscribed (latin1 strings of their bytes). */
  readonly keys = new Set<string>();
  /** Frames waiting for this turn's write. */
  readonly queue = new FrameQueue();
  /** Bytes counted for this gateway in ZmtpPublisher.queuedBytes (as of when they were last counted). */
  counted = 0;

  constructor(
    readonly socket: net.Socket,
    readonly address: string,
    /** A write to this gateway completed (its bytes left the socket buffer). */
    readonly written: () => void,
  ) {}
}

/**
 * Keys one gateway may hold (a gateway subscribes two per root, and its --max-topics is 250,000 by
 * default); a subscription past it is refused as a bad frame, so no peer grows the MPC without bound.
 */
const MAX_KEYS_PER_GATEWAY = 1 << 20;

export class ZmtpPublisher {
  /** Frames not sent to a gateway because its queue was full. */
  dropped = 0;
  /** Gateway connections closed because all together held more than maxTotalQueuedBytes (see cutLargest). */
  cutOverTotal = 0;
  /** Requests not handed on because their gateway had half its queue unread (see `received`). */
  requestsSkipped = 0;
  /**
   * Bytes queued for all gateways: each gateway's queue and socket buffer as last counted (when a
   * frame is sent to it, and when its writes complete), so at most an overestimate.
   */
  queuedBytes = 0;
  private readonly server: net.Server;
  private readonly subscribers = new Set<Subscriber>();
  /** How many gateways hold each key. */
  private readonly holders = new Map<string, number>();
  private readonly keys: string[] = [];
  /** Subscribers with queued frames. */
  private readonly toWrite: Subscriber[] = [];
  private closed = false;

  constructor(
    private readonly options: ZmtpPublisherOptions,
    private readonly handlers: ZmtpPublisherHandlers,
  ) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Listens on host:port (0: any free port); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  /** Connected gateways (handshake done or not). */
  get connections(): number {
    return this.subscribers.size;
  }

  /** Sends `frame` to every gateway subscribed to one of its keys; it leaves at the end of this turn. */
  send(frame: Buffer): void {
    if (this.subscribers.size === 0) return;
    const keys = this.keys;
    const count = this.options.keysOf(frame, keys);
    let header: Buffer | null = null;
    for (const subscriber of this.subscribers) {
      let matched = false;
      for (let i = 0; i < count && !matched; i++) matched = subscriber.keys.has(keys[i]!);
      if (!matched) continue;
      header ??= frameHeader(frame.length);
      const bytes = header.length + frame.length;
      const held = this.recount(subscriber);
      if (held + bytes > this.options.maxQueuedBytes) {
        this.dropped++;
        continue;
      }
      if (subscriber.queue.bytes === 0) this.toWrite.push(subscriber);
      subscriber.queue.add(frame, header);
      subscriber.counted += bytes;
      this.queuedBytes += bytes;
      if (this.queuedBytes > this.options.maxTotalQueuedBytes) this.cutLargest();
    }
    if (this.toWrite.length > 0) this.flushAtEndOfTurn();
  }

  close(): Promise<void> {
    this.closed = true;
    for (const subscriber of this.subscribers) subscriber.socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /**
   * All gateways together hold more than maxTotalQueuedBytes: the connection holding the most is
   * closed (its queue and socket buffer go with it; a real gateway reconnects and repairs from
   * history). Each connection may hold maxQueuedBytes and up to 256 may be open: peers on the gateway
   * port asking for history pages (4 MB answers to 100-byte requests) and never reading held 32 MB a
   * connection; 20 of them grew the MPC by 712 MB (/tmp historyflood.mjs).
   */
  private cutLargest(): void {
    let largest: Subscriber | null = null;
    for (const subscriber of this.subscribers) {
      this.recount(subscriber);
      if (largest === null || subscriber.counted > largest.counted) largest = subscriber;
    }
    if (largest === null || this.queuedBytes <= this.options.maxTotalQueuedBytes) return;
    this.cutOverTotal++;
    // Its bytes go now; its keys when its socket has closed (releasing one reaches GatewayControl,
    // which must not run inside this send).
    this.subscribers.delete(largest);
    this.discard(largest);
    largest.socket.destroy();
    this.handlers.overTotal(largest.address, this.options.maxTotalQueuedBytes);
  }

  /** What `subscriber` holds goes, uncounted. */
  private discard(subscriber: Subscriber): void {
    subscriber.queue.clear();
    this.queuedBytes -= subscriber.counted;
    subscriber.counted = 0;
  }

  /** `subscriber` has closed: what it held and its keys. */
  private forget(subscriber: Subscriber): void {
    this.discard(subscriber);
    for (const key of subscriber.keys) this.release(key);
    subscriber.keys.clear();
  }

  /** What `subscriber` holds now (queue and socket buffer), brought up to date in queuedBytes. */
  private recount(subscriber: Subscriber): number {
    const held = subscriber.socket.writableLength + subscriber.queue.bytes;
    this.queuedBytes += held - subscriber.counted;
    subscriber.counted = held;
    return held;
  }

  /** One write per gateway for everything sent this turn; counted again once written. */
  private readonly flushAtEndOfTurn = endOfTurn(() => {
    const subscribers = this.toWrite;
    for (let i = 0; i < subscribers.length; i++) {
      const subscriber = subscribers[i]!;
      const bytes = subscriber.queue.take();
      if (!subscriber.socket.destroyed) subscriber.socket.write(bytes, subscriber.written);
    }
    subscribers.length = 0;
  });

  private accept(socket: net.Socket): void {
    if (this.options.budget !== undefined && !this.options.budget.admit(socket)) return;
    const subscriber: Subscriber = new Subscriber(socket, `${socket.remoteAddress}:${socket.remotePort}`, () => this.recount(subscriber));
    this.subscribers.add(subscriber);
    // Frames are written as soon as they are sent: Nagle would hold a lone message back.
    socket.setNoDelay(true);
    keepAlive(socket);
    const peer = new ZmtpPeer(socket, { socketType: 'XPUB', peerTypes: ['SUB', 'XSUB'], maxFrameBytes: this.options.maxFrameBytes, maxParts: 1, probe: this.options.probe }, {
      ready: () => this.options.budget?.established(socket),
      message: (frames) => this.received(subscriber, frames[0]!),
      unread: (reason) => this.handlers.unread(reason),
      refused: (why) => this.handlers.refused(subscriber.address, why),
      silent: (ms) => this.handlers.silent(subscriber.address, ms),
    });
    socket.on('data', (chunk: Buffer) => peer.data(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      peer.close();
      this.subscribers.delete(subscriber);
      this.forget(subscriber);
    });
  }

  private received(subscriber: Subscriber, frame: Buffer): void {
    const type = frame.length > 0 ? frame[0] : -1;
    if (type === 1) {
      const key = frame.toString('latin1', 1);
      if (!subscriber.keys.has(key)) {
        if (subscriber.keys.size >= MAX_KEYS_PER_GATEWAY) {
          this.handlers.unread('bad_frames');
          return;
        }
        subscriber.keys.add(key);
        this.holders.set(key, (this.holders.get(key) ?? 0) + 1);
      }
      this.handlers.message(frame);
    } else if (type === 0) {
      const key = frame.toString('latin1', 1);
      if (subscriber.keys.delete(key)) this.release(key);
    } else if (type === REQUEST && this.recount(subscriber) * 2 >= this.options.maxQueuedBytes) {
      // A gateway with half its queue unread gets no more answers until it reads: an answer is up to
      // 4 MB of history copied for a request of 100 bytes, and would only be dropped. A real gateway
      // asks again after its request timeout (2 s).
      this.requestsSkipped++;
    } else {
      this.handlers.message(frame);
    }
  }

  /** One gateway no longer holds `key`: the MPC hears of it when no gateway does. */
  private release(key: string): void {
    const left = (this.holders.get(key) ?? 1) - 1;
    if (left > 0) {
      this.holders.set(key, left);
      return;
    }
    this.holders.delete(key);
    if (!this.closed) this.handlers.message(Buffer.concat([Buffer.from([0]), Buffer.from(key, 'latin1')]));
  }
}
