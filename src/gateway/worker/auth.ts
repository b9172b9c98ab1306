/**
 * Connection security for a worker: the origin allowlist and JWT authentication, both decided at the
 * HTTP upgrade before the WebSocket handshake completes, and the grants (topic prefixes) a token
 * carries, which the session enforces on every subscription.
 *
 * Tokens (verified with `jose`, algorithm pinned by configuration: HS256 for a shared secret, the
 * key's own algorithm for a public key; `alg: none` never verifies):
 * - `sub` (required): the identity. With `authSubscribeSub` the connection is subscribed to the topic
 *   `sub` at once, and `sub` (and below) counts as granted.
 * - `topics` (optional): granted topic prefixes. A subscription `S` is allowed when `S === P` or `S`
 *   starts with `P + ":"` for some granted `P`. Absent means nothing is granted (except `sub` above).
 * - `exp` (required), `nbf` (optional): checked with `authClockToleranceSec` of leeway; a connection
 *   is closed with 1008 when its token expires unless it sent a fresh one (`refresh`).
 *
 * Where the token is read (first found wins): `Authorization: Bearer <jwt>`, then a
 * `Sec-WebSocket-Protocol` entry `bearer.<jwt>` (browsers cannot set headers; they offer
 * `["tormq", "bearer.<jwt>"]` and the server answers `tormq`), then the `token` query parameter.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { errors as joseErrors, importSPKI, jwtVerify, type JWTPayload } from 'jose';
import type { Logger } from '../../log.js';
import { isWithin, topicDepth, topicError } from '../../protocol/topic.js';
import type { GatewayConfig } from '../shared/config.js';
import { WorkerStat } from '../shared/counters.js';
import { algorithmForPublicKey, type AuthAlgorithm } from '../shared/security-options.js';
import { refuseUpgrade } from './upgrade-refusal.js';

/** The subprotocol a browser offers beside its `bearer.<jwt>` entry; the server selects it. */
export const TORMQ_SUBPROTOCOL = 'tormq';
/** The subprotocol that opts a connection into stream positions, recovery and gap notices. */
export const TORMQ_V2_SUBPROTOCOL = 'tormq.v2';
/** Prefix of the `Sec-WebSocket-Protocol` entry that carries a token. */
export const BEARER_SUBPROTOCOL_PREFIX = 'bearer.';
/** Longest token read from anywhere; longer ones are refused unparsed. */
export const MAX_TOKEN_LENGTH = 8192;
/** Most prefixes a `topics` claim may grant. */
export const MAX_GRANTED_TOPICS = 1024;

/** What a verified token allows one connection. Immutable; a refresh replaces it whole. */
export interface Grants {
  readonly sub: string;
  /** Granted prefixes, `sub` included when `authSubscribeSub` is on. */
  readonly prefixes: readonly string[];
  /** Topic to subscribe at connect (`sub` with `authSubscribeSub`), else null. */
  readonly autoSubscribe: string | null;
  /** When the connection must close unless refreshed (ms since the epoch, leeway included); null = never. */
  readonly expiresAt: number | null;
}

/** `true` when `grants` allow a subscription on `topic`. */
export function isGranted(grants: Grants, topic: string): boolean {
  for (const prefix of grants.prefixes) if (isWithin(topic, prefix)) return true;
  return false;
}

/** Why a token was refused: for logs and counters only, never sent to the client. */
export type TokenRejection = 'missing' | 'too-long' | 'invalid' | 'expired' | 'not-yet-valid' | 'bad-claims';

export type VerifyResult = { ok: true; grants: Grants } | { ok: false; reason: TokenRejection };

export interface TokenVerifierOptions {
  readonly secret?: string;
  readonly publicKey?: string;
  readonly subscribeSub?: boolean;
  readonly clockToleranceSec?: number;
  readonly maxTopicLength?: number;
  /** With `subscribeSub`: a `sub` deeper than this cannot be subscribed to, so the token is refused. */
  readonly maxTopicDepth?: number;
}

/** Verifies JWTs into grants. Pure apart from the clock: usable outside a worker (tests, tools). */
export class TokenVerifier {
  private constructor(
    private readonly key: Uint8Array | Awaited<ReturnType<typeof importSPKI>>,
    readonly algorithm: AuthAlgorithm,
    private readonly subscribeSub: boolean,
    private readonly clockToleranceSec: number,
    private readonly maxTopicLength: number,
    private readonly maxTopicDepth: number,
  ) {}

  static async create(options: TokenVerifierOptions): Promise<TokenVerifier> {
    const subscribeSub = options.subscribeSub ?? false;
    const tolerance = options.clockToleranceSec ?? 0;
    const maxTopicLength = options.maxTopicLength ?? 256;
    const maxTopicDepth = options.maxTopicDepth ?? Infinity;
    if (options.secret) return new TokenVerifier(new TextEncoder().encode(options.secret), 'HS256', subscribeSub, tolerance, maxTopicLength, maxTopicDepth);
    if (options.publicKey) {
      const algorithm = algorithmForPublicKey(options.publicKey);
      const key = await importSPKI(options.publicKey, algorithm);
      return new TokenVerifier(key, algorithm, subscribeSub, tolerance, maxTopicLength, maxTopicDepth);
    }
    throw new TypeError('options.secret or options.publicKey must be set');
  }

