/**
 * Gateway configuration: one defaults object, one validate function returning a frozen config.
 * The CLI only maps flags onto `GatewayOptions`; every check lives here.
 */
import { availableParallelism } from 'node:os';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { MIN_RING_BYTES } from '../protocol/ring.js';
import { checkSecurityOptions } from './security-config.js';

export const SLOW_CLIENT_POLICIES = ['close', 'drop'] as const;
export type SlowClientPolicy = (typeof SLOW_CLIENT_POLICIES)[number];

export interface GatewayConfig {
  /** MPC XPUB endpoints (`host:port`) the gateway's SUB connects to. */
  readonly mpc: readonly string[];
  /** Address the WebSocket listeners bind. */
  readonly host: string;
  /** WebSocket port, shared by all workers (SO_REUSEPORT). 0 picks a free port. */
  readonly port: number;
  /** URL path that accepts WebSocket upgrades. */
  readonly path: string;
  /** Worker threads, each owning a slice of the connections. */
  readonly workers: number;
  /** Admin HTTP (healthz, metrics, stats) address and port; port 0 picks a free port, -1 disables. */
  readonly adminHost: string;
  readonly adminPort: number;
  /** Shared-memory ring per worker, bytes (power of two). */
  readonly ringBytes: number;
  /**
   * Messages the gateway's ZeroMQ SUB buffers before ZeroMQ drops (its receive high-water mark). The
   * default 1000 of ZeroMQ lost bursts while the main thread paused briefly; see MpcOptions.highWaterMark.
   */
  readonly upstreamHighWaterMark: number;
  /** Largest published body accepted from the MPC; larger ones are dropped and counted. */
  readonly maxMessageBytes: number;
  /** Largest client frame; larger ones close the connection with 1009. */
  readonly maxFrameBytes: number;
  readonly maxTopicLength: number;
  /** Subscriptions per connection. */
  readonly maxSubscriptions: number;
  /** Connections per gateway (all workers); 0 = unlimited. Over it, upgrades get HTTP 503. */
  readonly maxConnections: number;
  /** Outbound bytes buffered for one connection before the slow-client policy applies. */
  readonly slowClientBytes: number;
  /** `close`: disconnect with 4008. `drop`: skip messages for that client until it catches up. */
  readonly slowClientPolicy: SlowClientPolicy;
  /** WebSocket ping interval; a connection that misses a pong is terminated. 0 disables. */
  readonly heartbeatMs: number;
  /** On SIGTERM/SIGINT, clients are closed with 1001 spread over this window. */
  readonly drainMs: number;
  /** Inbound client frames per second per connection (token bucket refill rate); 0 disables the limit. */
  readonly clientRateLimit: number;
  /**
   * Token bucket size: frames a connection may send at once. Over the limit a frame is rejected
   * (`ERR_RATE_LIMITED`); this many rejected frames in a row close the connection with 4029.
   */
  readonly clientRateBurst: number;
  /**
   * Test-only fault injection on the admin port (`POST /test-hooks/...`: crash, exit, stall a worker).
   * Off by default; never enable it in production.
   */
  readonly testHooks: boolean;
  /**
   * Coalescing window, ms: when a worker wakes from idle it waits this long before draining its ring,
   * so one write per socket carries every message that arrived meanwhile. Adds up to this much
   * latency; saves syscalls when messages arrive one at a time (see README, "Benchmarks"). 0 = off.
   */
  readonly batchDelayMs: number;
  /** Parse every published body fully and drop the ones that are not JSON (the original did). */
  readonly validateJson: boolean;
  /** Serve the demo page at `/`. */
  readonly demoPage: boolean;
  readonly logLevel: LogLevel;
  /** HS256 shared secret (at least 32 characters); when set, every connection needs a valid JWT. '' = off. */
  readonly authSecret: string;
  /** RS256/ES256/EdDSA public key (PEM text); when set, every connection needs a valid JWT. '' = off. */
  readonly authPublicKey: string;
  /** Subscribe each authenticated connection to the topic named by its token's `sub` (and grant it). */
  readonly authSubscribeSub: boolean;
  /** Leeway for `exp` and `nbf`, seconds. */
  readonly authClockToleranceSec: number;
  /** Browser origins allowed to connect (exact `scheme://host[:port]`); empty = any. Others get HTTP 403. */
  readonly allowedOrigins: readonly string[];
  /** The MPC's CURVE public key (Z85); with the two keys below, the MPC link is CURVE-encrypted. '' = off. */
  readonly curveServerKey: string;
  /** This gateway's CURVE key pair (Z85). */
  readonly curvePublicKey: string;
  readonly curveSecretKey: string;
}

export type GatewayOptions = Partial<{ -readonly [K in keyof GatewayConfig]: GatewayConfig[K] }>;

export const GATEWAY_DEFAULTS: GatewayConfig = Object.freeze({
  mpc: Object.freeze(['127.0.0.1:5560']),
  host: '127.0.0.1',
  port: 8000,
  path: '/ws',
  workers: availableParallelism(),
  adminHost: '127.0.0.1',
  adminPort: 9100,
  upstreamHighWaterMark: 100_000,
  ringBytes: 8 * 1024 * 1024,
  maxMessageBytes: 1024 * 1024,
  maxFrameBytes: 64 * 1024,
  maxTopicLength: 256,
  maxSubscriptions: 256,
  maxConnections: 0,
  slowClientBytes: 4 * 1024 * 1024,
  slowClientPolicy: 'close',
  heartbeatMs: 30_000,
  drainMs: 5_000,
  clientRateLimit: 50,
  clientRateBurst: 100,
  testHooks: false,
  batchDelayMs: 0,
  validateJson: true,
  demoPage: true,
  logLevel: 'info',
  authSecret: '',
  authPublicKey: '',
  authSubscribeSub: false,
  authClockToleranceSec: 5,
  allowedOrigins: Object.freeze([]),
  curveServerKey: '',
  curvePublicKey: '',
  curveSecretKey: '',
});

