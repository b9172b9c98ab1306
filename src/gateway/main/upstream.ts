/**
 * The gateway's link to its MPC(s): one XSUB (zmq/gateway-link.ts for the wire) — zeromq.js's
 * XSubscriber, or with `--zmtp-link` on plain TCP tormq's own ZMTP client (zmq/zmtp-xsub.ts). It subscribes
 * to the roots some worker needs (Routing decides), each with two keys: the root exactly and every
 * topic below it — matched by segments, so `ehr` never brings in `ehrx` — each confirmed by the MPC;
 * it sends requests (history, positions) and receives their replies on a private key. ZeroMQ
 * reconnects by itself and sends the subscriptions again when an MPC comes back; the MPC confirms
 * them again.
 *
 * Subscriptions travel on ZeroMQ pipes that drop past their high-water mark, so one may be lost:
 * a key not confirmed within CONFIRM_TIMEOUT_MS while the link is up is sent again (and counted). An
 * unwanted root is unsubscribed UNSUBSCRIBE_DELAY_MS later, so a client flooding subscribe/unsubscribe
 * does not churn subscription traffic through the MPC.
 *
 * A link is watched by ZMTP heartbeats (`--link-heartbeat-ms`): an MPC that stops answering (stopped,
 * hung, its host gone, the network between down) keeps its TCP connection open for many minutes, so
 * without them the link would pass for up: /healthz 200, and with several MPCs every positions request
 * waiting for its retry. Closed after 5 silent intervals (zmtp-peer.ts heartbeatEvery), it shows as down
 * and is dialled again (up again only once an MPC completes the handshake).
 */
import { randomBytes } from 'node:crypto';
import type { XSubscriber } from 'zeromq';
import type { Logger } from '../../log.js';
import { curveClientOptions, type CurveClientKeys } from '../../zmq/curve.js';
import { batchCapability, encodeRequest, GATEWAY_ID_BYTES, privateSubscription, subtreeSubscription, topicSubscription, type LinkRequest } from '../../zmq/gateway-link.js';
import { receiveLoop } from '../../zmq/receive-loop.js';
import { SerialSender } from '../../zmq/serial-sender.js';
import { zeromq } from '../../zmq/zeromq.js';
import { heartbeatEvery, libzmqHeartbeat, type ZmtpHeartbeat } from '../../zmq/zmtp-peer.js';
import { ZmtpXsub, type LinkEvent } from '../../zmq/zmtp-xsub.js';

/** How long a topic stays subscribed upstream after its last subscriber left (see `release`). */
const UNSUBSCRIBE_DELAY_MS = 1000;
/** A subscription the MPC has not confirmed this long after it was sent is sent again. */
const CONFIRM_TIMEOUT_MS = 2000;
const CHECK_INTERVAL_MS = 250;

export interface UpstreamHandlers {
  /** One frame from an MPC (a stream message, a batch of them, a position or a private reply). */
  frame(frame: Buffer): void;
  /** The socket has run dry: what the frames since the last call produced can be passed on. */
  dry?(): void;
  /** The link to `endpoint` went down (messages may have been lost meanwhile; positions will tell). */
  linkDown?(endpoint: string): void;
  /** The unsubscription of `root` went out (it stayed unwanted for the delay). */
  unsubscribed?(root: string): void;
  /**
   * The link to `endpoint` is up again after it was down: perhaps to a restarted MPC, whose streams have
   * new epochs. ZeroMQ sends every subscription again; their confirmations say where the streams are.
   */
  linkReconnected?(endpoint: string): void;
}

/** Where the link's frames come in and go out: libzmq's XSUB or tormq's own ZMTP client. */
interface LinkTransport {
  connect(endpoint: string): void;
  send(frame: Buffer): void;
  /** Hands every frame and socket event over until closed. */
  run(handlers: { frame(frame: Buffer): void; dry?(): void }, onEvent: (event: LinkEvent) => void): Promise<void>;
  /** With `lingerMs`, what was sent last is given that long to leave. */
  close(lingerMs: number): Promise<void>;
}

