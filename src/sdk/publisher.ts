/**
 * Publisher SDK: publishes `[root, body]` to the MPC exactly as the original Python SDK does, so
 * gateways cannot tell the two apart.
 *
 * @example
 * ```ts
 * import { Publisher } from 'tormq';
 * const publisher = new Publisher('127.0.0.1', 5559);
 * await publisher.ready({ timeoutMs: 5000 }); // the MPC takes messages from this publisher
 * await publisher.send('ehr:api', { hello: 'world' });
 * await publisher.close();
 * ```
 */
import type { XPublisher } from 'zeromq';
import { zeromq } from '../zmq/zeromq.js';
import { ErrorCodes, TormqError } from '../errors.js';
import { curveClientOptions, isCurveKey, type CurveClientKeys } from '../zmq/curve.js';
import { tcpEndpoint } from '../zmq/endpoint.js';
import { heartbeatEvery, libzmqHeartbeat } from '../zmq/zmtp-peer.js';
import { rootOf, topicError } from '../protocol/topic.js';

/**
 * Subscription updates are read with this receive timeout, and between reads, while nobody waits in
 * `ready()`, the watcher pauses on an unref'd timer. zeromq.js has no unref: a receive that waits
 * forever keeps the process alive, so a Publisher never closed used to hang its process. Now the
 * process can end in a pause; the cost is ~4 wake-ups a second for an idle publisher and up to
 * ~250 ms before `hasSubscribers()` sees a change (`ready()` wakes the watcher at once).
 */
const SUBSCRIPTION_READ_MS = 50;
const IDLE_PAUSE_MS = 200;

export interface PublisherOptions {
  /** Most sends waiting for the socket; over it `send` rejects with ERR_PUBLISHER_QUEUE_FULL. Default 10000. */
  maxQueue?: number;
  /** ZeroMQ send high-water mark (messages buffered per connection). Default 10000. */
  sendHighWaterMark?: number;
  /**
   * CURVE keys when the MPC runs with CURVE: `serverKey` is the MPC's public key, `publicKey` and
   * `secretKey` this publisher's pair (its public key must be on the MPC's allowlist, if it has one).
   * A refused key connects nowhere: nothing is delivered and `ready()` times out.
   */
  curve?: CurveClientKeys;
  /**
   * ZMTP heartbeat to the MPC, in ms (0: off). Default 1000: a connection whose MPC is silent for 5 s
   * (stopped, hung, its host gone) is closed and dialled again, where TCP would go on writing into a
   * dead connection for many minutes; what is sent meanwhile waits in ZeroMQ's queue (up to
   * `sendHighWaterMark`) and leaves once an MPC answers. The MPC drops this publisher once it has been
   * silent for 10 s, instead of holding its connection for as long as TCP would.
   */
  heartbeatMs?: number;
}

export interface ReadyOptions {
  /** Resolve only once something upstream takes this topic (tormq-mpc takes all). Default: any subscription at all. */
  topic?: string;
  /** Reject with ERR_READY_TIMEOUT after this many ms. Default 10000. */
  timeoutMs?: number;
}

/**
 * The body the original SDK sends: `json.dumps({"topic": t, "data": d}, ensure_ascii=False)`, i.e.
 * `{"topic": "ehr:api", "data": "hello"}` with Python's `": "` and `", "` at the top level.
 */
export function encodeBody(topic: string, data: unknown): string {
  const json = JSON.stringify(data);
  if (json === undefined) throw new TypeError('data must be JSON-serialisable');
  return `{"topic": ${JSON.stringify(topic)}, "data": ${json}}`;
}

export class Publisher {
  readonly endpoint: string;
  private readonly socket: XPublisher;
  private readonly maxQueue: number;
  private queue: Array<{ frames: [string, string]; resolve: () => void; reject: (e: Error) => void } | undefined> = [];
  /** Next entry of `queue` to send. */
  private head = 0;
  private pumping = false;
  private closed = false;
  /** Prefixes subscribed upstream (ZeroMQ subscriptions: byte prefixes of the root frame). */
  private readonly subscriptions = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  /** Ends the watcher's idle pause early (a `ready()` caller is waiting). */
  private wake: (() => void) | null = null;

  /**
   * Connects a ZeroMQ publisher to an MPC's publisher port (XSUB). Connecting is asynchronous: use
   * `ready()` to know a subscriber is there before the first `send`, instead of sleeping.
   */
  constructor(host = '127.0.0.1', port = 5559, options: PublisherOptions = {}) {
    if (typeof host !== 'string' || host.length === 0) throw new TypeError('host must be a non-empty string');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError('port must be an integer from 1 to 65535');
    const maxQueue = options.maxQueue ?? 10_000;
    if (!Number.isInteger(maxQueue) || maxQueue < 1) throw new RangeError('options.maxQueue must be a positive integer');
    const sendHighWaterMark = options.sendHighWaterMark ?? 10_000;
    if (!Number.isInteger(sendHighWaterMark) || sendHighWaterMark < 0) {
      throw new RangeError('options.sendHighWaterMark must be a non-negative integer');
    }
    this.maxQueue = maxQueue;
    this.endpoint = tcpEndpoint(host, port);
    const curve = options.curve;
    if (curve !== undefined && !(isCurveKey(curve.serverKey) && isCurveKey(curve.publicKey) && isCurveKey(curve.secretKey))) {
      throw new TypeError('options.curve must be { serverKey, publicKey, secretKey }, each a 40-character Z85 key');
    }
    const heartbeatMs = options.heartbeatMs ?? 1000;
    if (!Number.isInteger(heartbeatMs) || heartbeatMs < 0 || heartbeatMs > 60_000) throw new RangeError('options.heartbeatMs must be an integer from 0 to 60000');
    this.socket = new (zeromq().XPublisher)({
      sendHighWaterMark,
      linger: 1000,
      receiveTimeout: SUBSCRIPTION_READ_MS,
      ...libzmqHeartbeat(heartbeatEvery(heartbeatMs)),
      ...(curve === undefined ? {} : curveClientOptions(curve)),
    });
    this.socket.connect(this.endpoint);
    void this.watchSubscriptions();
  }

