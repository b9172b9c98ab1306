import type { Logger } from '../../log.js';
import type { FrameLimits } from '../../protocol/client-frames.js';
import type { GatewayConfig } from '../shared/config.js';
import type { ConnectionGuard } from './auth.js';
import type { RootRouting } from './root-routing.js';
import type { TopicTrie } from './trie.js';
import type { Writer } from './writer.js';

/** What a worker's sessions share. One per worker thread. */
export interface WorkerContext {
  readonly config: GatewayConfig;
  readonly frameLimits: FrameLimits;
  /** This worker's shared-memory counters (counters.ts). */
  readonly stats: Float64Array;
  /** Subscriptions: each connection's writer at the nodes of its topics. */
  readonly trie: TopicTrie<Writer>;
  /** Which roots main routes to this worker; subscription acks wait for it. */
  readonly routing: RootRouting;
  readonly log: Logger;
  /** Origin and token checks at upgrade; its verifier (null when auth is off) checks refresh tokens. */
  readonly guard: ConnectionGuard;
}