/** Frames over this are skipped (a history page is at most 4 MB of bodies; a batch 256 KB). */
const MAX_LINK_FRAME_BYTES = 16 * 1024 * 1024;
/** What may wait for one MPC on the ZMTP link (requests and presence reports; ≈ libzmq's HWM of small frames). */
const MAX_LINK_QUEUED_BYTES = 32 * 1024 * 1024;

class LibzmqTransport implements LinkTransport {
  private readonly socket: XSubscriber;
  /**
   * The socket's event observer, made before any connect: libzmq reports events only to an observer
   * that exists when they happen, and a link's `handshake` can come before `run` is called.
   */
  private readonly events: XSubscriber['events'];
  private readonly sender: SerialSender;
  private closed = false;

  constructor(curve: CurveClientKeys | null, highWaterMark: number, heartbeat: ZmtpHeartbeat | null) {
    this.socket = new (zeromq().XSubscriber)({
      receiveHighWaterMark: highWaterMark,
      sendHighWaterMark: highWaterMark,
      reconnectInterval: 100,
      reconnectMaxInterval: 2000,
      linger: 0,
      ...libzmqHeartbeat(heartbeat),
      ...(curve === null ? {} : curveClientOptions(curve)),
    });
    this.sender = new SerialSender(this.socket);
    this.events = this.socket.events;
  }

  connect(endpoint: string): void {
    this.socket.connect(endpoint);
  }

  send(frame: Buffer): void {
    this.sender.send(frame);
  }

  async run(handlers: { frame(frame: Buffer): void; dry?(): void }, onEvent: (event: LinkEvent) => void): Promise<void> {
    void (async () => {
      try {
        for await (const event of this.events) onEvent(event);
      } catch {
        // The observer ends with the socket.
      }
    })();
    try {
      await receiveLoop(this.socket, {
        // The link sends one frame per message; anything else is not from a tormq MPC.
        message: (frames) => {
          if (frames.length === 1) handlers.frame(frames[0]!);
        },
        dry: handlers.dry,
      });
    } catch (error) {
      if (!this.closed) throw error;
    }
  }

  async close(lingerMs: number): Promise<void> {
    this.closed = true;
    if (lingerMs > 0) {
      await this.sender.drained(lingerMs);
      this.socket.linger = lingerMs;
    }
    this.socket.close();
  }
}

class ZmtpTransport implements LinkTransport {
  private readonly client: ZmtpXsub;
  /** Set by `run`, which Upstream.start calls before it connects. */
  private handlers: { frame(frame: Buffer): void; dry?(): void } | null = null;
  private onEvent: (event: LinkEvent) => void = () => {};
  private done: (() => void) | null = null;

  constructor(badFrame: () => void, heartbeat: ZmtpHeartbeat | null) {
    this.client = new ZmtpXsub({ maxFrameBytes: MAX_LINK_FRAME_BYTES, maxQueuedBytes: MAX_LINK_QUEUED_BYTES, heartbeat }, {
      // Frames are views of the read buffer; replies (0x00 first) are kept until their request
      // completes, so they get their own copy. Stream frames are copied into the rings at once.
      frame: (frame) => this.handlers?.frame(frame[0] === 0 ? Buffer.from(frame) : frame),
      dry: () => this.handlers?.dry?.(),
      unread: badFrame,
      event: (event) => this.onEvent(event),
    });
  }

  connect(endpoint: string): void {
    this.client.connect(endpoint);
  }

  send(frame: Buffer): void {
    this.client.send(frame);
  }

  run(handlers: { frame(frame: Buffer): void; dry?(): void }, onEvent: (event: LinkEvent) => void): Promise<void> {
    this.handlers = handlers;
    this.onEvent = onEvent;
    return new Promise((resolve) => {
      this.done = resolve;
    });
  }

  async close(lingerMs: number): Promise<void> {
    await this.client.close(lingerMs);
    this.done?.();
  }
}

