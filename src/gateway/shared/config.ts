/**
 * Gateway options: one table (key, default, check, help, CLI flag) from which the defaults, validation,
 * `tormq-gateway --help` and the README's table are derived. Handed to every worker as the frozen
 * config; read by both threads.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { LOG_LEVELS } from '../../log.js';
import { tlsPairProblem } from '../../tls-files.js';
import { isCurveKey } from '../../zmq/curve.js';
import { anyString, boolean, defineOptions, int, integerFromText, listOf, nonEmptyString, oneOf, satisfies, type ConfigOf, type InputOf } from '../../options/options.js';
import { MIN_RING_BYTES, maxBodyFor } from './ring.js';
import { isOrigin, MIN_AUTH_SECRET_LENGTH, publicKeyProblem } from './security-options.js';

export const SLOW_CLIENT_POLICIES = ['close', 'drop'] as const;
export type SlowClientPolicy = (typeof SLOW_CLIENT_POLICIES)[number];

/** `host:port` with a non-empty host and a port in 1..65535. */
export function isEndpoint(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const i = value.lastIndexOf(':');
  const port = value.slice(i + 1);
  return i > 0 && /^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535;
}

const isPowerOfTwo = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= MIN_RING_BYTES && v <= 2 ** 30 && (v & (v - 1)) === 0;

const LIMITS = 'Limits';

/** A flag naming a file whose contents are the option's value. */
function readTextFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new TypeError(`cannot read ${path}: ${(error as Error).message}`);
  }
}
const SECURITY = 'Security (README, "Security")';

