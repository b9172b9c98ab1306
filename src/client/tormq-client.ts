/**
 * The tormq client for browsers and Node: one connection to a tormq gateway (`tormq.v2` subprotocol)
 * that reconnects with jittered exponential backoff, resubscribes, resumes every subscription from the
 * last position it saw (`recover` + `since`), refreshes its token in band before it expires, and
 * notices a dead connection. Publications reach the application once each, in stream order; when the
 * gateway cannot replay what was missed, the subscription says so (`subscribed` with
 * `recovered: false`, then `gap`).
 *
 * This file is self-contained on purpose: compiled, it is the ES module the gateway serves at
 * `/tormq-client.js` (no bundler, no dependency in the browser). In Node it uses the global
 * `WebSocket` where there is one (Node ≥ 22), else the `ws` package.
 *
 * @example
 * ```ts
 * import { TormqClient } from 'tormq/client';
 * const client = new TormqClient('wss://push.example.com/ws', { getToken: () => fetchToken() });
 * const sub = client.subscribe('user:42');
 * sub.on('publication', ({ data, offset }) => render(data, offset));
 * sub.on('gap', () => reloadFromBackend());
 * await client.connect();
 * ```
 */

// --- Public types ------------------------------------------------------------------------------------

/** Where a stream stands: the epoch (changes when the MPC cannot vouch for continuity) and the last offset. */
export interface StreamPosition {
  readonly epoch: string;
  readonly offset: number;
}

/** The client's connection state. `closed` is final (after `close()`). */
export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** A subscription's state: `subscribing` until the gateway acknowledged it (again after each reconnect). */
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** One message of a subscription. `topic` is the stream it was published on (the subscription's topic or an ancestor). */
export interface Publication<T = unknown> {
  readonly topic: string;
  readonly data: T;
  readonly epoch: string;
  readonly offset: number;
}

/** What a `subscribed` event tells. */
export interface SubscribedContext {
  /** Every message missed since the subscription's last positions was replayed (only meaningful when `wasRecovering`). */
  readonly recovered: boolean;
  /** The subscription asked to recover (it had positions: after a reconnect, a gap, or `since`). */
  readonly wasRecovering: boolean;
  /** Where each of its streams stands now; publications continue after these. */
  readonly positions: Readonly<Record<string, StreamPosition>>;
}

/** What a `gap` event tells: continuity was lost and could not be repaired; reload from your source of truth. */
export interface GapContext {
  /** Why: `not-recovered` (the gateway could not replay what was missed), `gap` (a gap notice on a subscription without `recover`), `jump` (offsets skipped on a subscription without `recover`). */
  readonly reason: 'not-recovered' | 'gap' | 'jump';
  /** Where the subscription's streams stand now; publications continue after these. */
  readonly positions: Readonly<Record<string, StreamPosition>>;
}

/** What a `disconnected` event tells. */
export interface DisconnectContext {
  /** The WebSocket close code (1006 when the connection failed or was found dead). */
  readonly code: number;
  readonly reason: string;
  /** The connection had opened (false: the attempt itself failed, e.g. a refused upgrade). */
  readonly wasOpen: boolean;
  /** Milliseconds until the next attempt, or null when the client does not reconnect (after `close()`). */
  readonly reconnectIn: number | null;
}

/** Stable error codes of {@link TormqClientError}. */
export const ClientErrorCodes = {
  /** `getToken` threw or rejected. */
  TOKEN: 'ERR_TOKEN',
  /** The gateway sent a frame that is not part of the protocol (not JSON, binary, unknown event, malformed publication). */
  BAD_FRAME: 'ERR_BAD_FRAME',
  /** The gateway sent a reply that fits no request, or a malformed ack. */
  BAD_REPLY: 'ERR_BAD_REPLY',
  /** A request was not answered within `requestTimeout` (the connection is replaced). */
  TIMEOUT: 'ERR_TIMEOUT',
  /** The gateway did not select the `tormq.v2` subprotocol. */
  PROTOCOL: 'ERR_PROTOCOL',
  /** The gateway refused a refreshed token (`ERR_UNAUTHORIZED`); retried until the old one expires. */
  REFRESH_REFUSED: 'ERR_REFRESH_REFUSED',
  /** The gateway refused a subscription (`serverCode` says why, e.g. `ERR_FORBIDDEN`); it ends. */
  SUBSCRIBE_REFUSED: 'ERR_SUBSCRIBE_REFUSED',
  /** The gateway said a recovery was complete but messages were missing; reported as a gap too. */
  INCOMPLETE_RECOVERY: 'ERR_INCOMPLETE_RECOVERY',
  /** An event listener threw (the client carries on; `cause` is what was thrown). */
  LISTENER: 'ERR_LISTENER',
  /** `close()` was called: `connect()` will not complete. */
  CLIENT_CLOSED: 'ERR_CLIENT_CLOSED',
  /** `subscribe()` for a topic the client already has a subscription for. */
  DUPLICATE_SUBSCRIPTION: 'ERR_DUPLICATE_SUBSCRIPTION',
  /** No WebSocket implementation: no global `WebSocket` and the `ws` package could not be loaded. */
  NO_WEBSOCKET: 'ERR_NO_WEBSOCKET',
  /** A bug in the client itself (please report it); the client carries on with a reconnect. */
  INTERNAL: 'ERR_INTERNAL',
} as const;

/** One of {@link ClientErrorCodes}. */
export type ClientErrorCode = (typeof ClientErrorCodes)[keyof typeof ClientErrorCodes];

/**
 * Every error the client reports (through `error` events, or a rejected `connect()`), with a stable `code`.
 *
 * @example
 * ```ts
 * client.on('error', (error) => console.warn(error.code, error.message, error.serverCode));
 * ```
 */
export class TormqClientError extends Error {
  /** The gateway's error code when the gateway sent one (e.g. `ERR_FORBIDDEN`). */
  readonly serverCode: string | undefined;

  /**
   * @example
   * ```ts
   * new TormqClientError(ClientErrorCodes.TIMEOUT, 'no reply within 30000 ms');
   * ```
   */
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    options: { cause?: unknown; serverCode?: string } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TormqClientError';
    this.serverCode = options.serverCode;
  }
}

/** The minimal WebSocket the client needs: the browser's, Node's global one (undici) and `ws` all fit. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor (`globalThis.WebSocket`, `ws`'s `WebSocket`, or your own). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Options of {@link TormqClient}; every one is optional. */
export interface TormqClientOptions {
  /**
   * Returns the JWT to connect with (offered as the `bearer.<jwt>` subprotocol). Called before every
   * connection attempt and before the current token's `exp` (in-band `refresh`). Return null or '' for
   * no token. Throwing or rejecting counts as a failed attempt (retried with backoff).
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Lower bound of every reconnect delay, ms (default 500). */
  minReconnectDelay?: number;
  /** Upper bound of the reconnect delay, ms (default 20000); a 4029 close waits between half of it and it. */
  maxReconnectDelay?: number;
  /** After this long without any frame from the gateway, the client sends a ping, ms (default 20000). */
  pingInterval?: number;
  /** A connection silent for `pingInterval + pongTimeout` is dead and replaced, ms (default 10000). */
  pongTimeout?: number;
  /** A connection attempt that has not opened after this long is abandoned, ms (default 10000). */
  connectTimeout?: number;
  /** A request (subscribe, refresh, ping) unanswered this long replaces the connection, ms (default 30000). */
  requestTimeout?: number;
  /** The WebSocket implementation (default: the global `WebSocket`, else the `ws` package in Node). */
  WebSocket?: WebSocketConstructor;
}

