/**
 * The contract between the gateway's main thread and its workers: the data handed to a worker at
 * start and the control messages they exchange. Published messages never travel here: they go through
 * the ring (ring.ts); counters live in shared memory laid out by counters.ts.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ErrorRecord } from '../../errors.js';
import type { TlsMaterial } from '../../tls-files.js';
import type { GatewayConfig } from './config.js';

export interface WorkerData {
  readonly index: number;
  readonly config: GatewayConfig;
  /** WebSocket port to bind (the first worker binds config.port, which may be 0; the rest its result). */
  readonly port: number;
  readonly ring: SharedArrayBuffer;
  /** This worker's counters (Float64Array laid out by counters.ts). */
  readonly stats: SharedArrayBuffer;
  /** Gateway-wide cells (Int32Array: `GatewayShared`, then the socket counts of socket-counts.ts), shared by all threads. */
  readonly shared: SharedArrayBuffer;
  /** The comlink endpoint for the control RPC (`WorkerControl`). */
  readonly controlPort: MessagePort;
  /** The certificate and key to serve wss:// with (the files as main last read them), or null for ws://. */
  readonly tls: TlsMaterial | null;
}

/**
 * Worker -> main events, posted on `parentPort`, in order. Main answers `interest-added` and
 * `mark-request` with a MARK record in the worker's ring (ring.ts), ordered with the messages.
 */
export type WorkerEvent =
  | { type: 'listening'; port: number }
  /**
   * The worker's trie holds `topic` now (a subscription or an ancestor of one): route its messages here.
   * `seq` numbers the worker's reports and requests.
   */
  | { type: 'interest-added'; topic: string; seq: number }
  | { type: 'interest-removed'; topic: string }
  /** Where is `topic`'s stream for this worker now? (tormq.v2 subscriptions need the exact position.) */
  | { type: 'mark-request'; topic: string; seq: number }
  /** Messages of `topic` after `after` in `epoch`, for a client's recovery. */
  | { type: 'history-request'; id: number; topic: string; epoch: string; after: number; limit: number }
  /**
   * gopusher presence: connections of this worker that joined each card, as `[card, count, …]` for the
   * cards whose count changed (0: none any more). Absolute, so main needs no history of them.
   */
  | { type: 'presence'; cards: Array<string | number> }
  | { type: 'fatal'; error: ErrorRecord };

/** Main -> worker events, posted on the Worker, in order. */
export type MainEvent = {
  type: 'history-reply';
  id: number;
  status: 'ok' | 'epoch' | 'evicted' | 'ahead' | 'failed';
  epoch: string;
  top: number;
  /** Offset of bodies[0]. */
  from: number;
  bodies: Uint8Array[];
};

export const TEST_HOOK_ACTIONS = ['crash', 'exit', 'stall'] as const;
export type TestHookAction = (typeof TEST_HOOK_ACTIONS)[number];

/** Main -> worker control RPC, exposed by the worker with comlink. Never used per message. */
export interface WorkerControl {
  /** Stops accepting, closes every client with 1001 spread over `windowMs`, resolves when all are gone. */
  drain(windowMs: number): Promise<void>;
  /**
   * Fault injection for tests, refused unless `config.testHooks`: `crash` throws an uncaught error,
   * `exit` ends the thread abruptly, `stall` blocks the event loop until `GatewayShared.TEST_STALL` is 0.
   */
  testHook(action: TestHookAction): void;

  /** Connections of this worker that a publish on `topic` reaches (gopusher's online query, admin `/online`). */
  reachable(topic: string): number;

  /** Serves new TLS handshakes with this certificate and key (SIGHUP); open connections are untouched. */
  reloadTls(material: TlsMaterial): void;
}

/** Indices into the gateway-wide Int32Array shared by all threads; the per-worker socket counts follow (socket-counts.ts). */
export const GatewayShared = {
  /** Most sockets the gateway may hold on the WebSocket port (written by main once it knows its descriptors; 0 = none). */
  SOCKET_LIMIT: 0,
  /** Test hooks only (`--enable-test-hooks`): 1 while a stalled worker must stay blocked. */
  TEST_STALL: 1,
  /** Distinct topics the main thread routes (written by main; workers check --max-topics against it). */
  TOPICS: 2,
} as const;
export const GATEWAY_SHARED_CELLS = 3;
