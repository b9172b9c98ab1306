/**
 * The gateway's end of the MPC link without libzmq: a ZMTP 3.0 XSUB client (NULL security) on plain
 * `net` sockets, one per MPC endpoint. The MPC sees an ordinary XSUB (its own ZMTP XPUB,
 * zmtp-publisher.ts, or libzmq's).
 *
 * Why: through zeromq.js every frame from the MPC crossed libzmq's I/O thread (a wake-up) and then
 * cost the main thread a receive with its readiness checks (`node dist/bench/zmq-frames.js`: 12.3 µs per
 * received one-message frame; per thread at 10k unicast msgs/s the gateway's I/O thread cost 4 µs and
 * its main thread 11 µs per message). Here one `data` event hands over everything one TCP read brought,
 * parsed in place.
 *
 * What libzmq's XSUB did, this does:
 * - subscriptions (`0x01 key`) are counted per key and always sent; an unsubscription (`0x00 key`) is
 *   sent when the last of a key's subscriptions is cancelled; every key is sent again whenever a link
 *   (re)connects;
 * - other messages go to every MPC; to one whose link is down they wait (up to `maxQueuedBytes`) and
 *   leave after the subscriptions once it is up;
 * - a link that fails is dialled again after 100 ms, doubling up to 2 s;
 * - socket events as libzmq reports them (`connect:delay`, `connect`, `close`, `connect:retry`,
 *   `handshake`, `handshake:error:protocol`, `disconnect`), which the link monitor reads to say why a
 *   link stays down;
 * - heartbeats (ZMQ_HEARTBEAT_IVL / _TIMEOUT / _TTL), when configured.
 *
 * Bounded: a frame from an MPC over `maxFrameBytes` is skipped as it streams past (zmtp-peer.ts), as
 * is a message of more than one part (`unread`); what waits for an MPC is at most `maxQueuedBytes`,
 * past which messages to it are dropped and counted (subscriptions are sent again on reconnect, and
 * the gateway resends unconfirmed ones).
 */
import net from 'node:net';
import { endOfTurn, FrameQueue, frameHeader, ZmtpPeer, type ZmtpHeartbeat } from './zmtp-peer.js';

/** A socket event, shaped as zeromq.js reports them (the fields the link monitor reads). */
export interface LinkEvent {
  readonly type: string;
  readonly address?: string;
  readonly error?: { readonly code?: string; readonly status?: number; readonly message?: string };
}

export interface ZmtpXsubHandlers {
  /** One frame from an MPC (a view of the read buffer: copy what is kept past the call). */
  frame(frame: Buffer): void;
  /** Everything one read brought has been handed over. */
  dry(): void;
  /** A message from an MPC skipped rather than read (too large, or more than one part). */
  unread(): void;
  event(event: LinkEvent): void;
}

export interface ZmtpXsubOptions {
  readonly maxFrameBytes: number;
  /** Bytes that may wait for one MPC (written to its socket and not yet sent, or waiting for its link). */
  readonly maxQueuedBytes: number;
  /** PINGs on each link, which is closed (`disconnect`, then dialled again) when its MPC goes quiet; null: none. */
  readonly heartbeat: ZmtpHeartbeat | null;
}

const RECONNECT_MS = 100;
const RECONNECT_MAX_MS = 2000;
const UNRESOLVED = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME']);

class Link {
  socket: net.Socket | null = null;
  up = false;
  /** Frames waiting: for this turn's write while up, for the link while down. */
  readonly queue = new FrameQueue();
  delay = RECONNECT_MS;
  timer: NodeJS.Timeout | null = null;

  constructor(
    readonly endpoint: string,
    readonly host: string,
    readonly port: number,
  ) {}
}

export class ZmtpXsub {
  /** Messages not sent to an MPC because too much was waiting for it. */
  dropped = 0;
  /** Subscribed keys (latin1 strings of their bytes), and how many subscriptions each has. */
  private readonly subscriptions = new Map<string, number>();
  private readonly links: Link[] = [];
  private readonly toWrite: Link[] = [];
  private closed = false;

  constructor(
    private readonly options: ZmtpXsubOptions,
    private readonly handlers: ZmtpXsubHandlers,
  ) {}

