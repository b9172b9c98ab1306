/**
 * One error type for every tormq condition, each with a stable string `code`
 * (in the style of ws's `WS_ERR_*`). Argument errors stay `TypeError`/`RangeError`.
 */
export const ErrorCodes = {
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
  /** Binary frames are not part of the client protocol. */
  BINARY_FRAME: 'ERR_BINARY_FRAME',
  /** The subscription lies outside the topics the connection was granted. */
  FORBIDDEN: 'ERR_FORBIDDEN',
  /** A token (in a refresh frame) was missing, invalid, expired or for another identity. */
  UNAUTHORIZED: 'ERR_UNAUTHORIZED',
  /** A client sent frames faster than the gateway allows. */
  RATE_LIMITED: 'ERR_RATE_LIMITED',
  /** The publisher was closed. */
  PUBLISHER_CLOSED: 'ERR_PUBLISHER_CLOSED',
  /** The publisher's bounded send queue is full. */
  PUBLISHER_QUEUE_FULL: 'ERR_PUBLISHER_QUEUE_FULL',
  /** `Publisher.ready()` timed out before any subscriber was seen. */
  READY_TIMEOUT: 'ERR_READY_TIMEOUT',
  /** A port or address could not be bound. */
  BIND_FAILED: 'ERR_BIND_FAILED',
  /** A worker thread failed. */
  WORKER_FAILED: 'ERR_WORKER_FAILED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class TormqError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TormqError';
    this.code = code;
  }

  /** The form an error takes when it crosses a thread boundary. */
  toRecord(): ErrorRecord {
    return { code: this.code, message: this.message };
  }

  static fromRecord(record: ErrorRecord): TormqError {
    return new TormqError(record.code, record.message);
  }
}

export interface ErrorRecord {
  code: ErrorCode;
  message: string;
}