function check(ok: boolean, name: string, must: string, value: unknown): void {
  if (!ok) {
    const Ctor = typeof value === 'number' ? RangeError : TypeError;
    throw new Ctor(`options.${name} must be ${must}, got ${JSON.stringify(value)}`);
  }
}

const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): boolean =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** `host:port` with a non-empty host and a port in 1..65535. */
export function isEndpoint(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const i = value.lastIndexOf(':');
  return i > 0 && isInt(Number(value.slice(i + 1)), 1, 65535) && /^\d+$/.test(value.slice(i + 1));
}

export function validateGatewayConfig(options: GatewayOptions = {}): GatewayConfig {
  const known = new Set(Object.keys(GATEWAY_DEFAULTS));
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new TypeError(`options.${key} is not a gateway option`);
  }
  const c = { ...GATEWAY_DEFAULTS, ...stripUndefined(options) };
  check(Array.isArray(c.mpc) && c.mpc.length > 0 && c.mpc.every(isEndpoint), 'mpc', 'a non-empty list of host:port', c.mpc);
  check(typeof c.host === 'string' && c.host.length > 0, 'host', 'a non-empty string', c.host);
  check(isInt(c.port, 0, 65535), 'port', 'an integer from 0 to 65535', c.port);
  check(typeof c.path === 'string' && c.path.startsWith('/'), 'path', 'a string starting with "/"', c.path);
  check(isInt(c.workers, 1, 256), 'workers', 'an integer from 1 to 256', c.workers);
  check(typeof c.adminHost === 'string' && c.adminHost.length > 0, 'adminHost', 'a non-empty string', c.adminHost);
  check(isInt(c.adminPort, -1, 65535), 'adminPort', 'an integer from 0 to 65535 (or -1 to disable)', c.adminPort);
  check(isInt(c.upstreamHighWaterMark, 1), 'upstreamHighWaterMark', 'a positive integer', c.upstreamHighWaterMark);
  check(isInt(c.ringBytes, MIN_RING_BYTES, 2 ** 30) && (c.ringBytes & (c.ringBytes - 1)) === 0, 'ringBytes',
    `a power of two from ${MIN_RING_BYTES} to 2^30`, c.ringBytes);
  check(isInt(c.maxMessageBytes, 1) && c.maxMessageBytes <= c.ringBytes / 2 - 1024, 'maxMessageBytes',
    'a positive integer at most half of ringBytes less 1 KiB', c.maxMessageBytes);
  check(isInt(c.maxFrameBytes, 64, 64 * 1024 * 1024), 'maxFrameBytes', 'an integer from 64 to 64 MiB', c.maxFrameBytes);
  check(isInt(c.maxTopicLength, 1, 65535), 'maxTopicLength', 'an integer from 1 to 65535', c.maxTopicLength);
  check(isInt(c.maxSubscriptions, 1, 1_000_000), 'maxSubscriptions', 'an integer from 1 to 1000000', c.maxSubscriptions);
  check(isInt(c.maxConnections, 0), 'maxConnections', 'a non-negative integer (0 = unlimited)', c.maxConnections);
  check(isInt(c.slowClientBytes, 1024), 'slowClientBytes', 'an integer of at least 1024', c.slowClientBytes);
  check((SLOW_CLIENT_POLICIES as readonly unknown[]).includes(c.slowClientPolicy), 'slowClientPolicy',
    `one of ${SLOW_CLIENT_POLICIES.join(', ')}`, c.slowClientPolicy);
  check(isInt(c.heartbeatMs, 0) && (c.heartbeatMs === 0 || c.heartbeatMs >= 100), 'heartbeatMs',
    '0 (off) or an integer of at least 100', c.heartbeatMs);
  check(isInt(c.drainMs, 0), 'drainMs', 'a non-negative integer', c.drainMs);
  check(isInt(c.clientRateLimit, 0, 1_000_000), 'clientRateLimit', 'an integer from 0 (off) to 1000000', c.clientRateLimit);
  check(isInt(c.clientRateBurst, 1, 1_000_000), 'clientRateBurst', 'an integer from 1 to 1000000', c.clientRateBurst);
  check(typeof c.testHooks === 'boolean', 'testHooks', 'a boolean', c.testHooks);
  check(isInt(c.batchDelayMs, 0, 1000), 'batchDelayMs', 'an integer from 0 to 1000', c.batchDelayMs);
  check(typeof c.validateJson === 'boolean', 'validateJson', 'a boolean', c.validateJson);
  check(typeof c.demoPage === 'boolean', 'demoPage', 'a boolean', c.demoPage);
  check((LOG_LEVELS as readonly unknown[]).includes(c.logLevel), 'logLevel', `one of ${LOG_LEVELS.join(', ')}`, c.logLevel);
  checkSecurityOptions(c);
  return Object.freeze({ ...c, mpc: Object.freeze([...c.mpc]), allowedOrigins: Object.freeze([...c.allowedOrigins]) });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
