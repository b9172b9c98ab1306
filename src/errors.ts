/**
 * One error type for every condition tormq throws in-process, each with a stable string `code` (in the
 * style of ws's `WS_ERR_*`). Argument errors stay `TypeError`/`RangeError`; the codes sent to clients
 * in error frames are part of the wire protocol (protocol/wire-errors.ts).
 */
export const ErrorCodes = {
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
  /** A control call went to a worker that is not running, or that exited before answering. */
  WORKER_UNAVAILABLE: 'ERR_WORKER_UNAVAILABLE',
  /** A worker did not answer a control call in time. */
  WORKER_TIMEOUT: 'ERR_WORKER_TIMEOUT',
  /** The open-files limit (ulimit -n) leaves no descriptors for peers' sockets after the process's own and its reserve (gateway or MPC). */
  DESCRIPTOR_LIMIT: 'ERR_DESCRIPTOR_LIMIT',
  /** A test hook was called on a gateway started without `--enable-test-hooks`, or named no known action. */
  TEST_HOOK_REFUSED: 'ERR_TEST_HOOK_REFUSED',
  /** A TLS reload was asked of a server started without TLS. */
  TLS_NOT_ENABLED: 'ERR_TLS_NOT_ENABLED',
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
}

export interface ErrorRecord {
  code: ErrorCode;
  message: string;
}
