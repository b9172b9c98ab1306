/**
 * gopusher's `service Rpc { Push, System, IsOnline, Group }` (proto/rpc.proto), once for both ways
 * in: the gRPC server (grpc-server.ts) and the grpc-gateway JSON routes of the HTTP ingress
 * (ingress/http-ingress.ts). Both validate with the same code and fail with the same messages; a bad
 * request pushes nothing.
 *
 * - Push: one message per distinct card, on the card's topic (`C`, or `C:A` with `appID` A:
 *   protocol/identity.ts), whose body is `{"topic": "C", "data": {"from": F, "content": X}}`; connections
 *   that joined the card get it as gopusher's `{"type":1,"data":X}` (protocol/gopusher-frames.ts),
 *   connections subscribed to the topic get that body as it is.
 * - IsOnline, Group, System: the whole cluster's presence, from the MPC's table (mpc/presence.ts).
 */
import { availableParallelism } from 'node:os';
import { ErrorCodes, TormqError } from '../errors.js';
import { identityIdError, identityTopic } from '../protocol/identity.js';
import { nestedDeeperThan } from '../protocol/json-depth.js';
import { rootOf, topicError } from '../protocol/topic.js';
import { encodeBody } from '../sdk/publisher.js';
import type { PresenceView } from '../mpc/presence.js';

/** gRPC status codes used here (the numbers are gRPC's). */
export const GrpcStatus = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** A call that failed with a gRPC status (INVALID_ARGUMENT for a bad request) and its message. */
export class GopusherError extends Error {
  constructor(
    readonly status: GrpcStatusCode,
    message: string,
  ) {
    super(message);
    this.name = 'GopusherError';
  }
}

export interface GopusherLimits {
  /** Most card ids one push may name. */
  readonly maxCardsPerPush: number;
  /** Largest message the MPC takes (its --max-message-bytes): a push whose message would be larger is refused. */
  readonly maxMessageBytes: number;
  /** Longest topic the MPC takes (its --max-topic-length): card id, `:` and app id together. */
  readonly maxTopicLength: number;
  /** Deepest nesting of a JSON content (HTTP only: gRPC content is a string). */
  readonly maxContentDepth: number;
}

export const GOPUSHER_DEFAULT_LIMITS: GopusherLimits = { maxCardsPerPush: 1000, maxMessageBytes: 1024 * 1024, maxTopicLength: 256, maxContentDepth: 99 };

/** A push as given: the PushRequest's fields, not yet checked (JSON from HTTP may hold anything). */
export interface PushInput {
  readonly from?: unknown;
  readonly to?: unknown;
  readonly appID?: unknown;
  readonly content?: unknown;
}

/** One message of a push: its topic's root (the ZeroMQ key) and its body. */
export interface PushMessage {
  readonly topic: string;
  readonly root: string;
  readonly body: string;
}

export interface SystemReply {
  cpuNum: number;
  goroutineNum: number;
  clientNum: number;
  groupNum: number;
}

const invalid = (message: string) => new GopusherError(GrpcStatus.INVALID_ARGUMENT, message);

/**
 * Checks a push and builds its messages; throws GopusherError(INVALID_ARGUMENT) naming the first
 * problem. proto3 semantics: `from`, `appID` and `content` may be absent (""), `appID` "" is no app.
 * Over HTTP `content` may also be any JSON value (a tormq extension), pushed as that value.
 */