export const GATEWAY_OPTIONS = defineOptions('a gateway', {
  mpc: {
    default: ['127.0.0.1:5560'] as readonly string[],
    check: listOf(isEndpoint, 'a non-empty list of host:port', 1),
    help: 'MPC gateway port(s) to subscribe to; repeat or comma-separate',
    cli: { flag: 'mpc', short: 'r', arg: 'HOST:PORT', repeatable: true },
  },
  mpcWarnMs: {
    default: 5000,
    check: int(0, 3_600_000, 'an integer from 0 (never) to 3600000'),
    help: 'warn (with the likely cause) when an MPC link is not up this long after start or after it dropped; 0 = never',
    cli: { flag: 'mpc-warn-ms', arg: 'N' },
  },
  port: { default: 8000, check: int(0, 65535), help: 'WebSocket port shared by all workers (0 = any free port)', cli: { flag: 'port', short: 'p', arg: 'PORT' } },
  host: { default: '127.0.0.1', check: nonEmptyString, help: 'WebSocket listen address', cli: { flag: 'host', arg: 'ADDR' } },
  tlsCert: {
    default: '',
    check: anyString,
    help: 'serve wss:// (and https:// for the demo page) with this PEM certificate chain; re-read on SIGHUP',
    cli: { flag: 'tls-cert', arg: 'FILE' },
  },
  tlsKey: { default: '', check: anyString, help: 'the PEM private key of --tls-cert; re-read on SIGHUP', cli: { flag: 'tls-key', arg: 'FILE' } },
  path: {
    default: '/ws',
    check: satisfies<string>('a string starting with "/"', (v) => typeof v === 'string' && v.startsWith('/'), (t) => t),
    help: 'WebSocket path (other paths: 404; `/` serves the demo page)',
    cli: { flag: 'path', arg: 'PATH' },
  },
  workers: {
    default: availableParallelism(),
    defaultText: 'available parallelism',
    check: int(1, 256),
    help: 'worker threads, each owning a slice of the connections',
    cli: { flag: 'workers', short: 'w', arg: 'N' },
  },
  adminPort: {
    default: 9100,
    check: int(-1, 65535, 'an integer from 0 to 65535 (or -1 to disable)'),
    help: 'admin HTTP port (/healthz, /metrics, /stats); `off` disables',
    cli: { flag: 'admin-port', arg: 'PORT', fromText: (t) => (t === 'off' ? -1 : integerFromText(t)) },
  },
  adminHost: { default: '127.0.0.1', check: nonEmptyString, help: 'admin HTTP address', cli: { flag: 'admin-host', arg: 'ADDR' } },
  ringBytes: {
    default: 8 * 1024 * 1024,
    check: satisfies<number>(`a power of two from ${MIN_RING_BYTES} to 2^30`, isPowerOfTwo, integerFromText),
    help: 'shared-memory ring per worker (power of two); a full ring drops for that worker only',
    cli: { flag: 'ring-bytes', arg: 'N' },
    section: LIMITS,
  },
  workerYoungGenerationMb: {
    default: 2,
    check: int(0, 1024),
    // Measured (README, block "2026-12-06, night"): V8 lets a worker's young generation grow to 32 MB during a
    // connection burst and keeps it, ≈ 4.5 KB per connection at 5,000 connections.
    help: "each worker's V8 young generation, MB (0: V8's default, up to 32 MB under load); caps what a burst of connections leaves committed",
    cli: { flag: 'worker-young-mb', arg: 'N' },
    section: LIMITS,
  },
  upstreamHighWaterMark: {
    default: 100_000,
    check: int(1),
    help: 'messages the gateway\'s libzmq XSUB buffers from the MPC before ZeroMQ drops (with --zmtp-link tormq\'s own client reads as fast as the gateway handles)',
    cli: { flag: 'upstream-hwm', arg: 'N' },
    section: LIMITS,
  },
  maxMessageBytes: {
    default: 1024 * 1024,
    check: int(1),
    help: 'largest published body accepted (at most what a ring record holds); larger ones are dropped and counted',
    cli: { flag: 'max-message-bytes', arg: 'N' },
    section: LIMITS,
  },
  maxFrameBytes: {
    default: 64 * 1024,
    check: int(64, 64 * 1024 * 1024, 'an integer from 64 to 64 MiB'),
    help: 'largest client frame; a larger one closes the connection with 1009; a message in more than max(256, N / 1024) pieces (reads of a frame, or fragments) closes it with 1008, as each piece held costs memory',
    cli: { flag: 'max-frame-bytes', arg: 'N' },
    section: LIMITS,
  },
  maxTopicLength: { default: 256, check: int(1, 65535), help: 'longest topic accepted from clients and publishers', cli: { flag: 'max-topic-length', arg: 'N' }, section: LIMITS },
  maxSubscriptions: {
    default: 256,
    check: int(1, 1_000_000),
    help: 'subscriptions per connection (and topics per frame); over it ERR_TOO_MANY_SUBSCRIPTIONS, nothing applied',
    cli: { flag: 'max-subscriptions', arg: 'N' },
    section: LIMITS,
  },
  positionCheckMs: {
    default: 5000,
    check: satisfies<number>('0 (off) or an integer from 100 to 3600000', (v) => typeof v === 'number' && Number.isInteger(v) && (v === 0 || (v >= 100 && v <= 3_600_000)), integerFromText),
    help: 'how often the gateway asks the MPC where its streams stand, to find messages lost at the end of a burst (0 = never)',
    cli: { flag: 'position-check-ms', arg: 'N' },
  },
  maxRecoveryMessages: {
    default: 1000,
    check: int(0, 1_000_000),
    help: 'most messages one stream replays to a tormq.v2 client recovering; more missed than this: not recovered',
    cli: { flag: 'max-recovery-messages', arg: 'N' },
    section: LIMITS,
  },
  maxTopicDepth: {
    default: 16,
    check: int(1, 256),
    help: 'most segments in a topic a client subscribes to; deeper: ERR_TOPIC_TOO_DEEP, nothing applied',
    cli: { flag: 'max-topic-depth', arg: 'N' },
    section: LIMITS,
  },
  maxSubscriptionSegments: {
    default: 1024,
    check: int(1, 1_000_000),
    help: 'segments of all its topics one connection may hold (what it can make the trie hold); over it ERR_SUBSCRIPTION_BUDGET, nothing applied',
    cli: { flag: 'max-subscription-segments', arg: 'N' },
    section: LIMITS,
  },
  maxTopics: {
    default: 250_000,
    check: int(1, 100_000_000),
    help: 'distinct topics (subscriptions and their ancestors) the whole gateway holds; each costs about 2 KB here and 1 KB at the MPC; over it ERR_TOPIC_LIMIT',
    cli: { flag: 'max-topics', arg: 'N' },
    section: LIMITS,
  },
  maxConnections: {
    default: 0,
    check: int(0, Number.MAX_SAFE_INTEGER, 'a non-negative integer (0 = unlimited)'),
    help: 'connections per gateway, all workers; 0 = unlimited; over it the upgrade gets HTTP 503',
    cli: { flag: 'max-connections', arg: 'N' },
    section: LIMITS,
  },
  handshakeTimeoutMs: {
    default: 5_000,
    check: int(100, 600_000),
    help: 'a socket on the WebSocket port that has not completed its WebSocket handshake this long after accept is closed',
    cli: { flag: 'handshake-timeout-ms', arg: 'N' },
    section: LIMITS,
  },
  fdReserve: {
    default: 128,
    check: int(0, 1_000_000),
    help: 'descriptors kept for the admin port, MPC links and restarts: sockets on the WebSocket port are capped at the open-files limit (ulimit -n) minus those in use at start minus this (Linux)',
    cli: { flag: 'fd-reserve', arg: 'N' },
    section: LIMITS,
  },
  slowClientBytes: {
    default: 4 * 1024 * 1024,
    check: int(1024),
    help: 'outbound bytes buffered for one connection before the slow-client policy applies; at least twice --max-message-bytes',
    cli: { flag: 'slow-client-bytes', arg: 'N' },
    section: LIMITS,
  },
  slowClientPolicy: {
    default: 'close' as SlowClientPolicy,
    check: oneOf(SLOW_CLIENT_POLICIES),
    help: '`close`: disconnect a slow client with 4008; `drop`: skip messages for it (counted) until it catches up',
    cli: { flag: 'slow-client-policy', arg: 'P' },
    section: LIMITS,
  },
  replayBudgetBytes: {
    default: 32 * 1024 * 1024,
    check: int(64 * 1024),
    help: 'history one worker holds for tormq.v2 recoveries, all its connections together (fetched, not yet written to their sockets); a recovery past it waits until earlier ones have been written',
    cli: { flag: 'replay-budget-bytes', arg: 'N' },
    section: LIMITS,
  },
  replayStallMs: {
    default: 10_000,
    check: int(100, 3_600_000),
    help: 'a recovery whose client takes less than 64 KiB of its replay in this long is a slow client: policy close closes it with 4008, policy drop ends the replay (acked recovered: false, the rest counted as drops)',
    cli: { flag: 'replay-stall-ms', arg: 'N' },
    section: LIMITS,
  },
  heartbeatMs: {
    default: 30_000,
    check: satisfies<number>('0 (off) or an integer of at least 100', (v) => typeof v === 'number' && Number.isInteger(v) && (v === 0 || v >= 100), integerFromText),
    help: 'WebSocket ping interval; a connection that missed the previous pong is terminated (0 = off)',
    cli: { flag: 'heartbeat-ms', arg: 'N' },
  },
  drainMs: { default: 5_000, check: int(0), help: 'on SIGTERM/SIGINT, clients are closed with 1001 spread over this window', cli: { flag: 'drain-ms', arg: 'N' } },
  clientRateLimit: {
    default: 50,
    check: int(0, 1_000_000, 'an integer from 0 (off) to 1000000'),
    help: 'client frames per second per connection (token bucket refill); 0 = off',
    cli: { flag: 'client-rate-limit', arg: 'N' },
    section: LIMITS,
  },
  clientRateBurst: {
    default: 100,
    check: int(1, 1_000_000),
    help: 'frames a connection may send at once; this many refused in a row close it with 4029',
    cli: { flag: 'client-rate-burst', arg: 'N' },
    section: LIMITS,
  },
  workerStallMs: {
    default: 10_000,
    // Above the worker's 1 s heartbeat interval with room for a busy loop to run it late.
    check: int(2_000, 3_600_000),
    help: 'a worker whose event loop has not run its 1 s heartbeat for this long is reported stalled (/healthz 503, tormq_worker_stalled)',
    cli: { flag: 'worker-stall-ms', arg: 'N' },
  },
  presenceHeartbeatMs: {
    default: 1000,
    check: int(100, 60_000),
    help: 'gopusher presence: how often the gateway reports its joined cards to the MPC when nothing changed; the MPC forgets a gateway silent for 3 of these',
    cli: { flag: 'presence-heartbeat-ms', arg: 'N' },
  },
  restartBackoffResetMs: {
    default: 60_000,
    check: int(0, 86_400_000),
    help: 'a worker that ran this long before dying restarts after the shortest backoff (0.1 s) again, not the next longer one',
    cli: { flag: 'restart-backoff-reset-ms', arg: 'N' },
  },
  testHooks: {
    default: false,
    check: boolean,
    help: 'TEST ONLY: fault-injection endpoints on the admin port; never in production',
    cli: { flag: 'enable-test-hooks' },
  },
  batchDelayMs: {
    default: 0,
    check: int(0, 1000),
    help: 'coalescing window: a worker woken from idle waits this long before draining its ring (adds latency)',
    cli: { flag: 'batch-delay-ms', arg: 'N' },
  },
  zmtpLink: {
    default: false,
    check: boolean,
    help: 'read the MPC link with tormq\'s own ZMTP client instead of libzmq\'s XSUB (plain TCP only; CURVE always uses libzmq): the main thread reads the link itself. Measured 2026-12-07 (unicast, 2 workers, MPC + gateway CPU per message): 29.7-30.7 against 36.5-38.5 µs at 10k msgs/s, 16.0-16.3 against 17.8-18.4 at 40k; but with 64 KiB messages the gateway\'s RSS grew 20-40 MiB more (test/e2e/slow-clients), so it stays off by default',
    cli: { flag: 'zmtp-link' },
  },
  linkHeartbeatMs: {
    default: 1000,
    check: int(0, 60_000),
    help: 'ZMTP heartbeat on each MPC link: a PING this often; a link with nothing from its MPC for 5 of these is closed and dialled again, so a stopped, hung or unreachable MPC shows as down within seconds (TCP alone notices only after many minutes), and the MPC drops a gateway silent for 10 of these. 0 = off',
    cli: { flag: 'link-heartbeat-ms', arg: 'N' },
  },
  demoPage: { default: true, check: boolean, help: 'serve the demo page at `/`', cli: { flag: 'demo-page', negatable: true, help: 'do not serve the demo page at `/`' } },
  logLevel: { default: 'info' as (typeof LOG_LEVELS)[number], check: oneOf(LOG_LEVELS), help: 'pino log level', cli: { flag: 'log-level', arg: 'LEVEL' } },
  authSecret: {
    default: '',
    check: satisfies<string>(`'' (off) or a string of at least ${MIN_AUTH_SECRET_LENGTH} characters`, (v) => typeof v === 'string' && (v === '' || v.length >= MIN_AUTH_SECRET_LENGTH), (t) => t),
    secret: true,
    help: 'HS256 secret: every connection needs a JWT (prefer --auth-secret-file or TORMQ_AUTH_SECRET)',
    cli: { flag: 'auth-secret', arg: 'SECRET' },
    section: SECURITY,
  },
  authPublicKey: {
    default: '',
    check: satisfies<string>('a PEM string', (v) => typeof v === 'string'),
    help: 'PEM public key (RS256, ES256/384/512, EdDSA) verifying the JWTs',
    cli: { flag: 'auth-public-key', arg: 'FILE', help: 'read the PEM public key (RS256, ES256/384/512, EdDSA) verifying the JWTs from FILE', fromText: readTextFile },
    section: SECURITY,
  },
  authSubscribeSub: {
    default: false,
    check: boolean,
    help: "subscribe each connection to the topic named by its token's `sub` (and grant it)",
    cli: { flag: 'auth-subscribe-sub' },
    section: SECURITY,
  },
  authClockToleranceSec: { default: 5, check: int(0, 300), help: 'leeway for exp/nbf, seconds', cli: { flag: 'auth-clock-tolerance', arg: 'S' }, section: SECURITY },
  allowedOrigins: {
    default: [] as readonly string[],
    check: listOf(isOrigin, 'a list of origins like "https://app.example.com" (scheme://host[:port])'),
    help: 'browser origins allowed to connect, comma-separated (else HTTP 403); empty = any',
    cli: { flag: 'allowed-origins', arg: 'LIST' },
    section: SECURITY,
  },
  curveServerKey: {
    default: '',
    check: satisfies<string>("the MPC's 40-character Z85 public key", (v) => v === '' || isCurveKey(v), (t) => t),
    help: "the MPC's CURVE public key (Z85): encrypt the MPC link",
    cli: { flag: 'curve-server-key', arg: 'KEY' },
    section: SECURITY,
  },
  curvePublicKey: {
    default: '',
    check: satisfies<string>('a 40-character Z85 public key', (v) => v === '' || isCurveKey(v)),
    help: "this gateway's CURVE public key (Z85)",
    section: SECURITY,
  },
  curveSecretKey: {
    default: '',
    check: satisfies<string>('a 40-character Z85 secret key', (v) => v === '' || isCurveKey(v)),
    secret: true,
    help: "this gateway's CURVE secret key (Z85)",
    section: SECURITY,
  },
}, (c, fail, name) => {
  const tls = tlsPairProblem(c.tlsCert, c.tlsKey);
  if (tls !== null) fail(tls.key === 'cert' ? 'tlsCert' : 'tlsKey', tls.must.replace('the key', name('tlsKey')).replace('the certificate', name('tlsCert')));
  const largestBody = maxBodyFor(c.ringBytes, c.maxTopicLength * 3);
  if (c.maxMessageBytes > largestBody) {
    fail('maxMessageBytes', `a positive integer at most ${largestBody} (half of ${name('ringBytes')}, less a record header and the longest topic)`);
  }
  // Judged per batch on what earlier batches left unsent: below two of the largest message, a client
  // reading at full speed looks slow whenever one such message is still on its way (closed with 4008,
  // or skipped under the drop policy), and a recovery cannot hold one for it.
  if (c.slowClientBytes < 2 * c.maxMessageBytes) {
    fail('slowClientBytes', `at least twice ${name('maxMessageBytes')} (${2 * c.maxMessageBytes}): a client reading at full speed would look slow whenever a message that large is still on its way`);
  }
  if (c.maxTopicDepth > c.maxSubscriptionSegments) fail('maxTopicDepth', `an integer from 1 to ${name('maxSubscriptionSegments')} (${c.maxSubscriptionSegments})`);
  if (c.authSecret !== '' && c.authPublicKey !== '') fail('authPublicKey', `'' when ${name('authSecret')} is set (choose one way to verify tokens)`, '<key>');
  if (c.authPublicKey !== '') {
    const problem = publicKeyProblem(c.authPublicKey);
    if (problem !== null) fail('authPublicKey', problem.must, problem.shown);
  }
  if (c.authSubscribeSub && c.authSecret === '' && c.authPublicKey === '') fail('authSubscribeSub', `false unless ${name('authSecret')} or ${name('authPublicKey')} is set`);
  if (c.curveServerKey !== '' || c.curvePublicKey !== '' || c.curveSecretKey !== '') {
    if (c.curveServerKey === '') fail('curveServerKey', `the MPC's 40-character Z85 public key (given with ${name('curvePublicKey')})`);
    if (c.curvePublicKey === '') fail('curvePublicKey', `a 40-character Z85 public key (given with ${name('curveServerKey')})`);
    if (c.curveSecretKey === '') fail('curveSecretKey', 'a 40-character Z85 secret key', '<redacted>');
  }
});

export type GatewayConfig = ConfigOf<typeof GATEWAY_OPTIONS.specs>;
export type GatewayOptions = InputOf<typeof GATEWAY_OPTIONS.specs>;
export const GATEWAY_DEFAULTS: GatewayConfig = GATEWAY_OPTIONS.defaults;

/** Validates gateway options against the table; throws TypeError/RangeError naming the option. */
export function validateGatewayConfig(options: GatewayOptions = {}, naming?: (key: string) => string): GatewayConfig {
  return GATEWAY_OPTIONS.validate(options, naming);
}