/** Options of {@link TormqClient.subscribe}. */
export interface SubscribeOptions {
  /**
   * Resume after every reconnect and gap from the last position seen (default true). With false the
   * subscription starts afresh after a reconnect and reports live losses with `gap`.
   */
  recover?: boolean;
  /**
   * Positions to resume from at the first subscribe, e.g. saved from `sub.positions` before a page
   * reload. Keys must be the topic or one of its ancestors.
   */
  since?: Readonly<Record<string, StreamPosition>>;
}

/** Events of {@link TormqClient}. */
export interface ClientEvents {
  /** The connection state changed. */
  state: (state: ClientState) => void;
  /** A connection opened (subscriptions are being re-sent). */
  connected: (context: { url: string }) => void;
  /** A connection closed or an attempt failed. */
  disconnected: (context: DisconnectContext) => void;
  /** Something went wrong that the client handled (never thrown into your code). */
  error: (error: TormqClientError) => void;
}

/** Events of {@link Subscription}. */
export interface SubscriptionEvents<T> {
  /** A message, in stream order, once; the subscription's position was advanced before this runs. */
  publication: (publication: Publication<T>) => void;
  /** The gateway acknowledged the subscription (first subscribe, after a reconnect, after a recovery). */
  subscribed: (context: SubscribedContext) => void;
  /** Continuity was lost and could not be repaired: messages are missing; reload from your source of truth. */
  gap: (context: GapContext) => void;
  /** The subscription hit a problem (e.g. refused by the gateway: it then ends). */
  error: (error: TormqClientError) => void;
  /** The subscription ended: `unsubscribe()`, a refusal by the gateway, or `client.close()`. */
  unsubscribed: (context: { reason: 'unsubscribe' | 'refused' | 'closed' }) => void;
}

// --- Policies (pure, exported for tests and for reference) ----------------------------------------

/**
 * A reconnect delay with full jitter: uniformly random between `min` and the exponential ceiling
 * `min · 2^(attempt+1)` capped at `max`. Attempt 0 (the first after a stable connection) waits
 * [min, 2·min); failures in a row widen the window, so a fleet dropped at once (a deploy) spreads out.
 *
 * @example
 * ```ts
 * backoffDelay(0, 500, 20_000); // 500 … 1000 ms
 * backoffDelay(5, 500, 20_000); // 500 … 20000 ms
 * ```
 */
export function backoffDelay(attempt: number, min: number, max: number, random: () => number = Math.random): number {
  const ceiling = Math.min(max, min * 2 ** Math.min(Math.max(attempt, 0) + 1, 40));
  return Math.floor(min + random() * Math.max(0, ceiling - min));
}

/** How the client waits before its next attempt after a close (see {@link reconnectPolicy}). */
export interface ReconnectPolicy {
  /** `backoff`: {@link backoffDelay} at the current failure count; `max`: between half of and `maxReconnectDelay`. */
  readonly delay: 'backoff' | 'max';
  /** What the close means (for docs and logs). */
  readonly meaning: string;
}

/**
 * What the client does after the connection closes with `code` (`wasOpen`: it had opened). Every
 * reconnect waits: a connection that stayed up 5 s resets the backoff, so the first delay after it is
 * `minReconnectDelay` … 2 × that; every failed attempt and every connection that closed sooner widens
 * the window (see {@link backoffDelay}). The client calls `getToken` before every attempt, so a 1008
 * or a refused upgrade retries with a new token, and each attempt goes to the next URL of the list.
 * Every subscription is then re-sent with `recover`. `close()` never reconnects.
 *
 * | code | meaning | client |
 * |---|---|---|
 * | 1001 | gateway draining | backoff (jittered) |
 * | 1006 before open | refused upgrade (401/403/503) or unreachable | new token, backoff |
 * | 1006 after open | connection lost or found dead | backoff |
 * | 1008 | token expired or refused | new token, backoff |
 * | 1011 | the gateway's worker failed | backoff (jittered) |
 * | 4008 | too slow to keep up | backoff |
 * | 4029 | rate limited | wait maxReconnectDelay/2 … maxReconnectDelay |
 * | 1002, 1003, 1007, 1009, 1010 | protocol errors | backoff |
 * | other | | backoff |
 *
 * @example
 * ```ts
 * reconnectPolicy(4029, true); // { delay: 'max', meaning: 'rate limited' }
 * ```
 */
export function reconnectPolicy(code: number, wasOpen: boolean): ReconnectPolicy {
  if (!wasOpen) return { delay: 'backoff', meaning: 'connection attempt failed (refused upgrade or unreachable)' };
  switch (code) {
    case 1001:
      return { delay: 'backoff', meaning: 'gateway draining' };
    case 1006:
      return { delay: 'backoff', meaning: 'connection lost' };
    case 1008:
      return { delay: 'backoff', meaning: 'token expired or refused' };
    case 1011:
      return { delay: 'backoff', meaning: "the gateway's worker failed" };
    case 4008:
      return { delay: 'backoff', meaning: 'too slow to keep up' };
    case 4029:
      return { delay: 'max', meaning: 'rate limited' };
    case 1002:
    case 1003:
    case 1007:
    case 1009:
    case 1010:
      return { delay: 'backoff', meaning: 'protocol error' };
    default:
      return { delay: 'backoff', meaning: 'connection closed' };
  }
}

/**
 * The `exp` claim of a JWT in ms since the epoch, read without verifying anything (the gateway
 * verifies), or null when there is none.
 *
 * @example
 * ```ts
 * tokenExpiry(jwt); // 1767225600000
 * ```
 */
