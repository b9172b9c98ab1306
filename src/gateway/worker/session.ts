/**
 * One client connection, owned by one worker: what it may do (grants, rate limit), what it asked for
 * (its subscriptions, in the trie through its writer) and its requests and their answers. Its
 * outbound path, bounded against clients that stop reading, is its Writer.
 *
 * Replies come in request order: each frame with an `id` takes a place in line when it is read, and a
 * reply that is ready early (a pong behind a subscribe waiting for routing) waits for the ones before
 * it. Frames that arrive while an asynchronous step runs (a refresh token being checked, a tormq.v2
 * subscribe recovering) wait for it and are then handled in order.
 */
import { performance } from 'node:perf_hooks';
import type { WebSocket } from 'ws';
import { Close } from '../../protocol/close-codes.js';
import { GOPUSHER_OK_FRAME } from '../../protocol/gopusher-frames.js';
import {
  ackFrame,
  errorFrame,
  parseClientFrame,
  pongFrame,
  positionsAckFrame,
  requestIdOf,
  type ClientCommand,
  type FrameError,
  type RequestId,
  type StreamPosition,
  type SubscribeCommand,
} from '../../protocol/client-frames.js';
import { WireErrorCodes } from '../../protocol/wire-errors.js';
import { WorkerStat } from '../shared/counters.js';
import { isGranted, type Grants } from './auth.js';
import type { WorkerContext } from './context.js';
import { NOT_ROUTED, type Position } from './interest-routing.js';
import { SubscriptionBudget } from './subscription-budget.js';
import { TokenBucket } from './token-bucket.js';
import { ReplayOutcome, Variant, Writer } from './writer.js';

const OPEN = 1;
/** Frames held while an asynchronous step runs (a token check, a recovery paced by a slow socket); past it ERR_RATE_LIMITED. */
const MAX_HELD_FRAMES = 64;
/** Streams of one recovery fetched from history at a time (see `replay`). */
const REPLAY_WINDOW = 8;
const MAX_TIMER_MS = 2 ** 31 - 1;
let nextConnectionId = 1;

/** The streams a subscription to `topic` receives: the topic and each ancestor (`a:b:c` → `a`, `a:b`, `a:b:c`). */
export function streamsOf(topic: string): string[] {
  const streams: string[] = [];
  for (let i = topic.indexOf(':'); i !== -1; i = topic.indexOf(':', i + 1)) streams.push(topic.slice(0, i));
  streams.push(topic);
  return streams;
}

export class Session {
  /** Names the connection in its worker's logs (with the `worker` binding; counts from 1 again in a replaced worker). */
  readonly id = nextConnectionId++;
  /** Answered the last heartbeat ping. */
  alive = true;
  readonly topics = new Set<string>();
  readonly writer: Writer;
  /** Segments of its topics, against what one connection may make the trie hold. */
  private readonly budget: SubscriptionBudget;
  /** Inbound frame limit (null when `clientRateLimit` is 0). */
  private readonly bucket: TokenBucket | null;
  /** Frames rejected by the rate limit since the last accepted one. */
  private rateStrikes = 0;
  /** Replies in request order: a place per frame with an id, filled when its answer is ready. */
  private readonly replies: Array<string | null> = [];
  /** A close decided while replies were owed: it follows them, so served frames are still answered. */
  private closeAfterReplies: (() => void) | null = null;
  /** What the connection's token allows (null: authentication is off). Replaced by a refresh. */
  private grants: Grants | null;
  /** Frames that arrived while an asynchronous step ran, handled after it in order (null: none running). */
  private held: string[] | null = null;
  private expiry: NodeJS.Timeout | null = null;
  private disposed = false;
  /** gopusher: topics this connection joined, and their card (null: it never joined). */
  private joins: Map<string, string> | null = null;
  /** gopusher: per card, how many of the connection's joined topics are that card's (`C`, `C:app`…). */
  private joinedCards: Map<string, number> | null = null;

