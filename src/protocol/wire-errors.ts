/**
 * Error codes the gateway sends to clients in `{"event":"error","id":…,"code":…,"message":…}`: part of
 * the wire protocol, stable, and apart from the codes of errors thrown in-process (errors.ts).
 */
export const WireErrorCodes = {
  /** A client frame was not valid JSON. */
  BAD_JSON: 'ERR_BAD_JSON',
  /** A client frame was JSON but not an object. */
  NOT_OBJECT: 'ERR_NOT_OBJECT',
  /** A client frame named an event the gateway does not know. */
  UNKNOWN_EVENT: 'ERR_UNKNOWN_EVENT',
  /** A frame's fields had the wrong shape (e.g. `topics` not an array). */
  BAD_REQUEST: 'ERR_BAD_REQUEST',
  /** A topic is empty, has an empty segment, a control character, or is too long. */
  INVALID_TOPIC: 'ERR_INVALID_TOPIC',
  /** The connection would exceed its maximum number of subscriptions. */
  TOO_MANY_SUBSCRIPTIONS: 'ERR_TOO_MANY_SUBSCRIPTIONS',
  /** A topic to subscribe to has more segments than the gateway allows (`--max-topic-depth`). */
  TOPIC_TOO_DEEP: 'ERR_TOPIC_TOO_DEEP',
  /** The connection's topics would have more segments in all than it may hold (`--max-subscription-segments`). */
  SUBSCRIPTION_BUDGET: 'ERR_SUBSCRIPTION_BUDGET',
  /** The gateway holds as many distinct topics as --max-topics allows: no new one until some go. */
  TOPIC_LIMIT: 'ERR_TOPIC_LIMIT',
  /** Binary frames are not part of the client protocol. */
  BINARY_FRAME: 'ERR_BINARY_FRAME',
  /** The subscription lies outside the topics the connection was granted. */
  FORBIDDEN: 'ERR_FORBIDDEN',
  /** A token (in a refresh frame) was missing, invalid, expired or for another identity. */
  UNAUTHORIZED: 'ERR_UNAUTHORIZED',
  /** A client sent frames faster than the gateway allows. */
  RATE_LIMITED: 'ERR_RATE_LIMITED',
  /** `recover`/`since` of a subscribe are malformed, name streams outside the subscription, or need tormq.v2. */
  BAD_SINCE: 'ERR_BAD_SINCE',
} as const;

export type WireErrorCode = (typeof WireErrorCodes)[keyof typeof WireErrorCodes];