export function tokenExpiry(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1]!.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const exp = (JSON.parse(new TextDecoder().decode(bytes)) as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to refresh a token that expires in `lifetime` ms: a minute before it expires, but never before
 * half its lifetime has passed (short-lived tokens are not refreshed in a loop). Null when it expired.
 *
 * @example
 * ```ts
 * refreshDelay(15 * 60_000); // 14 minutes
 * refreshDelay(4_000);       // 2 seconds
 * ```
 */
export function refreshDelay(lifetime: number): number | null {
  if (!(lifetime > 0)) return null;
  return Math.max(lifetime / 2, lifetime - 60_000);
}

/** The streams a subscription to `topic` receives: each ancestor and the topic (`a:b` → `a`, `a:b`). */
export function streamsOf(topic: string): string[] {
  const streams: string[] = [];
  for (let i = topic.indexOf(':'); i !== -1; i = topic.indexOf(':', i + 1)) streams.push(topic.slice(0, i));
  streams.push(topic);
  return streams;
}

const MAX_TOPIC_LENGTH = 256;

/** The browser's window events (null in Node, which has no global addEventListener). */
function browserWindow(): { addEventListener(type: string, listener: () => void): void; removeEventListener(type: string, listener: () => void): void } | null {
  const g = globalThis as { addEventListener?: unknown; removeEventListener?: unknown };
  return typeof g.addEventListener === 'function' && typeof g.removeEventListener === 'function'
    ? (g as unknown as ReturnType<typeof browserWindow>)
    : null;
}

function topicProblem(topic: unknown): string | null {
  if (typeof topic !== 'string') return 'must be a string';
  if (topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) return `must have 1 to ${MAX_TOPIC_LENGTH} characters`;
  if (/[\u0000-\u001f\u007f]/.test(topic)) return 'must not contain control characters';
  if (topic.split(':').some((segment) => segment === '')) return 'must not have empty segments';
  return null;
}

function isPosition(value: unknown): value is StreamPosition {
  if (value === null || typeof value !== 'object') return false;
  const { epoch, offset } = value as Record<string, unknown>;
  return typeof epoch === 'string' && typeof offset === 'number' && Number.isSafeInteger(offset) && offset >= 0;
}

// --- Events ------------------------------------------------------------------------------------------

type Listener = (...args: never[]) => void;

/** A small typed event emitter: a listener that throws never breaks the client (it becomes an `error` event). */
class Emitter<Events extends { [K in keyof Events]: Listener }> {
  private readonly listeners = new Map<keyof Events, Array<Events[keyof Events]>>();

  /**
   * Adds a listener.
   *
   * @example
   * ```ts
   * client.on('state', (state) => console.log(state));
   * ```
   */
  on<E extends keyof Events>(event: E, listener: Events[E]): this {
    const list = this.listeners.get(event) ?? [];
    this.listeners.set(event, [...list, listener]);
    return this;
  }

  /**
   * Removes a listener added with `on` or `once`.
   *
   * @example
   * ```ts
   * sub.off('publication', render);
   * ```
   */
  off<E extends keyof Events>(event: E, listener: Events[E]): this {
    const list = this.listeners.get(event);
    if (list === undefined) return this;
    const i = list.findIndex((l) => l === listener || (l as { listener?: unknown }).listener === listener);
    if (i !== -1) this.listeners.set(event, [...list.slice(0, i), ...list.slice(i + 1)]);
    return this;
  }

  /**
   * Adds a listener called at most once.
   *
   * @example
   * ```ts
   * client.once('connected', () => console.log('up'));
   * ```
   */
  once<E extends keyof Events>(event: E, listener: Events[E]): this {
    const wrapper = ((...args: never[]) => {
      this.off(event, wrapper);
      (listener as (...a: never[]) => void)(...args);
    }) as Events[E];
    (wrapper as { listener?: unknown }).listener = listener;
    return this.on(event, wrapper);
  }

  /** `true` when `event` has at least one listener. */
  protected has(event: keyof Events): boolean {
    return (this.listeners.get(event)?.length ?? 0) > 0;
  }

  /** Calls each listener; what one throws is handed to `listenerFailed` (never to the caller). */
  protected emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void {
    const list = this.listeners.get(event);
    if (list === undefined) return;
    for (const listener of list) {
      try {
        (listener as (...a: Parameters<Events[E]>) => void)(...args);
      } catch (error) {
        this.listenerFailed(String(event), error);
      }
    }
  }

  protected listenerFailed(event: string, error: unknown): void {
    if (event === 'error') {
      // The error listener itself threw: nothing left to report it to but the host.
      setTimeout(() => {
        throw error;
      }, 0);
      return;
    }
    (this as unknown as Emitter<{ error: (e: TormqClientError) => void }>).emit(
      'error',
      new TormqClientError(ClientErrorCodes.LISTENER, `a "${event}" listener threw: ${String((error as Error)?.message ?? error)}`, { cause: error }),
    );
  }
}

// --- Subscription --------------------------------------------------------------------------------------

/** What the client drives a subscription with (kept out of the public surface). */
interface SubscriptionDriver {
  readonly sub: Subscription<unknown>;
  subscribeFrame(id: number): Record<string, unknown>;
  connectionLost(): void;
  end(reason: 'unsubscribe' | 'refused' | 'closed'): void;
  offer(topic: string, epoch: string, offset: number, data: unknown): void;
  gap(): void;
  acked(id: number, reply: Record<string, unknown>): boolean;
  refused(id: number, code: string, message: string): void;
}

/** What a subscription needs of its client. */
interface SubscriptionHost {
  sendSubscribe(sub: Subscription<unknown>): void;
  /** An error of a subscription without an `error` listener: reported by the client instead. */
  error(error: TormqClientError): void;
  removeSubscription(sub: Subscription<unknown>, reason: 'unsubscribe' | 'refused' | 'closed'): void;
}

/**
 * A subscription to one topic: it receives messages published on the topic and on each of its
 * ancestors (`user:42` gets `user:42` and `user`), tracks the position of each of those streams, drops
 * duplicates, and resumes from those positions after every reconnect or gap. Create it with
 * `client.subscribe(topic)`.
 *
 * @example
 * ```ts
 * const sub = client.subscribe<{ text: string }>('chat:room1');
 * sub.on('publication', ({ data, offset }) => show(data.text, offset));
 * sub.on('subscribed', ({ recovered, wasRecovering }) => { if (wasRecovering && !recovered) reload(); });
 * ```
 */
export class Subscription<T = unknown> extends Emitter<SubscriptionEvents<T>> {
  /**
   * The streams this subscription receives: each ancestor of the topic, then the topic.
   *
   * @example
   * ```ts
   * client.subscribe('user:42').streams; // ['user', 'user:42']
   * ```
   */
  readonly streams: readonly string[];
  private status: SubscriptionState = 'subscribing';
  private readonly known = new Map<string, StreamPosition>();
  /** The id of the subscribe request in flight (null: none). */
  private pendingId: number | null = null;
  /** The request in flight carried `since`. */
  private pendingWithSince = false;
  /** The request in flight is a recovery (with `since`, or after the gateway refused the positions). */
  private pendingWasRecovering = false;
  /** A gap notice arrived while a recovery was in flight: recover once more after it. */
  private gapWhileRecovering = false;
  /** Send the next subscribe without `since` (the gateway refused the positions). */
  private dropSince = false;
  /** Retries after ERR_RATE_LIMITED. */
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retries = 0;

  /**
   * Not for applications: subscriptions are created by {@link TormqClient.subscribe}.
   *
   * @example
   * ```ts
   * const sub = client.subscribe('user:42'); // not new Subscription(…)
   * ```
   */
  constructor(
    /** The subscribed topic. */
    readonly topic: string,
    /** Resumes after reconnects and gaps (the `recover` option). */
    readonly recover: boolean,
    since: Readonly<Record<string, StreamPosition>> | undefined,
    private readonly host: SubscriptionHost,
    bind: (driver: SubscriptionDriver) => void,
  ) {
    super();
    this.streams = streamsOf(topic);
    if (since !== undefined) for (const [stream, position] of Object.entries(since)) this.known.set(stream, { epoch: position.epoch, offset: position.offset });
    bind({
      sub: this as Subscription<unknown>,
      subscribeFrame: (id) => this.subscribeFrame(id),
      connectionLost: () => this.connectionLost(),
      end: (reason) => this.end(reason),
      offer: (topic, epoch, offset, data) => this.offer(topic, epoch, offset, data),
      gap: () => this.gap(),
      acked: (id, reply) => this.acked(id, reply),
      refused: (id, code, message) => this.refused(id, code, message),
    });
  }

  /**
   * `subscribing` (waiting for the gateway's ack, also after each reconnect), `subscribed`, or
   * `unsubscribed` (ended: it never comes back; subscribe again with `client.subscribe`).
   *
   * @example
   * ```ts
   * if (sub.state === 'subscribed') showLive();
   * ```
   */
  get state(): SubscriptionState {
    return this.status;
  }

  /**
   * The last position seen of each stream (a copy). Save it to resume after a page reload with
   * `client.subscribe(topic, { since })`.
   *
   * @example
   * ```ts
   * localStorage.setItem('since', JSON.stringify(sub.positions));
   * ```
   */
  get positions(): Record<string, StreamPosition> {
    return Object.fromEntries([...this.known].map(([stream, p]) => [stream, { epoch: p.epoch, offset: p.offset }]));
  }

  /**
   * Ends the subscription (the gateway is told when connected). Idempotent.
   *
   * @example
   * ```ts
   * sub.unsubscribe();
   * ```
   */
  unsubscribe(): void {
    if (this.status === 'unsubscribed') return;
    this.host.removeSubscription(this as Subscription<unknown>, 'unsubscribe');
  }

  // --- Driven by the client (through the driver) ---

  /** The subscribe frame to send now (records the request). */
  private subscribeFrame(id: number): Record<string, unknown> {
    this.pendingId = id;
    const frame: Record<string, unknown> = { event: 'subscribe', topics: [this.topic] };
    const since = this.recover && !this.dropSince && this.known.size > 0 ? Object.fromEntries(this.known) : undefined;
    this.pendingWithSince = since !== undefined;
    this.pendingWasRecovering = since !== undefined || this.dropSince;
    this.dropSince = false;
    if (this.recover) frame.recover = true;
    if (since !== undefined) frame.since = since;
    frame.id = id;
    return frame;
  }

  /** The connection is gone: the subscription waits for the next one. */
  private connectionLost(): void {
    if (this.status === 'unsubscribed') return;
    this.status = 'subscribing';
    this.pendingId = null;
    this.gapWhileRecovering = false;
    this.clearRetry();
    // Without recovery the next connection starts afresh.
    if (!this.recover) this.known.clear();
  }

  /** Ended (unsubscribe, refusal, client closed). */
  private end(reason: 'unsubscribe' | 'refused' | 'closed'): void {
    if (this.status === 'unsubscribed') return;
    this.status = 'unsubscribed';
    this.pendingId = null;
    this.clearRetry();
    this.emit('unsubscribed', { reason });
  }

  /** A message on one of this subscription's streams. */
  private offer(topic: string, epoch: string, offset: number, data: unknown): void {
    if (this.status === 'unsubscribed') return;
    const known = this.known.get(topic);
    if (known === undefined) {
      // A stream without a baseline: before the ack (another subscription's stream), ignored — the ack
      // sets where this subscription starts; after it, the first message is the baseline.
      if (this.status === 'subscribing') return;
      this.deliver(topic, epoch, offset, data);
      return;
    }
    if (known.epoch === epoch || known.epoch === '') {
      if (offset <= known.offset) return; // a duplicate (a replay overlapping what arrived live)
      if (offset === known.offset + 1 || known.epoch === '') {
        this.deliver(topic, epoch, offset, data);
        return;
      }
    } else if (known.offset === 0 && offset === 1) {
      // The first message of a topic nobody had published at the ack: nothing came before it, whatever
      // its epoch (with several MPCs the ack may carry another MPC's; the gateway announces any loss).
      this.deliver(topic, epoch, offset, data);
      return;
    }
    // Offsets skipped, or a new epoch: messages are missing here.
    if (!this.recover) {
      this.deliver(topic, epoch, offset, data, 'jump');
      return;
    }
    // With recovery, this message is dropped: the recovery replays it after the missing ones. A
    // recovery already in flight covers it (everything before its ack is at or before its positions).
    if (this.pendingId === null && this.status === 'subscribed') this.startRecovery();
  }

  /** A gap notice from the gateway for this subscription. */
  private gap(): void {
    if (this.status === 'unsubscribed') return;
    if (!this.recover) {
      if (this.status === 'subscribed') this.emit('gap', { reason: 'gap', positions: this.positions });
      return;
    }
    if (this.pendingId !== null) {
      // It may have been sent after the recovery in flight took its positions: recover once more.
      this.gapWhileRecovering = true;
      return;
    }
    if (this.status === 'subscribed') this.startRecovery();
  }

  /** The gateway acknowledged request `id`. Returns false when the ack is malformed. */
  private acked(id: number, reply: Record<string, unknown>): boolean {
    if (id !== this.pendingId || this.status === 'unsubscribed') return true; // stale: superseded or ended
    const positions = reply.positions;
    if (positions === null || typeof positions !== 'object' || Array.isArray(positions)) return false;
    const acked = new Map<string, StreamPosition>();
    for (const stream of this.streams) {
      const position = (positions as Record<string, unknown>)[stream];
      if (position === undefined) continue; // not routed at that instant: the first message sets it
      if (!isPosition(position)) return false;
      acked.set(stream, position);
    }
    const wasRecovering = this.pendingWasRecovering;
    let recovered = this.pendingWithSince && reply.recovered === true;
    let incomplete = false;
    for (const [stream, position] of acked) {
      const known = this.known.get(stream);
      if (recovered && known !== undefined && known.epoch === position.epoch && known.offset < position.offset) incomplete = true;
      if (known !== undefined && known.epoch === position.epoch && known.offset > position.offset) continue;
      this.known.set(stream, { epoch: position.epoch, offset: position.offset });
    }
    this.pendingId = null;
    this.status = 'subscribed';
    this.retries = 0;
    const again = this.gapWhileRecovering;
    this.gapWhileRecovering = false;
    // Claimed complete, yet messages are missing: continuity is lost after all.
    if (incomplete) recovered = false;
    this.emit('subscribed', { recovered, wasRecovering, positions: this.positions });
    if (incomplete) {
      this.fail(new TormqClientError(ClientErrorCodes.INCOMPLETE_RECOVERY, `the gateway acknowledged a recovery of "${this.topic}" with messages missing`));
    }
    if (wasRecovering && !recovered && this.status === 'subscribed') this.emit('gap', { reason: 'not-recovered', positions: this.positions });
    // (Each extra round answers a gap notice from the gateway, and outgoing frames are paced: never a loop.)
    if (again && this.status === 'subscribed') this.startRecovery();
    return true;
  }

  /** The gateway refused request `id` with `code`. */
  private refused(id: number, code: string, message: string): void {
    if (id !== this.pendingId || this.status === 'unsubscribed') return;
    this.pendingId = null;
    const error = new TormqClientError(ClientErrorCodes.SUBSCRIBE_REFUSED, `subscribe "${this.topic}" refused: ${code} ${message}`, { serverCode: code });
    if (code === 'ERR_RATE_LIMITED') {
      // Try again later; the connection is fine.
      this.fail(error);
      this.retries++;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (this.status !== 'unsubscribed' && this.pendingId === null) this.host.sendSubscribe(this as Subscription<unknown>);
      }, backoffDelay(this.retries, 1000, 10_000));
      return;
    }
    if (code === 'ERR_BAD_SINCE' && this.pendingWithSince) {
      // The positions are unusable: subscribe without them (continuity cannot be vouched for: a gap follows).
      this.fail(error);
      this.dropSince = true;
      this.host.sendSubscribe(this as Subscription<unknown>);
      return;
    }
    this.fail(error);
    this.host.removeSubscription(this as Subscription<unknown>, 'refused');
  }

  /** Reports on this subscription, or on the client when nobody listens here. */
  private fail(error: TormqClientError): void {
    if (this.has('error')) this.emit('error', error);
    else this.host.error(error);
  }

  protected override listenerFailed(event: string, error: unknown): void {
    if (event === 'error') {
      super.listenerFailed(event, error);
      return;
    }
    this.fail(new TormqClientError(ClientErrorCodes.LISTENER, `a "${event}" listener threw: ${String((error as Error)?.message ?? error)}`, { cause: error }));
  }

  private startRecovery(): void {
    this.status = 'subscribing';
    this.host.sendSubscribe(this as Subscription<unknown>);
  }

  private deliver(topic: string, epoch: string, offset: number, data: unknown, jump?: 'jump'): void {
    this.known.set(topic, { epoch, offset });
    if (jump !== undefined) this.emit('gap', { reason: 'jump', positions: this.positions });
    this.emit('publication', { topic, data: data as T, epoch, offset });
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}

