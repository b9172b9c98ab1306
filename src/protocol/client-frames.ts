/**
 * The client -> gateway protocol: JSON text frames (DESIGN.md, "Client -> gateway"). Parsing is pure:
 * bytes in, a typed command or a coded error out. The session decides what to do with it.
 */
import { WireErrorCodes as ErrorCodes, type WireErrorCode as ErrorCode } from './wire-errors.js';
import { identityIdError, identityTopic } from './identity.js';
import { topicError, topicMatches } from './topic.js';

export type RequestId = string | number;

/** A client's position in one stream: the last message it has of the stream's topic. */
export interface StreamPosition {
  readonly epoch: string;
  readonly offset: number;
}

export interface SubscribeCommand {
  event: 'subscribe';
  /** `topic`: the subscription set becomes exactly this topic (original semantics); `topics` adds. */
  mode: 'replace' | 'add';
  topics: string[];
  id?: RequestId;
  /** tormq.v2: replay what was missed since `since` before live messages (`recover: true`). */
  recover?: boolean;
  /** tormq.v2: the last position the client saw per stream topic (each a subscribed topic or an ancestor of one). */
  since?: Map<string, StreamPosition>;
  /**
   * gopusher's join of card `card` (the one topic is the identity's, protocol/identity.ts): the
   * connection speaks gopusher from then on (protocol/gopusher-frames.ts) and counts as online.
   */
  join?: { readonly card: string };
}

export type ClientCommand =
  | SubscribeCommand
  /** `topics === null`: drop every subscription (original semantics). */
  | { event: 'unsubscribe'; topics: string[] | null; id?: RequestId }
  | { event: 'ping'; id?: RequestId }
  /** A fresh token for the same identity before the current one expires (grants may change). */
  | { event: 'refresh'; token: string; id?: RequestId };

export interface FrameError {
  code: ErrorCode;
  message: string;
  /** Present when the frame carried a usable `id`: only then is the error sent back. */
  id?: RequestId;
}

export type ParseResult = { ok: true; command: ClientCommand } | { ok: false; error: FrameError };

export interface FrameLimits {
  maxTopicLength: number;
  /** Most topics one frame may name (a frame is rejected whole, never half applied). */
  maxTopicsPerFrame: number;
}

/** A usable request `id`: a string or a finite number. */
export function isRequestId(value: unknown): value is RequestId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

/**
 * The `id` of a frame without interpreting the rest (to answer a frame that will not be processed,
 * e.g. over the rate limit), or undefined when there is none usable.
 */