export function buildPush(input: PushInput, limits: GopusherLimits = GOPUSHER_DEFAULT_LIMITS): PushMessage[] {
  const from = input.from ?? '';
  if (typeof from !== 'string') throw invalid('from must be a string');
  const to = input.to ?? [];
  if (!Array.isArray(to)) throw invalid('to must be a list of card ids');
  if (to.length === 0) throw invalid('to must name at least one card id');
  if (to.length > limits.maxCardsPerPush) throw invalid(`to may name at most ${limits.maxCardsPerPush} card ids`);
  const rawApp = input.appID ?? '';
  if (typeof rawApp !== 'string') throw invalid('appID must be a string');
  const appId = rawApp === '' ? null : rawApp;
  if (appId !== null) {
    const problem = identityIdError(appId, 'appID');
    if (problem !== null) throw invalid(problem);
  }
  const content = input.content ?? '';
  // The message's data is {"from", "content"}: content sits one level down.
  if (typeof content === 'object' && nestedDeeperThan(content, limits.maxContentDepth)) {
    throw invalid(`content must not nest arrays and objects deeper than ${limits.maxContentDepth} levels`);
  }
  const messages: PushMessage[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < to.length; i++) {
    const problem = identityIdError(to[i], `to[${i}]`);
    if (problem !== null) throw invalid(problem);
    const topic = identityTopic(to[i] as string, appId);
    if (topicError(topic, limits.maxTopicLength) !== null) throw invalid(`to[${i}]: card id and appID together must be at most ${limits.maxTopicLength} characters`);
    if (seen.has(topic)) continue;
    seen.add(topic);
    let body: string;
    try {
      body = encodeBody(topic, { from, content });
    } catch (error) {
      throw invalid(`content cannot be encoded: ${(error as Error).message}`);
    }
    const bytes = Buffer.byteLength(body);
    if (bytes > limits.maxMessageBytes) throw invalid(`the message to ${topic} would be ${bytes} bytes, over the MPC's limit of ${limits.maxMessageBytes}`);
    messages.push({ topic, root: rootOf(topic), body });
  }
  return messages;
}

/** The card of IsOnline and Group (`cardID`); throws INVALID_ARGUMENT when it is not a card id. */
export function checkCardId(cardID: unknown): string {
  const problem = identityIdError(cardID ?? '', 'cardID');
  if (problem !== null) throw invalid(problem);
  return cardID as string;
}

export interface GopusherServiceOptions {
  /** Hands one message to the MPC (a Publisher's sendRaw); rejects with ERR_PUBLISHER_QUEUE_FULL when full. */
  send(root: string, body: string): Promise<void>;
  /** The cluster's presence (the MPC's table), or null where it is not known (IsOnline & co. are then UNIMPLEMENTED). */
  presence: PresenceView | null;
  limits?: Partial<GopusherLimits>;
}

export class GopusherService {
  /** Messages handed to the MPC. */
  pushed = 0;
  /** Calls refused (bad request, or the publisher's queue full). */
  refused = 0;
  private readonly limits: GopusherLimits;

  constructor(private readonly options: GopusherServiceOptions) {
    this.limits = { ...GOPUSHER_DEFAULT_LIMITS, ...options.limits };
  }

  /** Push: resolves with gopusher's reply once every message is handed to the MPC. */
  async push(input: PushInput): Promise<{ code: number; message: string }> {
    let messages: PushMessage[];
    try {
      messages = buildPush(input, this.limits);
    } catch (error) {
      this.refused++;
      throw error;
    }
    // Sends queue synchronously in order: when the queue overflows, the refused ones are a suffix.
    const results = await Promise.allSettled(messages.map((m) => this.options.send(m.root, m.body)));
    const sent = results.filter((r) => r.status === 'fulfilled').length;
    this.pushed += sent;
    if (sent === results.length) return { code: 0, message: 'ok' };
    this.refused++;
    const failure = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error;
    const retry = failure instanceof TormqError && (failure.code === ErrorCodes.PUBLISHER_QUEUE_FULL || failure.code === ErrorCodes.PUBLISHER_CLOSED);
    throw new GopusherError(
      retry ? GrpcStatus.UNAVAILABLE : GrpcStatus.INTERNAL,
      `${sent} of ${results.length} messages handed to the MPC (the first ones of "to"), the rest not: ${failure.message}`,
    );
  }

  /** System: cluster-wide counts (README, "gopusher migration", for what each field means here). */
  system(): SystemReply {
    const totals = this.presence().totals();
    return { cpuNum: availableParallelism(), goroutineNum: totals.workers, clientNum: totals.clients, groupNum: totals.cards };
  }

  isOnline(cardID: unknown): { result: 'yes' | 'no' } {
    const card = checkCardId(cardID);
    return { result: this.presence().connections(card) > 0 ? 'yes' : 'no' };
  }

  /** Group: connections that joined the card, all gateways; -1 when none (gopusher's "no such group"). */
  group(cardID: unknown): { clientNum: number } {
    const card = checkCardId(cardID);
    const n = this.presence().connections(card);
    return { clientNum: n > 0 ? n : -1 };
  }

  private presence(): PresenceView {
    if (this.options.presence === null) {
      throw new GopusherError(GrpcStatus.UNIMPLEMENTED, 'presence (System, IsOnline, Group) is known only to tormq-mpc: this server was started without it');
    }
    return this.options.presence;
  }
}