// --- Client --------------------------------------------------------------------------------------------

const DEFAULTS = {
  minReconnectDelay: 500,
  maxReconnectDelay: 20_000,
  pingInterval: 20_000,
  pongTimeout: 10_000,
  connectTimeout: 10_000,
  requestTimeout: 30_000,
} as const;

/** A connection open at least this long counts as stable: the next close starts the backoff afresh. */
const STABLE_MS = 5_000;
/** Outbound frames: a burst, then a steady rate — half of the gateway's default inbound limit (100, 50/s). */
const SEND_BURST = 50;
const SEND_PER_SECOND = 25;
const V2 = 'tormq.v2';
const OPEN = 1;

interface PendingRequest {
  readonly kind: 'subscribe' | 'unsubscribe' | 'refresh' | 'ping';
  readonly sub?: SubscriptionDriver;
  readonly token?: string;
  readonly sentAt: number;
}

/** One WebSocket and everything that lives and dies with it. */
interface Connection {
  readonly ws: WebSocketLike;
  readonly url: string;
  readonly token: string | null;
  opened: boolean;
  openedAt: number;
  lastTraffic: number;
  pinging: boolean;
  readonly pending: Map<number, PendingRequest>;
  readonly queue: string[];
  tokens: number;
  tokensAt: number;
  sendTimer: ReturnType<typeof setTimeout> | null;
  watchTimer: ReturnType<typeof setTimeout> | null;
  refreshTimer: ReturnType<typeof setTimeout> | null;
  refreshing: boolean;
  refreshFailures: number;
  /** When the connection's current token expires (ms), or null. */
  expiresAt: number | null;
}