  constructor(
    readonly ws: WebSocket,
    private readonly ctx: WorkerContext,
    grants: Grants | null = null,
    /** The connection speaks tormq.v2: positions on messages, recovery, gap notices. */
    readonly v2 = false,
  ) {
    this.writer = new Writer(ws, v2 ? Variant.POSITIONED : Variant.BODY, ctx.config, ctx.stats, this.topics);
    this.budget = new SubscriptionBudget(ctx.config, ctx.stats, ctx.topics);
    const { clientRateLimit, clientRateBurst } = ctx.config;
    this.bucket = clientRateLimit > 0 ? new TokenBucket(clientRateLimit, clientRateBurst, performance.now()) : null;
    this.grants = grants;
    if (grants !== null) {
      if (grants.autoSubscribe !== null) this.subscribe(grants.autoSubscribe);
      this.armExpiry();
    }
  }

  /** A text frame from the client. */
  onText(text: string): void {
    if (this.admit(text)) this.handle(text);
  }

  onBinary(): void {
    if (!this.admit(null)) return;
    this.reject({ code: WireErrorCodes.BINARY_FRAME, message: 'binary frames are not part of the protocol' });
  }

  /** The connection joined (gopusher): its replies and pushes are gopusher's frames from then on. */
  get gopusher(): boolean {
    return this.writer.variant === Variant.GOPUSHER;
  }

  /** Removes every subscription (connection closed). */
  dispose(): void {
    this.disposed = true;
    if (this.joins !== null) for (const topic of [...this.joins.keys()]) this.unjoin(topic);
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.expiry = null;
    this.held = null;
    for (const topic of this.topics) this.ctx.trie.remove(topic, this.writer);
    this.ctx.stats[WorkerStat.subscriptions] -= this.topics.size;
    this.topics.clear();
  }

  /** A frame past the rate limit (held frames come back here, not to onText). */
  private handle(text: string): void {
    if (this.held !== null) {
      if (this.held.length < MAX_HELD_FRAMES) this.held.push(text);
      else this.reject({ code: WireErrorCodes.RATE_LIMITED, message: 'too many frames while an earlier request is served' });
      return;
    }
    const result = parseClientFrame(text, this.ctx.frameLimits);
    if (!result.ok) {
      this.reject(result.error);
      return;
    }
    const command = result.command;
    if (command.event === 'refresh') {
      this.refresh(command.token, command.id);
      return;
    }
    if (command.event === 'subscribe' && (command.recover !== undefined || command.since !== undefined) && !this.v2) {
      this.reject(withId({ code: WireErrorCodes.BAD_SINCE, message: 'recover needs the tormq.v2 subprotocol' }, command.id));
      return;
    }
    const join = command.event === 'subscribe' ? command.join : undefined;
    if (join !== undefined && this.v2) {
      this.reject(withId({ code: WireErrorCodes.BAD_REQUEST, message: 'join is gopusher\'s protocol: not on a tormq.v2 connection' }, command.id));
      return;
    }
    // gopusher answers every join and ping. A frame with an id is tormq's request protocol (gopusher
    // clients send none): it gets tormq's reply (ack, pong with the id) whatever the connection speaks.
    const place = command.id === undefined && command.event !== 'ping' && join === undefined ? -1 : this.reserve();
    const error = this.apply(command);
    if (error !== null) {
      this.ctx.stats[WorkerStat.badFrames]++;
      this.answer(place, error.id === undefined ? null : errorFrame(error));
    } else if (command.event === 'ping') this.answer(place, this.gopusher && command.id === undefined ? GOPUSHER_OK_FRAME : pongFrame(command.id));
    else if (command.event !== 'subscribe') this.answer(place, command.id === undefined ? null : ackFrame(command.id));
    else if (this.v2) this.recover(command, place);
    else {
      if (join !== undefined) this.join(command.topics[0]!, join.card);
      // Acknowledged once every stream of the subscription is routed here and confirmed upstream: an
      // ack means "messages published from now on reach you" (interest-routing.ts). gopusher's join
      // answer means the same.
      const ack = command.id !== undefined ? ackFrame(command.id) : join !== undefined ? GOPUSHER_OK_FRAME : null;
      if (place !== -1) this.ctx.routing.whenRouted(command.topics.flatMap(streamsOf), () => this.answer(place, ack));
    }
  }

