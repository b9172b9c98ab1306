/** WebSocket close codes the gateway sends. The README's table mirrors this object. */
export const CloseCodes = {
  /** Gateway shutting down; reconnect with jitter. */
  GOING_AWAY: 1001,
  /** Authentication or authorisation failed. */
  POLICY_VIOLATION: 1008,
  /** A frame exceeded the maximum size. */
  MESSAGE_TOO_BIG: 1009,
  /** The gateway failed internally (e.g. the worker owning the connection died). */
  INTERNAL_ERROR: 1011,
  /** Slow client: could not keep up and was disconnected. */
  SLOW_CLIENT: 4008,
  /** Sent frames faster than the rate limit for too long (`--client-rate-limit`, `--client-rate-burst`). */
  RATE_LIMITED: 4029,
} as const;