function checkDelay(options: TormqClientOptions, name: keyof typeof DEFAULTS): number {
  const value = options[name];
  if (value === undefined) return DEFAULTS[name];
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw new RangeError(`options.${name} must be a number of milliseconds from 1 to 2147483647, got ${String(value)}`);
  }
  return value;
}

/**
 * A connection to tormq gateways that stays up: it reconnects with jittered exponential backoff
 * (failing over through a list of URLs), re-subscribes and resumes every subscription from its last
 * positions, refreshes the token before it expires, and replaces a connection that went silent.
 * Nothing the gateway sends is ever thrown into the application: problems are `error` events.
 *
 * @example
 * ```ts
 * const client = new TormqClient(['wss://push-a.example.com/ws', 'wss://push-b.example.com/ws'], {
 *   getToken: async () => (await fetch('/push-token')).text(),
 * });
 * client.on('state', (state) => console.log(state));
 * const sub = client.subscribe('user:42');
 * sub.on('publication', ({ data }) => console.log(data));
 * await client.connect();
 * // later
 * client.close();
 * ```
 */
export class TormqClient extends Emitter<ClientEvents> {
  private readonly urls: readonly string[];
  private readonly options: Required<Omit<TormqClientOptions, 'getToken' | 'WebSocket'>> & Pick<TormqClientOptions, 'getToken' | 'WebSocket'>;
  private status: ClientState = 'disconnected';
  private readonly subs = new Map<string, SubscriptionDriver>();
  /** Subscriptions by stream topic: who receives a message on that stream. */
  private readonly byStream = new Map<string, Set<SubscriptionDriver>>();
  private connection: Connection | null = null;
  private started = false;
  /** Failed attempts (and unstable connections) since the last stable connection: the backoff exponent. */
  private failures = 0;
  private urlIndex = 0;
  private nextId = 1;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  /** Incremented by every attempt and by close(): a stale async step (getToken) sees it changed. */
  private generation = 0;
  private readonly waiters: Array<{ resolve: () => void; reject: (error: TormqClientError) => void }> = [];
  private readonly onOnline = () => this.online();
  private readonly host: SubscriptionHost = {
    sendSubscribe: (sub) => this.sendSubscribe(this.subs.get(sub.topic), sub),
    error: (error) => this.emit('error', error),
    removeSubscription: (sub, reason) => this.removeSubscription(this.subs.get(sub.topic), sub, reason),
  };

