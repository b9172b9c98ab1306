/**
 * One client connection, owned by one worker: what it may do (grants, rate limit), what it asked for
 * (its subscriptions, in the trie through its writer) and its requests and their answers. Its
 * outbound path, bounded against clients that stop reading, is its Writer.
 */
import { performance } from 'node:perf_hooks';
import type { WebSocket } from 'ws';
import { Close } from '../../protocol/close-codes.js';
import { rootOf } from '../../protocol/topic.js';
import { ackFrame, errorFrame, parseClientFrame, pongFrame, requestIdOf, type ClientCommand, type FrameError, type RequestId } from '../../protocol/client-frames.js';
import { WireErrorCodes } from '../../protocol/wire-errors.js';
import { WorkerStat } from '../shared/counters.js';
import { isGranted, type Grants } from './auth.js';
import type { WorkerContext } from './context.js';
import { TokenBucket } from './token-bucket.js';
import { Writer } from './writer.js';

const OPEN = 1;
/** Frames held while a refresh token is verified (verification takes microseconds; this is a bound, not a budget). */
const MAX_HELD_FRAMES = 64;
const MAX_TIMER_MS = 2 ** 31 - 1;
let nextConnectionId = 1;

export class Session {
  /** Names the connection in its worker's logs (with the `worker` binding; counts from 1 again in a replaced worker). */
  readonly id = nextConnectionId++;
  /** Answered the last heartbeat ping. */
  alive = true;
  readonly topics = new Set<string>();
  readonly writer: Writer;
  /** Inbound frame limit (null when `clientRateLimit` is 0). */
  private readonly bucket: TokenBucket | null;
  /** Frames rejected by the rate limit since the last accepted one. */
  private rateStrikes = 0;
  /** Subscribe acks waiting for their roots to be routed (see handle). */
  private owedAcks = 0;
  /** A close decided while acks were owed: it follows them, so served frames are still answered. */
  private closeAfterAcks: (() => void) | null = null;

  /** What the connection's token allows (null: authentication is off). Replaced by a refresh. */
  private grants: Grants | null;
  /** Frames that arrived while a refresh token was being verified, applied after it in order. */
  private held: string[] | null = null;
  private expiry: NodeJS.Timeout | null = null;

  constructor(
    readonly ws: WebSocket,
    private readonly ctx: WorkerContext,
    grants: Grants | null = null,
  ) {
    this.writer = new Writer(ws, ctx.config, ctx.stats);
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

  /** A frame past the rate limit (held frames replayed after a refresh come back here, not to onText). */
  private handle(text: string): void {
    if (this.held !== null) {
      if (this.held.length < MAX_HELD_FRAMES) this.held.push(text);
      else this.reject({ code: WireErrorCodes.RATE_LIMITED, message: 'too many frames while a refresh is verified' });
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
    const error = this.apply(command);
    if (error !== null) this.reject(error);
    else if (command.event === 'ping') this.reply(pongFrame(command.id));
    else if (command.id === undefined) return;
    else if (command.event !== 'subscribe') this.reply(ackFrame(command.id));
    else {
      // Acknowledged once main routes the new roots to this worker: an ack means "messages published
      // from now on reach you" (root-routing.ts). Immediate when the roots were routed already.
      const ack = ackFrame(command.id);
      this.owedAcks++;
      this.ctx.routing.whenRouted(command.topics.map(rootOf), () => {
        this.reply(ack);
        if (--this.owedAcks === 0 && this.closeAfterAcks !== null) this.closeAfterAcks();
      });
    }
  }

  onBinary(): void {
    if (!this.admit(null)) return;
    this.reject({ code: WireErrorCodes.BINARY_FRAME, message: 'binary frames are not part of the protocol' });
  }

  /**
   * Inbound rate limit. A frame over the limit is not processed: it is counted and, when it carries an
   * id, answered with ERR_RATE_LIMITED. `clientRateBurst` rejected frames in a row (sustained abuse,
   * not a burst) close the connection with 4029.
   */
  private admit(text: string | null): boolean {
    if (this.closeAfterAcks === null && (this.bucket === null || this.bucket.take(performance.now()))) {
      this.rateStrikes = 0;
      return true;
    }
    const stats = this.ctx.stats;
    stats[WorkerStat.rateLimitedFrames]++;
    if (this.closeAfterAcks !== null) return false; // closing: nothing more is served or answered
    if (++this.rateStrikes >= this.ctx.config.clientRateBurst) {
      if (this.ws.readyState === OPEN) {
        stats[WorkerStat.rateLimitDisconnects]++;
        const close = () => this.ws.close(Close.RATE_LIMITED.code, Close.RATE_LIMITED.reason);
        if (this.owedAcks === 0) close();
        else this.closeAfterAcks = close;
      }
      return false;
    }
    const id = text === null ? undefined : requestIdOf(text);
    if (id !== undefined) {
      this.reply(errorFrame({ code: WireErrorCodes.RATE_LIMITED, message: `over ${this.ctx.config.clientRateLimit} frames per second`, id }));
    }
    return false;
  }

  /** Removes every subscription (connection closed). */
  dispose(): void {
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.expiry = null;
    this.held = null;
    for (const topic of this.topics) this.ctx.trie.remove(topic, this.writer);
    this.ctx.stats[WorkerStat.subscriptions] -= this.topics.size;
    this.topics.clear();
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
    if (verifier === null || this.grants === null) {
      stats[WorkerStat.tokenRefreshFailures]++;
      this.reject(withId({ code: WireErrorCodes.BAD_REQUEST, message: 'authentication is not enabled' }, id));
      return;
    }
    const sub = this.grants.sub;
    this.held = [];
    void verifier.verify(token).then((result) => {
      const held = this.held;
      if (held === null) return; // closed meanwhile
      this.held = null;
      if (result.ok && result.grants.sub === sub) {
        this.grants = result.grants;
        stats[WorkerStat.tokenRefreshes]++;
        // Narrowed grants: drop what they no longer cover.
        for (const topic of this.topics) if (!isGranted(result.grants, topic)) this.unsubscribe(topic);
        this.armExpiry();
        if (id !== undefined) this.reply(ackFrame(id));
      } else {
        stats[WorkerStat.tokenRefreshFailures]++;
        this.ctx.log.debug({ reason: result.ok ? 'other-sub' : result.reason }, 'token refresh refused');
        this.reject(withId({ code: WireErrorCodes.UNAUTHORIZED, message: 'token refused' }, id));
      }
      for (let i = 0; i < held.length; i++) {
        // A held frame may itself be a refresh: the rest wait for that one in turn.
        const waiting = this.held as string[] | null; // handle below may have started another refresh
        if (waiting !== null) {
          for (let j = i; j < held.length; j++) waiting.push(held[j]!);
          break;
        }
        this.handle(held[i]!);
      }
    });
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
    this.ctx.trie.add(topic, this.writer);
    this.ctx.stats[WorkerStat.subscriptions]++;
  }

  private unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return;
    this.ctx.trie.remove(topic, this.writer);
    this.ctx.stats[WorkerStat.subscriptions]--;
  }

  private reject(error: FrameError): void {
    this.ctx.stats[WorkerStat.badFrames]++;
    this.ctx.log.debug({ conn: this.id, code: error.code, message: error.message }, 'client frame refused');
    // Original clients expect nothing but pushes: errors are answered only when asked (an id).
    if (error.id !== undefined) this.reply(errorFrame(error));
  }

  private reply(text: string): void {
    this.writer.reply(text);
  }
}

function withId(error: FrameError, id: RequestId | undefined): FrameError {
  return id === undefined ? error : { ...error, id };
}