  /**
   * Publishes `data` on `topic` as `[root, {"topic": topic, "data": data}]`. Resolves when handed to
   * ZeroMQ. Like any ZeroMQ publisher, a message for a root no one subscribes to is dropped.
   */
  send(topic: string, data: unknown): Promise<void> {
    const problem = topicError(topic);
    if (problem !== null) return Promise.reject(new TypeError(problem));
    let body: string;
    try {
      body = encodeBody(topic, data);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendRaw(rootOf(topic), body);
  }

  /** Sends pre-encoded frames `[root, body]` (for bridges that already hold a body). */
  sendRaw(root: string, body: string): Promise<void> {
    if (this.closed) return Promise.reject(new TormqError(ErrorCodes.PUBLISHER_CLOSED, 'publisher is closed'));
    if (this.queue.length - this.head >= this.maxQueue) {
      return Promise.reject(new TormqError(ErrorCodes.PUBLISHER_QUEUE_FULL, `more than ${this.maxQueue} sends are waiting`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ frames: [root, body], resolve, reject });
      if (!this.pumping) void this.pump();
    });
  }

  /**
   * `true` when something upstream takes `topic`: a subscription to everything (what tormq-mpc makes: it
   * keeps every message for history, whoever subscribes later), or to exactly the topic's root (an
   * original TORMQ MPC proxies its gateways' root subscriptions). A subscription to a shorter prefix
   * does not count, although ZeroMQ would forward the message under it.
   */
  hasSubscribers(topic: string): boolean {
    return this.subscriptions.has(rootOf(topic)) || this.subscriptions.has('');
  }

  /**
   * Resolves once the MPC takes this publisher's messages (`topic`: that topic's; see hasSubscribers):
   * the slow-joiner guard the original SDK approximated with `time.sleep(0.2)`. A ZeroMQ PUB socket
   * drops what it sends before that. Rejects with ERR_READY_TIMEOUT after `timeoutMs`.
   */
  ready(options: ReadyOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const satisfied = () => (options.topic === undefined ? this.subscriptions.size > 0 : this.hasSubscribers(options.topic));
    if (satisfied()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!satisfied()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new TormqError(ErrorCodes.READY_TIMEOUT, `no subscriber${options.topic ? ` for "${options.topic}"` : ''} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      this.wake?.();
    });
  }

  /** Sends what is queued (up to the socket's linger), then closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.pumping) await new Promise((resolve) => setTimeout(resolve, 1));
    this.socket.close();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      // zeromq.js allows one send in flight per socket: sends are serialised here, in order.
      // Read with a head index, not shift(): a backing store past V8's large-object threshold
      // (a queue of ~16k+ entries) cannot be left-trimmed, so each shift() copied the whole queue.
      // Measured (MPC pinned to core 0, this process to core 1, bursts of sends): 21 / 33 / 93 µs of
      // CPU per message for bursts of 1k / 20k / 100k with shift(); the bench's publisher fell behind
      // at 40k msgs/s and its queue overflowed (167k of 400k sends refused).
      for (let item = this.queue[this.head]; item !== undefined; item = this.queue[this.head]) {
        this.queue[this.head++] = undefined;
        try {
          await this.socket.send(item.frames);
          item.resolve();
        } catch (error) {
          item.reject(error as Error);
        }
      }
    } finally {
      this.queue.length = 0;
      this.head = 0;
      this.pumping = false;
    }
  }

  /** Tracks upstream subscriptions until `close`, without keeping an idle process alive (see IDLE_PAUSE_MS). */
  private async watchSubscriptions(): Promise<void> {
    while (!this.closed) {
      let message: Buffer | undefined;
      try {
        [message] = await this.socket.receive();
      } catch (error) {
        // EAGAIN: nothing within SUBSCRIPTION_READ_MS. Anything else: the socket was closed.
        if (this.closed || (error as { code?: string }).code !== 'EAGAIN') return;
        if (this.waiters.size === 0) {
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            setTimeout(resolve, IDLE_PAUSE_MS).unref();
          });
          this.wake = null;
        }
        continue;
      }
      if (message === undefined || message.length === 0) continue;
      const prefix = message.toString('utf8', 1);
      const count = this.subscriptions.get(prefix) ?? 0;
      if (message[0] === 1) this.subscriptions.set(prefix, count + 1);
      else if (count <= 1) this.subscriptions.delete(prefix);
      else this.subscriptions.set(prefix, count - 1);
      for (const waiter of this.waiters) waiter();
    }
  }
}