  /**
   * @param url The gateway's WebSocket URL (`wss://host/ws`), or several: each failed attempt or
   *   closed connection moves on to the next one.
   *
   * @example
   * ```ts
   * const client = new TormqClient('ws://127.0.0.1:8000/ws', { minReconnectDelay: 250, maxReconnectDelay: 10_000 });
   * ```
   */
  constructor(url: string | readonly string[], options: TormqClientOptions = {}) {
    super();
    const urls = typeof url === 'string' ? [url] : [...url];
    if (urls.length === 0 || !urls.every((u) => typeof u === 'string' && /^wss?:\/\//i.test(u))) {
      throw new TypeError('url must be a ws:// or wss:// URL, or a non-empty array of them');
    }
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    if (options.getToken !== undefined && typeof options.getToken !== 'function') throw new TypeError('options.getToken must be a function');
    if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function') throw new TypeError('options.WebSocket must be a WebSocket constructor');
    const minReconnectDelay = checkDelay(options, 'minReconnectDelay');
    const maxReconnectDelay = checkDelay(options, 'maxReconnectDelay');
    if (maxReconnectDelay < minReconnectDelay) throw new RangeError('options.maxReconnectDelay must be at least options.minReconnectDelay');
    this.urls = urls;
    this.options = {
      minReconnectDelay,
      maxReconnectDelay,
      pingInterval: checkDelay(options, 'pingInterval'),
      pongTimeout: checkDelay(options, 'pongTimeout'),
      connectTimeout: checkDelay(options, 'connectTimeout'),
      requestTimeout: checkDelay(options, 'requestTimeout'),
      getToken: options.getToken,
      WebSocket: options.WebSocket,
    };
  }

  /**
   * `disconnected` (not started, or waiting to reconnect), `connecting`, `connected`, or `closed` (final).
   *
   * @example
   * ```ts
   * if (client.state === 'connected') showOnline();
   * ```
   */
  get state(): ClientState {
    return this.status;
  }

  /**
   * Starts connecting (and keeps the connection up from then on). Resolves once connected; rejects
   * only when `close()` is called first. Calling it again while started just waits for the connection.
   *
   * @example
   * ```ts
   * await client.connect();
   * ```
   */
  connect(): Promise<void> {
    if (this.status === 'closed') return Promise.reject(new TormqClientError(ClientErrorCodes.CLIENT_CLOSED, 'the client was closed'));
    if (this.status === 'connected') return Promise.resolve();
    const ready = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // A caller that never awaits this must not get an unhandled rejection from a later close().
    ready.catch(() => {});
    if (!this.started) {
      this.started = true;
      browserWindow()?.addEventListener('online', this.onOnline);
      this.attempt();
    }
    return ready;
  }

  /**
   * Closes the connection for good: no reconnect, every subscription ends, every timer and socket is
   * released (in Node nothing keeps the process alive afterwards). Idempotent.
   *
   * @example
   * ```ts
   * client.close();
   * ```
   */
  close(): void {
    if (this.status === 'closed') return;
    this.generation++;
    browserWindow()?.removeEventListener('online', this.onOnline);
    this.clearTimer('reconnectTimer');
    this.clearTimer('connectTimer');
    const connection = this.connection;
    this.connection = null;
    if (connection !== null) this.dispose(connection, 1000);
    for (const driver of [...this.subs.values()]) this.removeSubscription(driver, driver.sub, 'closed');
    this.setState('closed');
    for (const waiter of this.waiters.splice(0)) waiter.reject(new TormqClientError(ClientErrorCodes.CLIENT_CLOSED, 'the client was closed'));
  }

  /**
   * Subscribes to `topic` (sent now when connected, else on connect). Messages published on the topic
   * and on each of its ancestors arrive as `publication` events, once each, in order per stream.
   * Throws a `TypeError` for an invalid topic and `ERR_DUPLICATE_SUBSCRIPTION` when the topic already
   * has a subscription (see {@link getSubscription}).
   *
   * @example
   * ```ts
   * const sub = client.subscribe('user:42', { recover: true });
   * sub.on('publication', ({ topic, data, epoch, offset }) => apply(data));
   * ```
   */
  subscribe<T = unknown>(topic: string, options: SubscribeOptions = {}): Subscription<T> {
    const problem = topicProblem(topic);
    if (problem !== null) throw new TypeError(`topic ${problem}`);
    if (this.status === 'closed') throw new TormqClientError(ClientErrorCodes.CLIENT_CLOSED, 'the client was closed');
    if (this.subs.has(topic)) throw new TormqClientError(ClientErrorCodes.DUPLICATE_SUBSCRIPTION, `already subscribed to "${topic}"`);
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    if (options.recover !== undefined && typeof options.recover !== 'boolean') throw new TypeError('options.recover must be true or false');
    const streams = streamsOf(topic);
    if (options.since !== undefined) {
      if (options.since === null || typeof options.since !== 'object') throw new TypeError('options.since must be an object of stream positions');
      for (const [stream, position] of Object.entries(options.since)) {
        if (!streams.includes(stream)) throw new RangeError(`options.since: "${stream}" is not "${topic}" or one of its ancestors`);
        if (!isPosition(position)) throw new TypeError(`options.since["${stream}"] must be {epoch: string, offset: integer >= 0}`);
      }
    }
    let driver!: SubscriptionDriver;
    const sub = new Subscription<T>(topic, options.recover ?? true, options.since, this.host, (d) => (driver = d));
    this.subs.set(topic, driver);
    for (const stream of streams) {
      let set = this.byStream.get(stream);
      if (set === undefined) this.byStream.set(stream, (set = new Set()));
      set.add(driver);
    }
    if (this.connection?.opened) this.sendSubscribe(driver, driver.sub);
    return sub;
  }

  /**
   * The live subscription to `topic`, if any.
   *
   * @example
   * ```ts
   * client.getSubscription('user:42')?.unsubscribe();
   * ```
   */
  getSubscription(topic: string): Subscription<unknown> | undefined {
    return this.subs.get(topic)?.sub;
  }

  /**
   * Every live subscription.
   *
   * @example
   * ```ts
   * for (const sub of client.subscriptions()) console.log(sub.topic, sub.positions);
   * ```
   */
  subscriptions(): Subscription<unknown>[] {
    return [...this.subs.values()].map((driver) => driver.sub);
  }

  // --- Connection lifecycle ---

  private setState(state: ClientState): void {
    if (this.status === state) return;
    this.status = state;
    this.emit('state', state);
  }

  /** Starts a connection attempt; a bug in it is an error event, never an unhandled rejection. */
  private attempt(): void {
    this.open().catch((error: unknown) => this.unexpected(error));
  }

  private unexpected(error: unknown): void {
    this.emit('error', new TormqClientError(ClientErrorCodes.INTERNAL, `unexpected: ${String((error as Error)?.message ?? error)}`, { cause: error }));
    // Never stuck: without a connection or a pending attempt, try again later.
    if (this.status !== 'closed' && this.connection === null && this.reconnectTimer === null) this.failed(1006, 'internal error', false);
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.setState('connecting');
    const url = this.urls[this.urlIndex % this.urls.length]!;
    let token: string | null = null;
    let Impl: WebSocketConstructor;
    try {
      Impl = await this.webSocketImpl();
    } catch (error) {
      if (generation !== this.generation) return;
      this.emit('error', new TormqClientError(ClientErrorCodes.NO_WEBSOCKET, 'no WebSocket implementation: no global WebSocket and the "ws" package could not be loaded', { cause: error }));
      this.failed(1006, 'no WebSocket implementation', false);
      return;
    }
    if (generation !== this.generation) return;
    if (this.options.getToken !== undefined) {
      try {
        token = (await this.options.getToken()) || null;
        if (token !== null && typeof token !== 'string') throw new TypeError('getToken must return a string');
      } catch (error) {
        if (generation !== this.generation) return;
        this.emit('error', new TormqClientError(ClientErrorCodes.TOKEN, `getToken failed: ${String((error as Error)?.message ?? error)}`, { cause: error }));
        this.failed(1006, 'getToken failed', false);
        return;
      }
      if (generation !== this.generation) return;
    }
    let ws: WebSocketLike;
    try {
      ws = new Impl(url, token === null ? [V2] : [V2, `bearer.${token}`]);
    } catch (error) {
      this.emit('error', new TormqClientError(ClientErrorCodes.PROTOCOL, `cannot open ${url}: ${String((error as Error)?.message ?? error)}`, { cause: error }));
      this.failed(1006, 'cannot open', false);
      return;
    }
    const now = Date.now();
    const connection: Connection = {
      ws, url, token, opened: false, openedAt: 0, lastTraffic: now, pinging: false, pending: new Map(), queue: [],
      tokens: SEND_BURST, tokensAt: now, sendTimer: null, watchTimer: null, refreshTimer: null, refreshing: false,
      refreshFailures: 0, expiresAt: token === null ? null : tokenExpiry(token),
    };
    this.connection = connection;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (this.connection === connection && !connection.opened) this.lost(connection, 1006, `not open after ${this.options.connectTimeout} ms`);
    }, this.options.connectTimeout);
    ws.onopen = () => this.opened(connection);
    ws.onmessage = (event) => this.received(connection, event.data);
    ws.onerror = () => {
      // Before open, an error is a failed attempt. Usually a close follows it, but not always: Node 22's
      // global WebSocket (undici) reports a server that does not speak HTTP with an error and then stays
      // CONNECTING. So if no close has come by the next turn, the attempt is lost here. After open,
      // errors are followed by a close (and a silent connection by the liveness pings).
      if (connection.opened) return;
      setTimeout(() => {
        if (this.connection === connection && !connection.opened) this.lost(connection, 1006, 'connection error before open');
      }, 0);
    };
    ws.onclose = (event) => {
      if (this.connection !== connection) return;
      this.lost(connection, typeof event?.code === 'number' ? event.code : 1006, typeof event?.reason === 'string' ? event.reason : '');
    };
  }

  private async webSocketImpl(): Promise<WebSocketConstructor> {
    if (this.options.WebSocket !== undefined) return this.options.WebSocket;
    const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (typeof global === 'function') return global;
    // Node without a global WebSocket (Node 20): the `ws` package. The specifier is a variable so
    // that bundlers and browsers never try to resolve it.
    const specifier = 'ws';
    const module = (await import(specifier)) as { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor };
    const Impl = module.WebSocket ?? module.default;
    if (typeof Impl !== 'function') throw new Error('the "ws" package exports no WebSocket');
    return Impl;
  }

  private opened(connection: Connection): void {
    if (this.connection !== connection) return;
    this.clearTimer('connectTimer');
    if (connection.ws.protocol !== V2) {
      this.emit('error', new TormqClientError(ClientErrorCodes.PROTOCOL, `the gateway at ${connection.url} did not select the ${V2} subprotocol (got "${connection.ws.protocol}")`));
      this.lost(connection, 1002, `no ${V2}`);
      return;
    }
    connection.opened = true;
    connection.openedAt = connection.lastTraffic = Date.now();
    // Subscriptions first: a listener below that subscribes sends its own, once.
    for (const driver of this.subs.values()) this.sendSubscribe(driver, driver.sub);
    this.watch(connection);
    this.scheduleRefresh(connection);
    this.setState('connected');
    if (this.connection !== connection) return; // a listener closed the client
    this.emit('connected', { url: connection.url });
    if (this.connection !== connection) return;
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
  }

  /** The connection closed or was found dead: clean up, then reconnect after the policy's delay. */
  private lost(connection: Connection, code: number, reason: string): void {
    if (this.connection !== connection) return;
    this.connection = null;
    this.clearTimer('connectTimer');
    this.dispose(connection, 4000);
    const wasOpen = connection.opened;
    // A connection that stayed up resets the backoff; one that closed soon after opening is a failure.
    if (wasOpen && Date.now() - connection.openedAt >= STABLE_MS) this.failures = 0;
    for (const driver of this.subs.values()) driver.connectionLost();
    this.failed(code, reason, wasOpen);
  }

  /** Schedules the next attempt after a close or a failed attempt (see reconnectPolicy). */
  private failed(code: number, reason: string, wasOpen: boolean): void {
    if (this.status === 'closed') return;
    const policy = reconnectPolicy(code, wasOpen);
    const { minReconnectDelay: min, maxReconnectDelay: max } = this.options;
    let delay: number;
    if (policy.delay === 'max') {
      delay = Math.max(min, Math.floor(max / 2 + Math.random() * (max / 2)));
      this.failures = Math.max(this.failures, Math.ceil(Math.log2(max / min)));
    } else {
      delay = backoffDelay(this.failures, min, max);
      this.failures++;
    }
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.setState('disconnected');
    if (this.status !== 'disconnected') return; // a state listener closed the client
    this.emit('disconnected', { code, reason, wasOpen, reconnectIn: delay });
    if (this.status !== 'disconnected') return;
    this.clearTimer('reconnectTimer');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.attempt();
    }, delay);
  }

  /** Browser `online`: a client waiting to reconnect tries now. */
  private online(): void {
    if (this.status !== 'disconnected' || this.reconnectTimer === null) return;
    this.clearTimer('reconnectTimer');
    this.attempt();
  }

  /** Releases a connection: its timers, its requests, its socket (closed, or cut in Node's `ws`). */
  private dispose(connection: Connection, code: 1000 | 4000): void {
    for (const name of ['sendTimer', 'watchTimer', 'refreshTimer'] as const) {
      const timer = connection[name];
      if (timer !== null) clearTimeout(timer);
      connection[name] = null;
    }
    connection.pending.clear();
    connection.queue.length = 0;
    const ws = connection.ws;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      // A closing handshake is polite when the peer is there; when it is not (a dead connection), ws
      // would wait 30 s for it: cut at once where that is possible (ws's terminate).
      const terminate = (ws as { terminate?: () => void }).terminate;
      if (code !== 1000 && typeof terminate === 'function') terminate.call(ws);
      else {
        ws.close(code, code === 1000 ? 'client closed' : 'replaced');
        if (typeof terminate === 'function') {
          const timer = setTimeout(() => terminate.call(ws), 1000) as { unref?: () => void };
          timer.unref?.();
        }
      }
    } catch {
      // closing a socket that never opened may throw in some implementations: it is gone either way
    }
  }

  private clearTimer(name: 'reconnectTimer' | 'connectTimer'): void {
    const timer = this[name];
    if (timer !== null) clearTimeout(timer);
    this[name] = null;
  }

  // --- Liveness ---

  /** One timer per connection: ping after `pingInterval` of silence; silent `pongTimeout` longer: dead. */
  private watch(connection: Connection): void {
    const { pingInterval, pongTimeout, requestTimeout } = this.options;
    const now = Date.now();
    const idle = now - connection.lastTraffic;
    if (idle >= pingInterval + pongTimeout) {
      this.lost(connection, 1006, `no traffic for ${idle} ms`);
      return;
    }
    for (const request of connection.pending.values()) {
      if (now - request.sentAt >= requestTimeout) {
        this.emit('error', new TormqClientError(ClientErrorCodes.TIMEOUT, `no reply to a ${request.kind} within ${requestTimeout} ms`));
        if (this.connection === connection) this.lost(connection, 1006, `${request.kind} unanswered`);
        return;
      }
    }
    if (idle >= pingInterval && !connection.pinging) {
      connection.pinging = true;
      this.request(connection, () => ({ event: 'ping' }), { kind: 'ping', sentAt: now });
    }
    const next = connection.pinging ? pingInterval + pongTimeout - idle : pingInterval - idle;
    connection.watchTimer = setTimeout(() => {
      connection.watchTimer = null;
      if (this.connection === connection) this.watch(connection);
    }, Math.max(50, Math.min(next, requestTimeout / 2)));
  }

  // --- Outbound ---

  /** Sends a frame with a fresh id (`frame(id)` builds it) and remembers what it asked. */
  private request(connection: Connection, frame: (id: number) => Record<string, unknown>, request: PendingRequest): void {
    const id = this.nextId++;
    const built = frame(id);
    built.id = id;
    connection.pending.set(id, request);
    this.send(connection, JSON.stringify(built));
  }

  /** Paced under the gateway's inbound rate limit (a reconnect re-sends every subscription at once). */
  private send(connection: Connection, text: string): void {
    connection.queue.push(text);
    this.flush(connection);
  }

  private flush(connection: Connection): void {
    if (connection.sendTimer !== null) return;
    const now = Date.now();
    connection.tokens = Math.min(SEND_BURST, connection.tokens + ((now - connection.tokensAt) * SEND_PER_SECOND) / 1000);
    connection.tokensAt = now;
    while (connection.queue.length > 0 && connection.tokens >= 1) {
      connection.tokens--;
      const text = connection.queue.shift()!;
      if (connection.ws.readyState !== OPEN) continue;
      try {
        connection.ws.send(text);
      } catch {
        // the socket is closing: its close event follows
      }
    }
    if (connection.queue.length > 0) {
      connection.sendTimer = setTimeout(() => {
        connection.sendTimer = null;
        if (this.connection === connection) this.flush(connection);
      }, Math.ceil(1000 / SEND_PER_SECOND));
    }
  }

  /** Sends `sub`'s subscribe now when connected (`driver`: its entry, undefined once it ended). */
  private sendSubscribe(driver: SubscriptionDriver | undefined, sub: Subscription<unknown>): void {
    const connection = this.connection;
    if (connection === null || !connection.opened || driver === undefined || driver.sub !== sub) return;
    this.request(connection, (id) => driver.subscribeFrame(id), { kind: 'subscribe', sub: driver, sentAt: Date.now() });
  }

  private removeSubscription(driver: SubscriptionDriver | undefined, sub: Subscription<unknown>, reason: 'unsubscribe' | 'refused' | 'closed'): void {
    if (driver === undefined || driver.sub !== sub) return;
    this.subs.delete(sub.topic);
    for (const stream of sub.streams) {
      const set = this.byStream.get(stream);
      set?.delete(driver);
      if (set?.size === 0) this.byStream.delete(stream);
    }
    const connection = this.connection;
    if (reason === 'unsubscribe' && connection?.opened) {
      this.request(connection, () => ({ event: 'unsubscribe', topics: [sub.topic] }), { kind: 'unsubscribe', sentAt: Date.now() });
    }
    driver.end(reason);
  }

  // --- Token refresh ---

  private scheduleRefresh(connection: Connection): void {
    if (connection.refreshTimer !== null) clearTimeout(connection.refreshTimer);
    connection.refreshTimer = null;
    if (this.options.getToken === undefined || connection.expiresAt === null) return;
    let delay = refreshDelay(connection.expiresAt - Date.now());
    if (delay === null) return; // expired by this clock: the gateway closes with 1008 and the reconnect gets a new token
    if (connection.refreshFailures > 0) {
      delay = Math.min(delay, backoffDelay(connection.refreshFailures - 1, this.options.minReconnectDelay, this.options.maxReconnectDelay));
    }
    connection.refreshTimer = setTimeout(() => {
      connection.refreshTimer = null;
      this.refresh(connection).catch((error: unknown) => this.unexpected(error));
    }, Math.min(Math.max(delay, 100), 2 ** 31 - 1));
  }

  private async refresh(connection: Connection): Promise<void> {
    if (this.connection !== connection || connection.refreshing) return;
    connection.refreshing = true;
    let token: string | null;
    try {
      token = (await this.options.getToken!()) || null;
      if (token !== null && typeof token !== 'string') throw new TypeError('getToken must return a string');
    } catch (error) {
      connection.refreshing = false;
      if (this.connection !== connection) return;
      this.emit('error', new TormqClientError(ClientErrorCodes.TOKEN, `getToken failed: ${String((error as Error)?.message ?? error)}`, { cause: error }));
      connection.refreshFailures++;
      this.scheduleRefresh(connection);
      return;
    }
    if (this.connection !== connection) return;
    const expiresAt = token === null ? null : tokenExpiry(token);
    if (token === null || (expiresAt !== null && connection.expiresAt !== null && expiresAt <= connection.expiresAt)) {
      // No newer token yet (e.g. getToken serves a cached one): ask again later, with backoff.
      connection.refreshing = false;
      connection.refreshFailures++;
      this.scheduleRefresh(connection);
      return;
    }
    this.request(connection, () => ({ event: 'refresh', token }), { kind: 'refresh', token, sentAt: Date.now() });
  }

  // --- Inbound ---

  private received(connection: Connection, data: unknown): void {
    if (this.connection !== connection) return;
    connection.lastTraffic = Date.now();
    if (typeof data !== 'string') {
      this.badFrame('a binary frame');
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      this.badFrame(`not JSON: ${data.slice(0, 80)}`);
      return;
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this.badFrame(`not an object: ${data.slice(0, 80)}`);
      return;
    }
    const fields = frame as Record<string, unknown>;
    // A publication has a topic and a position; control frames have neither (a published body may
    // carry its own "event" member: the position decides).
    if (typeof fields.topic === 'string' && fields.offset !== undefined) {
      this.publication(fields, data);
      return;
    }
    switch (fields.event) {
      case 'ack':
      case 'pong':
      case 'error':
        this.reply(connection, fields);
        return;
      case 'gap': {
        const topics = fields.topics;
        if (!Array.isArray(topics)) {
          this.badFrame(`a gap notice without topics: ${data.slice(0, 80)}`);
          return;
        }
        for (const topic of topics) if (typeof topic === 'string') this.subs.get(topic)?.gap();
        return;
      }
      default:
        this.badFrame(`unexpected frame: ${data.slice(0, 80)}`);
    }
  }

  private publication(fields: Record<string, unknown>, text: string): void {
    const { topic, epoch, offset } = fields as { topic: string; epoch: unknown; offset: unknown };
    if (typeof epoch !== 'string' || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 1) {
      this.badFrame(`a message without a valid position: ${text.slice(0, 80)}`);
      return;
    }
    const subs = this.byStream.get(topic);
    if (subs === undefined) return; // unsubscribed meanwhile
    for (const sub of [...subs]) sub.offer(topic, epoch, offset, fields.data);
  }

  private reply(connection: Connection, fields: Record<string, unknown>): void {
    const id = fields.id;
    const request = typeof id === 'number' ? connection.pending.get(id) : undefined;
    if (request === undefined) {
      // A pong without id answers nobody's ping here; anything else is a reply to nothing.
      if (fields.event !== 'pong') this.badReply(`a reply to no request: ${JSON.stringify(fields).slice(0, 120)}`);
      return;
    }
    connection.pending.delete(id as number);
    const isError = fields.event === 'error';
    const code = typeof fields.code === 'string' ? fields.code : 'ERR_UNKNOWN';
    const message = typeof fields.message === 'string' ? fields.message : '';
    switch (request.kind) {
      case 'ping':
        connection.pinging = false;
        return;
      case 'unsubscribe':
        if (isError) this.emit('error', new TormqClientError(ClientErrorCodes.BAD_REPLY, `unsubscribe refused: ${code} ${message}`, { serverCode: code }));
        return;
      case 'subscribe': {
        const sub = request.sub!;
        if (isError) sub.refused(id as number, code, message);
        else if (fields.event !== 'ack' || !sub.acked(id as number, fields)) {
          this.badReply(`a malformed subscribe reply: ${JSON.stringify(fields).slice(0, 200)}`);
          // The subscription's state is unknown to the gateway and to us: start over on a new connection.
          if (this.connection === connection) this.lost(connection, 1006, 'malformed subscribe reply');
        }
        return;
      }
      case 'refresh':
        connection.refreshing = false;
        if (!isError && fields.event === 'ack') {
          connection.refreshFailures = 0;
          connection.expiresAt = tokenExpiry(request.token!);
        } else {
          connection.refreshFailures++;
          this.emit('error', new TormqClientError(ClientErrorCodes.REFRESH_REFUSED, `token refresh refused: ${code} ${message}`, { serverCode: code }));
        }
        if (this.connection === connection) this.scheduleRefresh(connection);
        return;
    }
  }

  private badFrame(what: string): void {
    this.emit('error', new TormqClientError(ClientErrorCodes.BAD_FRAME, `the gateway sent ${what}`));
  }

  private badReply(what: string): void {
    this.emit('error', new TormqClientError(ClientErrorCodes.BAD_REPLY, `the gateway sent ${what}`));
  }
}
