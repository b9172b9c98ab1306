/**
 * Everything the gateway's main thread and its workers share: the data handed to a worker at start,
 * the control messages they exchange, and the layout of the shared-memory stats. Data (published
 * messages) never travels here: it goes through the ring (protocol/ring.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import type { ErrorRecord } from '../errors.js';
import type { GatewayConfig } from './config.js';

export interface WorkerData {
  readonly index: number;
  readonly config: GatewayConfig;
  /** WebSocket port to bind (the first worker binds config.port, which may be 0; the rest its result). */
  readonly port: number;
  readonly ring: SharedArrayBuffer;
  /** This worker's `WorkerStat` counters (Float64Array). */
  readonly stats: SharedArrayBuffer;
  /** Gateway-wide counters (Int32Array, `GatewayShared`), shared by all workers. */
  readonly shared: SharedArrayBuffer;
  /** The comlink endpoint for the control RPC (`WorkerControl`). */
  readonly controlPort: MessagePort;
}

/** Worker -> main events, posted on `parentPort`, in order. */
export type WorkerEvent =
  | { type: 'listening'; port: number }
  /** `seq` numbers this worker's root reports; main answers each `root-added` with `root-routed`. */
  | { type: 'root-added'; root: string; seq: number }
  | { type: 'root-removed'; root: string }
  | { type: 'fatal'; error: ErrorRecord };

/** Main -> worker events, posted on the Worker, in order. */
export type MainEvent =
  /** Main now copies messages on `root` into this worker's ring (answers `root-added` with the same seq). */
  { type: 'root-routed'; root: string; seq: number };

export const TEST_HOOK_ACTIONS = ['crash', 'exit', 'stall'] as const;
export type TestHookAction = (typeof TEST_HOOK_ACTIONS)[number];

/** Main -> worker control RPC, exposed by the worker with comlink. Never used per message. */
export interface WorkerControl {
  /** Stops accepting, closes every client with 1001 spread over `windowMs`, resolves when all are gone. */
  drain(windowMs: number): Promise<void>;
  /** Roots this worker's trie holds (main re-syncs from it after a reconnect or restart). */
  roots(): string[];
  /**
   * Fault injection for tests, refused unless `config.testHooks`: `crash` throws an uncaught error,
   * `exit` ends the thread abruptly, `stall` blocks the event loop until `GatewayShared.TEST_STALL` is 0.
   */
  testHook(action: TestHookAction): void;

  /** Connections of this worker that a publish on `topic` reaches (gopusher's online query, admin `/online`). */
  reachable(topic: string): number;
}

/** Indices into a worker's Float64Array stats. Counters only grow; gauges are set. */
export const WorkerStat = {
  CONNECTIONS: 0, // gauge
  SUBSCRIPTIONS: 1, // gauge
  RECORDS: 2, // messages read from the ring
  DELIVERIES: 3, // messages written to client sockets
  SLOW_DROPS: 4, // messages skipped for clients over slowClientBytes (policy drop)
  SLOW_CLOSES: 5, // clients closed with 4008 (policy close)
  BAD_FRAMES: 6, // client frames rejected
  HEARTBEAT_TERMINATIONS: 7,
  CONNECTIONS_ACCEPTED: 8,
  CONNECTIONS_REJECTED: 9, // upgrades refused (cap, path)
  OVERSIZE_CLOSES: 10, // frames over maxFrameBytes (1009)
  EVENT_LOOP_LAG_MS: 11, // gauge: p99 event-loop delay over the last interval
  RING_USED_BYTES: 12, // gauge, sampled by the worker
  AUTH_FAILURES: 13, // upgrades refused with 401 (missing or invalid token)
  ORIGIN_REJECTIONS: 14, // upgrades refused with 403 (origin not allowed)
  FORBIDDEN_SUBSCRIPTIONS: 15, // subscribe frames refused with ERR_FORBIDDEN (outside the grants)
  TOKEN_EXPIRED_CLOSES: 16, // connections closed with 1008 when their token expired
  TOKEN_REFRESHES: 17, // refresh frames accepted
  TOKEN_REFRESH_FAILURES: 18, // refresh frames refused (invalid token, other sub, auth off)
  RATE_LIMITED_FRAMES: 19, // client frames rejected by the inbound rate limit
  RATE_LIMIT_CLOSES: 20, // clients closed with 4029
  LATENCY_COUNT: 21,
  LATENCY_SUM_SECONDS: 22,
  LATENCY_BUCKETS: 23, // first of LATENCY_BOUNDS.length cumulative-at-read buckets
} as const;

/** In-gateway latency (main thread receive -> socket write) histogram bounds, seconds. */
export const LATENCY_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] as const;

export const WORKER_STATS_LENGTH = WorkerStat.LATENCY_BUCKETS + LATENCY_BOUNDS.length + 1; // + overflow bucket

/** Indices into the gateway-wide Int32Array shared by all workers. */
export const GatewayShared = {
  /** Open connections across all workers (Atomics), for the connection cap. */
  CONNECTIONS: 0,
  /** Test hooks only (`--enable-test-hooks`): 1 while a stalled worker must stay blocked. */
  TEST_STALL: 1,
} as const;
export const GATEWAY_SHARED_LENGTH = 2;