  /**
   * A tormq.v2 subscribe: hold the subscription's streams back, learn each stream's position at a mark
   * in the ring, replay what the client missed since `since` (when asked and still in history), ack
   * with the positions, then release the held messages after them: none lost or repeated across the
   * switch from history to live. Frames arriving meanwhile wait.
   */
  private recover(command: SubscribeCommand, place: number): void {
    const streams = [...new Set(command.topics.flatMap(streamsOf))];
    this.writer.hold(streams);
    this.held = [];
    this.ctx.routing.positions(streams, (positions) => {
      void this.replay(command, streams, positions).then((recovered) => {
        if (this.disposed) return;
        const ackPositions = new Map<string, StreamPosition>();
        for (const stream of streams) {
          const position = positions.get(stream)!;
          if (position !== NOT_ROUTED) ackPositions.set(stream, position);
        }
        this.answer(place, command.id === undefined ? null : positionsAckFrame(command.id, ackPositions, command.recover ? recovered : undefined));
        for (const stream of streams) this.writer.release(stream, positions.get(stream)!.offset);
        this.writer.flushGaps();
        this.resume();
      });
    });
  }

  /**
   * Sends what the client missed of each stream in `since`; true when every one was complete. The
   * streams are fetched REPLAY_WINDOW at a time, each window within the worker's replay budget, and
   * written as the socket drains (Writer.replay), so one subscribe makes the gateway hold at most one
   * window of history, and all recovering connections together about `replayBudgetBytes`.
   */
  private async replay(command: SubscribeCommand, streams: string[], positions: Map<string, Position>): Promise<boolean> {
    if (command.since === undefined) return false; // nothing to recover from: a fresh subscription
    const max = this.ctx.config.maxRecoveryMessages;
    let recovered = true;
    const wanted: Array<{ stream: string; since: StreamPosition; missed: number }> = [];
    for (const stream of streams) {
      const since = command.since.get(stream);
      if (since === undefined) continue; // a stream new to the client: nothing missed
      const position = positions.get(stream)!;
      const missed = position.offset - since.offset;
      if (position === NOT_ROUTED || since.epoch !== position.epoch || missed < 0 || missed > max) {
        recovered = false;
        continue;
      }
      if (missed > 0) wanted.push({ stream, since, missed });
    }
    for (let at = 0; at < wanted.length; at += REPLAY_WINDOW) {
      const window = wanted.slice(at, at + REPLAY_WINDOW);
      const reservation = await this.ctx.replayBudget.reserve(window.reduce((n, { missed }) => n + missed, 0));
      try {
        if (this.disposed) return false;
        const fetched = await Promise.all(
          window.map(({ stream, since, missed }) =>
            this.ctx.history(stream, since.epoch, since.offset, missed).then((reply) => {
              if (reply.status !== 'ok' || reply.from !== since.offset + 1 || reply.bodies.length !== missed) return null;
              return reply.bodies.map((body, i) => this.ctx.positioned(body, since.epoch, since.offset + 1 + i));
            }),
          ),
        );
        const arrived = fetched.flatMap((frames) => frames ?? []);
        reservation.settle(arrived.length, arrived.reduce((n, frame) => n + frame.length, 0));
        for (let w = 0; w < fetched.length; w++) {
          const streamFrames = fetched[w]!;
          if (streamFrames === null) {
            recovered = false;
            continue;
          }
          const outcome = await this.writer.replay(streamFrames, reservation);
          if (outcome === ReplayOutcome.CLOSED) return false;
          if (outcome === ReplayOutcome.STALLED) {
            // Policy drop: what is not replayed is skipped, and the ack says so.
            for (let rest = w + 1; rest < fetched.length; rest++) this.ctx.stats[WorkerStat.slowClientDrops] += fetched[rest]?.length ?? 0;
            for (let rest = at + REPLAY_WINDOW; rest < wanted.length; rest++) this.ctx.stats[WorkerStat.slowClientDrops] += wanted[rest]!.missed;
            return false;
          }
        }
      } finally {
        reservation.end();
      }
    }
    return recovered;
  }