export class Upstream {
  /** This gateway's id: the key of its private replies. */
  readonly id = randomBytes(GATEWAY_ID_BYTES);
  readonly idText = this.id.toString('base64url');
  /** Subscriptions sent again because the MPC did not confirm them in time. */
  subscribeRetries = 0;
  private readonly transport: LinkTransport;
  private readonly connected = new Set<string>();
  /** Endpoints whose link has been up at least once (a later up is a reconnect). */
  private readonly everUp = new Set<string>();
  /** Keys subscribed (a root, and the root + ':'), and how many times: the XSUB counts them, as many unsubscribes end one. */
  private readonly subscriptions = new Map<string, number>();
  /** Unconfirmed keys, oldest send first. */
  private readonly awaiting = new Map<string, number>();
  /** Unwanted roots, by when they became unwanted, oldest first. */
  private readonly releasing = new Map<string, number>();
  private readonly endpoints: string[];
  private timer: NodeJS.Timeout | null = null;
  private handlers: UpstreamHandlers | null = null;
  /** With CURVE a link is up once the handshake succeeds, not at TCP connect. */
  private readonly upEvent: 'connect' | 'handshake';

  constructor(
    endpoints: readonly string[],
    private readonly log: Logger,
    /** CURVE keys for the MPC link (encrypted, and authenticated by the MPC); null = plain TCP. */
    curve: CurveClientKeys | null = null,
    highWaterMark = 100_000,
    /** Sees every socket event first (the LinkMonitor, which explains links that stay down). */
    private readonly onLinkEvent: (event: LinkEvent) => void = () => {},
    /** tormq's own ZMTP client on a plain link (CURVE always uses libzmq's XSUB); see GatewayConfig.zmtpLink. */
    zmtpLink = false,
    /** A frame from an MPC skipped (too large, or in several parts). */
    badFrame: () => void = () => {},
    /** --link-heartbeat-ms (0: none): see zmtp-peer.ts heartbeatEvery. */
    heartbeatMs = 0,
  ) {
    const heartbeat = heartbeatEvery(heartbeatMs);
    this.transport = curve === null && zmtpLink ? new ZmtpTransport(badFrame, heartbeat) : new LibzmqTransport(curve, highWaterMark, heartbeat);
    // Up at the ZMTP handshake, CURVE or not: a plain gateway's TCP connect to a CURVE MPC is not a link.
    this.upEvent = 'handshake';
    this.endpoints = endpoints.map((e) => `tcp://${e}`);
  }

  /** Connects and feeds every received frame to `handlers.frame` until `close`. */
  start(handlers: UpstreamHandlers): Promise<void> {
    this.handlers = handlers;
    // Running before any connect: no frame or socket event can come before someone takes it.
    const running = this.transport.run(handlers, (event) => this.linkEvent(event, handlers));
    // The private key first: an XSUB sends its subscriptions to every MPC it connects to.
    this.transport.send(privateSubscription(this.id, true));
    this.transport.send(batchCapability(this.id, true));
    for (const endpoint of this.endpoints) this.transport.connect(endpoint);
    this.timer = setInterval(() => this.check(), CHECK_INTERVAL_MS);
    this.timer.unref();
    return running;
  }

  /** Some worker wants topics below `root`: subscribe, or keep a subscription whose unsubscribe has not gone out. */
  want(root: string): void {
    if (this.subscriptions.has(root)) {
      this.releasing.delete(root);
      return;
    }
    const now = Date.now();
    for (const key of [root, `${root}:`]) {
      this.subscriptions.set(key, 1);
      this.awaiting.set(key, now);
      this.transport.send(subscription(key, true));
    }
  }

  /** No worker wants `root` any more: unsubscribed once it has stayed unwanted for a moment. */
  release(root: string): void {
    if (this.subscriptions.has(root)) this.releasing.set(root, Date.now());
  }

  /** The MPC confirmed a key (`root` by a position, `root:` by a subtree confirmation). */
  confirmed(key: string): void {
    this.awaiting.delete(key);
  }

  /** Roots subscribed upstream (wanted, or released less than a moment ago). */
  roots(): number {
    return this.subscriptions.size / 2;
  }

  /** Sends a request to every connected MPC (each answers on this gateway's private key). */
  request(request: LinkRequest): void {
    this.transport.send(encodeRequest(request));
  }