  async verify(token: string): Promise<VerifyResult> {
    if (token.length === 0) return { ok: false, reason: 'missing' };
    if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'too-long' };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: [this.algorithm],
        requiredClaims: ['sub', 'exp'],
        clockTolerance: this.clockToleranceSec,
      }));
    } catch (error) {
      return { ok: false, reason: rejectionOf(error) };
    }
    const grants = this.grantsOf(payload);
    return grants === null ? { ok: false, reason: 'bad-claims' } : { ok: true, grants };
  }

  private grantsOf(payload: JWTPayload): Grants | null {
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0) return null;
    const raw = payload.topics;
    const prefixes: string[] = [];
    if (raw !== undefined) {
      if (!Array.isArray(raw) || raw.length > MAX_GRANTED_TOPICS) return null;
      for (const prefix of raw) {
        if (topicError(prefix, this.maxTopicLength) !== null) return null;
        prefixes.push(prefix as string);
      }
    }
    let autoSubscribe: string | null = null;
    if (this.subscribeSub) {
      // The identity doubles as a topic: it must be a valid one.
      if (topicError(sub, this.maxTopicLength) !== null || topicDepth(sub) > this.maxTopicDepth) return null;
      prefixes.push(sub);
      autoSubscribe = sub;
    }
    const expiresAt = typeof payload.exp === 'number' ? (payload.exp + this.clockToleranceSec) * 1000 : null;
    return Object.freeze({ sub, prefixes: Object.freeze(prefixes), autoSubscribe, expiresAt });
  }
}

function rejectionOf(error: unknown): TokenRejection {
  if (error instanceof joseErrors.JWTExpired) return 'expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return error.claim === 'nbf' ? 'not-yet-valid' : 'bad-claims';
  return 'invalid';
}

/** The token a request carries, or '' when none. */
export function tokenOf(req: http.IncomingMessage): string {
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer +(\S+)\s*$/i.exec(authorization);
    return match === null ? '' : match[1]!;
  }
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined) {
    for (const entry of protocols.split(',')) {
      const trimmed = entry.trim();
      if (trimmed.startsWith(BEARER_SUBPROTOCOL_PREFIX)) return trimmed.slice(BEARER_SUBPROTOCOL_PREFIX.length);
    }
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q !== -1) return new URLSearchParams(url.slice(q + 1)).get('token') ?? '';
  return '';
}

/**
 * ws `handleProtocols`: answers `tormq.v2` when offered (the connection then gets positions), else
 * `tormq`; otherwise the first other entry (ws's default, which clients from before authentication may
 * rely on); never a bearer entry, which would echo the token back. A browser offering only
 * `bearer.<jwt>` gets no protocol and fails the connection: offer `["tormq", "bearer.<jwt>"]` (or
 * `["tormq.v2", "bearer.<jwt>"]`).
 */
export function selectProtocol(protocols: Set<string>): string | false {
  if (protocols.has(TORMQ_V2_SUBPROTOCOL)) return TORMQ_V2_SUBPROTOCOL;
  if (protocols.has(TORMQ_SUBPROTOCOL)) return TORMQ_SUBPROTOCOL;
  for (const protocol of protocols) if (!protocol.startsWith(BEARER_SUBPROTOCOL_PREFIX)) return protocol;
  return false;
}

/**
 * The worker's gatekeeper at upgrade: origin, then token. Rejections are plain HTTP responses with no
 * body and no reason beyond the status line; the reason goes to the debug log and the counters.
 */
export class ConnectionGuard {
  private readonly origins: ReadonlySet<string> | null;

  private constructor(
    readonly verifier: TokenVerifier | null,
    config: GatewayConfig,
    private readonly stats: Float64Array,
    private readonly log: Logger,
  ) {
    this.origins = config.allowedOrigins.length > 0 ? new Set(config.allowedOrigins) : null;
  }

  static async create(config: GatewayConfig, stats: Float64Array, log: Logger): Promise<ConnectionGuard> {
    const enabled = config.authSecret !== '' || config.authPublicKey !== '';
    const verifier = enabled
      ? await TokenVerifier.create({
          secret: config.authSecret,
          publicKey: config.authPublicKey,
          subscribeSub: config.authSubscribeSub,
          clockToleranceSec: config.authClockToleranceSec,
          maxTopicLength: config.maxTopicLength,
          maxTopicDepth: config.maxTopicDepth,
        })
      : null;
    return new ConnectionGuard(verifier, config, stats, log);
  }

  /**
   * `true` when the request's origin may connect. Requests without an `Origin` header pass: browsers
   * always send one, so its absence means a non-browser client, which could forge any origin anyway
   * (tokens are what keep those out).
   */
  checkOrigin(req: http.IncomingMessage, socket: Duplex): boolean {
    if (this.origins === null) return true;
    const origin = req.headers.origin;
    if (origin === undefined || this.origins.has(origin)) return true;
    this.stats[WorkerStat.originRejections]++;
    this.log.debug({ origin: origin.slice(0, 200), remote: req.socket.remoteAddress }, 'upgrade refused: origin not allowed');
    refuseUpgrade(socket, 403, 'Forbidden', this.stats);
    return false;
  }

  /**
   * Verifies the request's token. Calls `admit(grants)` (null grants when authentication is off), or
   * answers 401 itself. The socket may close while the token is checked: then neither happens.
   */
  authenticate(req: http.IncomingMessage, socket: Duplex, admit: (grants: Grants | null) => void): void {
    if (this.verifier === null) {
      admit(null);
      return;
    }
    // A reset meanwhile is harmless: every socket has an error listener from accept (admission.ts).
    void this.verifier.verify(tokenOf(req)).then((result) => {
      if (socket.destroyed) return;
      if (result.ok) {
        admit(result.grants);
        return;
      }
      this.stats[WorkerStat.authFailures]++;
      this.log.debug({ reason: result.reason, remote: req.socket.remoteAddress }, 'upgrade refused: authentication failed');
      refuseUpgrade(socket, 401, 'Unauthorized', this.stats, 'WWW-Authenticate: Bearer\r\n');
    });
  }
}
