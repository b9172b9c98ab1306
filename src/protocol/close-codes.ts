/**
 * WebSocket close codes the gateway sends, each with the reason text that goes with it and when it is
 * sent. The README's close-code table is generated from this one (scripts/gen-docs.js).
 */
export const Close = {
  GOING_AWAY: { code: 1001, reason: 'gateway shutting down', when: 'gateway shutting down (reconnect with jitter)' },
  POLICY_VIOLATION: {
    code: 1008,
    reason: 'token expired',
    when: "policy: authentication or authorisation failed; the connection's token expired without a `refresh` (see Security); or a message arrived in more pieces (reads of a frame, or fragments) than `--max-frame-bytes` allows: max(256, N / 1024); sent by ws",
  },
  MESSAGE_TOO_BIG: { code: 1009, reason: 'frame too large', when: 'frame too large (over `--max-frame-bytes`; sent by ws)' },
  INTERNAL_ERROR: { code: 1011, reason: 'worker failed, reconnect', when: 'the worker owning the connection failed; reconnect (another worker takes over)' },
  SLOW_CLIENT: { code: 4008, reason: 'slow client', when: 'slow client: could not keep up and was disconnected (`--slow-client-policy close`)' },
  RATE_LIMITED: { code: 4029, reason: 'rate limit exceeded', when: 'rate limited: kept sending frames over `--client-rate-limit` (see *Inbound rate limit*)' },
} as const;

export type CloseName = keyof typeof Close;

/** The codes alone, by name (public API). */
export const CloseCodes = Object.freeze(Object.fromEntries(Object.entries(Close).map(([name, c]) => [name, c.code]))) as {
  readonly [K in CloseName]: (typeof Close)[K]['code'];
};