  /**
   * Inbound rate limit. A frame over the limit is not processed: it is counted and, when it carries an
   * id, answered with ERR_RATE_LIMITED. `clientRateBurst` rejected frames in a row (sustained abuse,
   * not a burst) close the connection with 4029.
   */
  private admit(text: string | null): boolean {
    if (this.closeAfterReplies === null && (this.bucket === null || this.bucket.take(performance.now()))) {
      this.rateStrikes = 0;
      return true;
    }
    const stats = this.ctx.stats;
    stats[WorkerStat.rateLimitedFrames]++;
    if (this.closeAfterReplies !== null) return false; // closing: nothing more is served or answered
    if (++this.rateStrikes >= this.ctx.config.clientRateBurst) {
      if (this.ws.readyState === OPEN) {
        stats[WorkerStat.rateLimitDisconnects]++;
        const close = () => this.ws.close(Close.RATE_LIMITED.code, Close.RATE_LIMITED.reason);
        if (this.replies.length === 0) close();
        else this.closeAfterReplies = close;
      }
      return false;
    }
    const id = text === null ? undefined : requestIdOf(text);
    if (id !== undefined) {
      this.answer(this.reserve(), errorFrame({ code: WireErrorCodes.RATE_LIMITED, message: `over ${this.ctx.config.clientRateLimit} frames per second`, id }));
    }
    return false;
  }

  private apply(command: Exclude<ClientCommand, { event: 'refresh' }>): FrameError | null {
    switch (command.event) {
      case 'ping':
        return null;
      case 'subscribe': {
        const grants = this.grants;
        if (grants !== null && !command.topics.every((topic) => isGranted(grants, topic))) {
          // Refused whole: a frame is never half applied.
          this.ctx.stats[WorkerStat.forbiddenSubscriptions]++;
          return withId({ code: WireErrorCodes.FORBIDDEN, message: 'subscription outside the granted topics' }, command.id);
        }
        const refusal = this.budget.refusal(command.topics, this.topics, command.mode === 'replace');
        if (refusal !== null) return withId(refusal, command.id);
        try {
          const max = this.ctx.config.maxSubscriptions;
          if (command.mode === 'replace') {
            for (const topic of this.topics) if (topic !== command.topics[0]) this.unsubscribe(topic);
          } else {
            let added = 0;
            for (const topic of new Set(command.topics)) if (!this.topics.has(topic)) added++;
            if (this.topics.size + added > max) {
              return withId({ code: WireErrorCodes.TOO_MANY_SUBSCRIPTIONS, message: `at most ${max} subscriptions per connection` }, command.id);
            }
          }
          for (const topic of command.topics) this.subscribe(topic);
          return null;
        } finally {
          this.budget.settle(); // the new topics are reported to main by now, and counted as such
        }
      }
      case 'unsubscribe':
        if (command.topics === null) for (const topic of this.topics) this.unsubscribe(topic);
        else for (const topic of command.topics) this.unsubscribe(topic);
        return null;
    }
  }

  /**
   * Verifies a fresh token for the same identity. Frames that follow wait for the outcome so that
   * they see the new grants. A refused refresh keeps the current grants (and their expiry).
   */
  private refresh(token: string, id: RequestId | undefined): void {
    const verifier = this.ctx.guard.verifier;
    const stats = this.ctx.stats;
    const place = id === undefined ? -1 : this.reserve();
    if (verifier === null || this.grants === null) {
      stats[WorkerStat.tokenRefreshFailures]++;
      stats[WorkerStat.badFrames]++;
      this.answer(place, id === undefined ? null : errorFrame({ code: WireErrorCodes.BAD_REQUEST, message: 'authentication is not enabled', id }));
      return;
    }
    const sub = this.grants.sub;
    this.held = [];
    void verifier.verify(token).then((result) => {
      if (this.held === null) return; // closed meanwhile
      if (result.ok && result.grants.sub === sub) {
        this.grants = result.grants;
        stats[WorkerStat.tokenRefreshes]++;
        // Narrowed grants: drop what they no longer cover.
        for (const topic of this.topics) if (!isGranted(result.grants, topic)) this.unsubscribe(topic);
        this.armExpiry();
        this.answer(place, id === undefined ? null : ackFrame(id));
      } else {
        stats[WorkerStat.tokenRefreshFailures]++;
        stats[WorkerStat.badFrames]++;
        this.ctx.log.debug({ reason: result.ok ? 'other-sub' : result.reason }, 'token refresh refused');
        this.answer(place, id === undefined ? null : errorFrame({ code: WireErrorCodes.UNAUTHORIZED, message: 'token refused', id }));
      }
      this.resume();
    });
  }