  /** Sends an encoded frame (a presence report) to every connected MPC. */
  send(frame: Buffer): void {
    this.transport.send(frame);
  }

  /** Every MPC link is connected. */
  isUp(): boolean {
    return this.connected.size === this.endpoints.length;
  }

  /** Connected MPC links. */
  upCount(): number {
    return this.connected.size;
  }

  links(): Array<{ endpoint: string; up: boolean }> {
    return this.endpoints.map((endpoint) => ({ endpoint, up: this.connected.has(endpoint) }));
  }

  /**
   * Closes the link. With `lingerMs`, what was sent last (a presence `bye`) still goes out: queued sends
   * are handed to the socket and it lingers that long to write them; otherwise unsent frames are dropped.
   */
  async close(lingerMs = 0): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.transport.close(lingerMs);
  }

  /** Unsubscribes what stayed unwanted; resends what stayed unconfirmed while a link was up. */
  private check(): void {
    const now = Date.now();
    // Both maps are in time order: stop at the first entry that is not due.
    for (const [root, releasedAt] of this.releasing) {
      if (now - releasedAt < UNSUBSCRIBE_DELAY_MS) break;
      this.releasing.delete(root);
      for (const key of [root, `${root}:`]) {
        this.awaiting.delete(key);
        const sends = this.subscriptions.get(key) ?? 0;
        this.subscriptions.delete(key);
        const cancel = subscription(key, false);
        for (let i = 0; i < sends; i++) this.transport.send(cancel);
      }
      this.handlers?.unsubscribed?.(root);
    }
    if (this.connected.size === 0) return; // ZeroMQ sends them all again on (re)connect
    for (const [key, sentAt] of this.awaiting) {
      if (now - sentAt < CONFIRM_TIMEOUT_MS) break;
      this.awaiting.delete(key);
      this.awaiting.set(key, now);
      this.subscriptions.set(key, (this.subscriptions.get(key) ?? 0) + 1);
      this.subscribeRetries++;
      this.transport.send(subscription(key, true));
    }
  }

  private linkEvent(event: LinkEvent, handlers: UpstreamHandlers): void {
    this.onLinkEvent(event);
    if (event.address === undefined) return;
    if (event.type === 'handshake:error:auth' || event.type === 'handshake:error:protocol') {
      // The MPC refused this gateway's CURVE key, or the two sides disagree on the mechanism.
      this.log.error({ mpc: normalise(event.address, this.endpoints), err: event.error?.message }, 'MPC link handshake failed');
    } else if (event.type === this.upEvent) {
      const endpoint = normalise(event.address, this.endpoints);
      this.connected.add(endpoint);
      // The XSUB sends every subscription again on connect: the confirmation clock starts now.
      const now = Date.now();
      for (const topic of this.awaiting.keys()) this.awaiting.set(topic, now);
      if (this.everUp.has(endpoint)) {
        // Every key waits for its confirmation again (sent again if it does not come: the
        // confirmations may have been read before this event).
        for (const key of this.subscriptions.keys()) {
          this.awaiting.delete(key);
          this.awaiting.set(key, now);
        }
        handlers.linkReconnected?.(endpoint);
      }
      this.everUp.add(endpoint);
      this.log.info({ mpc: endpoint }, 'MPC link up');
    } else if (event.type === 'disconnect') {
      const endpoint = normalise(event.address, this.endpoints);
      this.connected.delete(endpoint);
      this.log.warn({ mpc: endpoint }, 'MPC link down; reconnecting');
      handlers.linkDown?.(endpoint);
    }
  }
}

/** The subscription message of a key: a root exactly, or `root:` for every topic below it. */
function subscription(key: string, on: boolean): Buffer {
  return key.endsWith(':') ? subtreeSubscription(key.slice(0, -1), on) : topicSubscription(key, on);
}

/** Events name the resolved address; map it back onto the configured endpoint. */
function normalise(address: string, endpoints: string[]): string {
  return endpoints.includes(address) ? address : (endpoints.find((e) => portOf(e) === portOf(address)) ?? address);
}

function portOf(endpoint: string): string {
  return endpoint.slice(endpoint.lastIndexOf(':') + 1);
}