  /** Links to `tcp://host:port` (an IPv6 host in brackets), dialling again whenever the link fails. */
  connect(endpoint: string): void {
    const rest = endpoint.replace(/^tcp:\/\//, '');
    const colon = rest.lastIndexOf(':');
    const link = new Link(endpoint, rest.slice(0, colon).replace(/^\[|\]$/g, ''), Number(rest.slice(colon + 1)));
    this.links.push(link);
    this.dial(link);
  }

  /** A subscription, an unsubscription or a message for every MPC (see above). */
  send(message: Buffer): void {
    if (this.closed) return;
    const type = message.length > 0 ? message[0] : -1;
    if (type === 1 || type === 0) {
      const key = message.toString('latin1', 1);
      const count = this.subscriptions.get(key) ?? 0;
      if (type === 1) this.subscriptions.set(key, count + 1);
      else if (count === 0) return; // nothing to cancel
      else if (count > 1) {
        this.subscriptions.set(key, count - 1);
        return;
      } else this.subscriptions.delete(key);
      // Links that are down get every subscription again when they come up.
      const header = frameHeader(message.length);
      for (const link of this.links) if (link.up) this.enqueue(link, message, header);
      return;
    }
    const header = frameHeader(message.length);
    for (const link of this.links) this.enqueue(link, message, header);
  }

  /** Ends every link; with `lingerMs`, what was sent is given that long to leave first. */
  async close(lingerMs = 0): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    const deadline = Date.now() + lingerMs;
    const unsent = () => this.links.some((l) => l.up && l.socket !== null && !l.socket.destroyed && l.socket.writableLength > 0);
    while (lingerMs > 0 && unsent() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    for (const link of this.links) {
      if (link.timer !== null) clearTimeout(link.timer);
      link.socket?.destroy();
    }
  }

  private enqueue(link: Link, message: Buffer, header: Buffer): void {
    const inSocket = link.up && link.socket !== null ? link.socket.writableLength : 0;
    if (inSocket + link.queue.bytes + header.length + message.length > this.options.maxQueuedBytes) {
      this.dropped++;
      return;
    }
    const first = link.queue.bytes === 0;
    link.queue.add(message, header);
    if (!link.up || !first) return; // leaves when the link is up, or with what is already queued
    this.toWrite.push(link);
    this.flushAtEndOfTurn();
  }

  /** One write per link for everything sent this turn. */
  private readonly flush = (): void => {
    for (const link of this.toWrite) {
      if (link.up && link.queue.bytes > 0 && link.socket !== null && !link.socket.destroyed) link.socket.write(link.queue.take());
    }
    this.toWrite.length = 0;
  };

  private readonly flushAtEndOfTurn = endOfTurn(this.flush);

  private dial(link: Link): void {
    link.timer = null;
    if (this.closed) return;
    const event = (type: string, error?: LinkEvent['error']) => this.handlers.event({ type, address: link.endpoint, ...(error ? { error } : {}) });
    const socket = net.connect({ host: link.host, port: link.port });
    link.socket = socket;
    socket.setNoDelay(true);
    let connected = false;
    let failure: string | undefined;
    // libzmq's order: the address is resolved, then the (non-blocking) connect is under way.
    if (net.isIP(link.host) !== 0) event('connect:delay');
    else socket.once('lookup', (error) => {
      if (error === null) event('connect:delay');
    });
    socket.on('connect', () => {
      connected = true;
      event('connect');
      const peer = new ZmtpPeer(socket, { socketType: 'XSUB', peerTypes: ['XPUB', 'PUB'], maxFrameBytes: this.options.maxFrameBytes, maxParts: 1, connecting: true, heartbeat: this.options.heartbeat }, {
        ready: () => this.linkUp(link, event),
        message: (frames) => this.handlers.frame(frames[0]!),
        unread: () => this.handlers.unread(),
        refused: (why, mechanism) => event('handshake:error:protocol', { code: mechanism ? 'ERR_ZMTP_MECHANISM_MISMATCH' : 'ERR_ZMTP_PROTOCOL', message: why }),
      });
      socket.on('data', (chunk: Buffer) => {
        peer.data(chunk);
        this.handlers.dry();
      });
      socket.once('close', () => peer.close());
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      failure = error.code;
    });
    socket.on('close', () => {
      if (link.socket === socket) link.socket = null;
      const wasUp = link.up;
      link.up = false;
      if (wasUp) {
        // What was written for this link and not sent is gone with it; later messages wait for the next.
        link.queue.clear();
        event('disconnect');
      } else if (!connected && failure !== undefined && UNRESOLVED.has(failure)) {
        // Not resolved: libzmq says only that it will retry.
      } else event('close');
      if (this.closed) return;
      event('connect:retry');
      link.timer = setTimeout(() => this.dial(link), link.delay);
      link.timer.unref();
      link.delay = Math.min(link.delay * 2, RECONNECT_MAX_MS);
    });
  }

  /** The handshake is done: every subscription, then what waited. */
  private linkUp(link: Link, event: (type: string) => void): void {
    link.up = true;
    link.delay = RECONNECT_MS;
    const subscriptions = new FrameQueue();
    for (const key of this.subscriptions.keys()) subscriptions.add(Buffer.from(`\u0001${key}`, 'latin1'));
    link.socket!.write(Buffer.concat([subscriptions.take(), link.queue.take()]));
    event('handshake');
  }
}
