/**
 * The client -> gateway protocol: JSON text frames (DESIGN.md, "Client -> gateway"). Parsing is pure:
 * bytes in, a typed command or a coded error out. The session decides what to do with it.
 */
import { WireErrorCodes as ErrorCodes, type WireErrorCode as ErrorCode } from './wire-errors.js';
import { identityIdError, identityTopic } from './identity.js';
import { topicError } from './topic.js';

export type RequestId = string | number;

export type ClientCommand =
  /** `topic`: the subscription set becomes exactly this topic (original semantics). */
  | { event: 'subscribe'; mode: 'replace' | 'add'; topics: string[]; id?: RequestId }
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
        return { ok: true, command: withId({ event, mode: fields.topic !== undefined ? 'replace' : 'add', topics }, id) };
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
 * identity's topic (protocol/identity.ts), so limits, grants and the trie treat it like any other.
 */
function parseJoin(data: unknown, limits: FrameLimits, id: RequestId | undefined): ParseResult {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return fail(ErrorCodes.BAD_REQUEST, 'join needs "data": {"card_id": …, "app_id"?: …}', id);
  }
  const { card_id: cardId, app_id: appId } = data as Record<string, unknown>;
  const problem = identityIdError(cardId, 'card_id') ?? (appId === undefined || appId === null ? null : identityIdError(appId, 'app_id'));
  if (problem !== null) return fail(ErrorCodes.INVALID_TOPIC, problem, id);
  const topic = identityTopic(cardId as string, appId as string | null | undefined);
  if (topic.length > limits.maxTopicLength) {
    return fail(ErrorCodes.INVALID_TOPIC, `card_id and app_id together must be under ${limits.maxTopicLength} characters`, id);
  }
  return { ok: true, command: withId({ event: 'subscribe', mode: 'add', topics: [topic] }, id) };
}

function withId<C extends ClientCommand>(command: C, id: RequestId | undefined): C {
  if (id !== undefined) command.id = id;
  return command;
}

/** Gateway -> client control replies (only sent in answer to frames with an `id`, and `pong`). */
export function ackFrame(id: RequestId): string {
  return JSON.stringify({ event: 'ack', id });
}

export function errorFrame(error: FrameError): string {
  return JSON.stringify({ event: 'error', id: error.id, code: error.code, message: error.message });
}

export function pongFrame(id?: RequestId): string {
  return id === undefined ? '{"event":"pong"}' : JSON.stringify({ event: 'pong', id });
}