export function requestIdOf(text: string): RequestId | undefined {
  try {
    const id = (JSON.parse(text) as { id?: unknown } | null)?.id;
    return isRequestId(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

function fail(code: ErrorCode, message: string, id?: RequestId): ParseResult {
  return { ok: false, error: id === undefined ? { code, message } : { code, message, id } };
}

export function parseClientFrame(text: string, limits: FrameLimits): ParseResult {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return fail(ErrorCodes.BAD_JSON, 'frame is not valid JSON');
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    return fail(ErrorCodes.NOT_OBJECT, 'frame must be a JSON object');
  }
  const fields = frame as Record<string, unknown>;
  const rawId = fields.id;
  let id: RequestId | undefined;
  if (isRequestId(rawId)) id = rawId;
  else if (rawId !== undefined) return fail(ErrorCodes.BAD_REQUEST, 'id must be a string or a number');

  switch (fields.event) {
    case 'subscribe':
    case 'unsubscribe': {
      const event = fields.event;
      if (fields.topic !== undefined && fields.topics !== undefined) {
        return fail(ErrorCodes.BAD_REQUEST, `${event} takes "topic" or "topics", not both`, id);
      }
      let topics: string[] | null = null;
      if (fields.topic !== undefined) topics = [fields.topic as string];
      else if (fields.topics !== undefined) {
        if (!Array.isArray(fields.topics)) return fail(ErrorCodes.BAD_REQUEST, 'topics must be an array of strings', id);
        topics = fields.topics as string[];
      }
      if (topics === null) {
        if (event === 'subscribe') return fail(ErrorCodes.BAD_REQUEST, 'subscribe needs "topic" or "topics"', id);
        return { ok: true, command: withId({ event, topics: null }, id) };
      }
      if (topics.length > limits.maxTopicsPerFrame) {
        return fail(ErrorCodes.TOO_MANY_SUBSCRIPTIONS, `a frame may name at most ${limits.maxTopicsPerFrame} topics`, id);
      }
      for (let i = 0; i < topics.length; i++) {
        const problem = topicError(topics[i], limits.maxTopicLength);
        if (problem !== null) {
          const where = fields.topic !== undefined ? 'topic' : `topics[${i}]`;
          return fail(ErrorCodes.INVALID_TOPIC, `${where}: ${problem}`, id);
        }
      }
      if (event === 'subscribe') {
        const command: SubscribeCommand = withId({ event, mode: fields.topic !== undefined ? 'replace' : 'add', topics }, id);
        const problem = parseRecovery(fields, command, limits);
        if (problem !== null) return fail(ErrorCodes.BAD_SINCE, problem, id);
        return { ok: true, command };
      }
      return { ok: true, command: withId({ event, topics }, id) };
    }
    case 'ping':
      return { ok: true, command: withId({ event: 'ping' }, id) };
    case 'refresh':
      if (typeof fields.token !== 'string' || fields.token.length === 0) {
        return fail(ErrorCodes.BAD_REQUEST, 'refresh needs a non-empty string "token"', id);
      }
      return { ok: true, command: withId({ event: 'refresh', token: fields.token }, id) };
    case 'join':
      return parseJoin(fields.data, limits, id);
    default:
      return fail(
        ErrorCodes.UNKNOWN_EVENT,
        typeof fields.event === 'string' ? `unknown event "${fields.event.slice(0, 64)}"` : 'frame needs a string "event"',
        id,
      );
  }
}

/**
 * gopusher's `{"event":"join","data":{"card_id":"C","app_id":"A"}}` is a subscribe that adds the
 * identity's topic (protocol/identity.ts), so limits, grants and the trie treat it like any other;
 * `join` marks it, for gopusher's frames and presence.
 */
function parseJoin(data: unknown, limits: FrameLimits, id: RequestId | undefined): ParseResult {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return fail(ErrorCodes.BAD_REQUEST, 'join needs "data": {"card_id": …, "app_id"?: …}', id);
  }
  const { card_id: cardId, app_id: rawAppId } = data as Record<string, unknown>;
  // gopusher: an empty app_id is no app (the connection gets every push to the card).
  const appId = rawAppId === '' ? null : rawAppId;
  const problem = identityIdError(cardId, 'card_id') ?? (appId === undefined || appId === null ? null : identityIdError(appId, 'app_id'));
  if (problem !== null) return fail(ErrorCodes.INVALID_TOPIC, problem, id);
  const topic = identityTopic(cardId as string, appId as string | null | undefined);
  if (topic.length > limits.maxTopicLength) {
    return fail(ErrorCodes.INVALID_TOPIC, `card_id and app_id together must be under ${limits.maxTopicLength} characters`, id);
  }
  return { ok: true, command: withId({ event: 'subscribe', mode: 'add', topics: [topic], join: { card: cardId as string } }, id) };
}

/**
 * `recover` and `since` of a subscribe (tormq.v2): `since` maps stream topics (each a subscribed topic
 * or an ancestor of one) to `{"epoch": string, "offset": integer >= 0}`. Returns what is wrong, or null.
 */
function parseRecovery(fields: Record<string, unknown>, command: SubscribeCommand, limits: FrameLimits): string | null {
  const { recover, since } = fields;
  if (recover !== undefined && typeof recover !== 'boolean') return 'recover must be true or false';
  if (since === undefined) {
    if (recover === true) command.recover = true;
    return null;
  }
  if (recover !== true) return 'since needs "recover": true';
  if (since === null || typeof since !== 'object' || Array.isArray(since)) return 'since must be an object {"<topic>": {"epoch": …, "offset": …}}';
  const entries = Object.entries(since as Record<string, unknown>);
  if (entries.length > limits.maxTopicsPerFrame) return `since may name at most ${limits.maxTopicsPerFrame} streams`;
  const positions = new Map<string, StreamPosition>();
  for (const [topic, position] of entries) {
    const shown = JSON.stringify(topic.slice(0, 64));
    if (topicError(topic, limits.maxTopicLength) !== null) return `since: ${shown} is not a valid topic`;
    if (!command.topics.some((subscribed) => topicMatches(topic, subscribed))) {
      return `since: ${shown} is not a stream of this subscription (a subscribed topic or an ancestor of one)`;
    }
    if (position === null || typeof position !== 'object') return `since[${shown}] must be {"epoch": string, "offset": integer}`;
    const { epoch, offset } = position as Record<string, unknown>;
    if (typeof epoch !== 'string' || epoch.length > 64) return `since[${shown}].epoch must be a string`;
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) return `since[${shown}].offset must be an integer of at least 0`;
    positions.set(topic, { epoch, offset });
  }
  command.recover = true;
  command.since = positions;
  return null;
}

function withId<C extends ClientCommand>(command: C, id: RequestId | undefined): C {
  if (id !== undefined) command.id = id;
  return command;
}

/** Gateway -> client control replies (only sent in answer to frames with an `id`, and `pong`). */
export function ackFrame(id: RequestId): string {
  return JSON.stringify({ event: 'ack', id });
}

/** A tormq.v2 subscribe's ack: where each stream of the subscription stands, and whether the recovery was complete. */
export function positionsAckFrame(id: RequestId, positions: ReadonlyMap<string, StreamPosition>, recovered: boolean | undefined): string {
  const ack: Record<string, unknown> = { event: 'ack', id };
  if (recovered !== undefined) ack.recovered = recovered;
  ack.positions = Object.fromEntries([...positions].map(([topic, p]) => [topic, { epoch: p.epoch, offset: p.offset }]));
  return JSON.stringify(ack);
}

/** tormq.v2: continuity of these subscriptions was lost; the client reloads or resubscribes with `recover`. */
export function gapFrame(topics: readonly string[]): string {
  return JSON.stringify({ event: 'gap', topics });
}

export function errorFrame(error: FrameError): string {
  return JSON.stringify({ event: 'error', id: error.id, code: error.code, message: error.message });
}

export function pongFrame(id?: RequestId): string {
  return id === undefined ? '{"event":"pong"}' : JSON.stringify({ event: 'pong', id });
}