  /** Ends an asynchronous step: the frames that waited are handled in order (one may start another step). */
  private resume(): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    for (let i = 0; i < held.length; i++) {
      this.handle(held[i]!);
      if (this.held !== null) {
        // That frame started another step: the rest wait for it in turn.
        (this.held as string[]).push(...held.slice(i + 1));
        return;
      }
    }
  }

  /** Closes the connection with 1008 when its token expires (re-armed by every accepted refresh). */
  private armExpiry(): void {
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.expiry = null;
    const expiresAt = this.grants?.expiresAt ?? null;
    if (expiresAt === null) return;
    // setTimeout holds at most 2^31-1 ms (~24.8 days): a longer wait re-arms when it fires.
    const wait = Math.min(Math.max(0, expiresAt - Date.now()), MAX_TIMER_MS);
    this.expiry = setTimeout(() => {
      this.expiry = null;
      if (Date.now() < expiresAt) {
        this.armExpiry();
        return;
      }
      this.ctx.stats[WorkerStat.tokenExpiredCloses]++;
      this.writer.closeThenCut(Close.POLICY_VIOLATION);
    }, wait);
    this.expiry.unref();
  }

  private subscribe(topic: string): void {
    if (this.topics.has(topic)) return;
    this.topics.add(topic);
    this.budget.charge(topic);
    this.ctx.trie.add(topic, this.writer);
    this.ctx.stats[WorkerStat.subscriptions]++;
  }

  /**
   * gopusher: the connection joined `card` through `topic` (already subscribed): it speaks gopusher
   * from now on, and counts as online for the card while it holds any of the card's joined topics.
   */
  private join(topic: string, card: string): void {
    this.writer.variant = Variant.GOPUSHER;
    this.joins ??= new Map();
    if (this.joins.has(topic)) return; // joined again: nothing changes
    this.joins.set(topic, card);
    this.joinedCards ??= new Map();
    const n = this.joinedCards.get(card) ?? 0;
    this.joinedCards.set(card, n + 1);
    if (n === 0) this.ctx.presence.joined(card);
  }

  /** A joined topic was dropped (unsubscribe, replaced, grants narrowed, closed). */
  private unjoin(topic: string): void {
    const card = this.joins?.get(topic);
    if (card === undefined) return;
    this.joins!.delete(topic);
    const n = this.joinedCards!.get(card)! - 1;
    if (n > 0) this.joinedCards!.set(card, n);
    else {
      this.joinedCards!.delete(card);
      this.ctx.presence.left(card);
    }
  }

  private unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return;
    this.unjoin(topic);
    this.budget.refund(topic);
    this.ctx.trie.remove(topic, this.writer);
    this.ctx.stats[WorkerStat.subscriptions]--;
  }

  /** A refused frame: counted, and answered only when it carries an id (original clients expect nothing but pushes). */
  private reject(error: FrameError): void {
    this.ctx.stats[WorkerStat.badFrames]++;
    this.ctx.log.debug({ conn: this.id, code: error.code, message: error.message }, 'client frame refused');
    // Original clients expect nothing but pushes: errors are answered only when asked (an id).
    if (error.id !== undefined) this.answer(this.reserve(), errorFrame(error));
  }

  /** Takes the next place in the reply order. */
  private reserve(): number {
    this.replies.push(null);
    return this.replyBase + this.replies.length - 1;
  }

  /** Place numbers of `replies[0]`: places are numbered from the connection's start. */
  private replyBase = 0;

  /** Fills a place (null: answered with nothing) and sends every reply now at the head of the line. */
  private answer(place: number, text: string | null): void {
    if (place === -1) return;
    this.replies[place - this.replyBase] = text ?? '';
    let sent = 0;
    while (sent < this.replies.length && this.replies[sent] !== null) {
      const reply = this.replies[sent]!;
      if (reply !== '') this.writer.reply(reply);
      sent++;
    }
    if (sent > 0) {
      this.replies.splice(0, sent);
      this.replyBase += sent;
    }
    if (this.replies.length === 0 && this.closeAfterReplies !== null) {
      const close = this.closeAfterReplies;
      this.closeAfterReplies = () => {}; // closing: still refuses every later frame
      close();
    }
  }
}

function withId(error: FrameError, id: RequestId | undefined): FrameError {
  return id === undefined ? error : { ...error, id };
}
