import type { Logger } from '../log.js';
import type { ConnectionGuard } from './auth.js';
import type { FrameLimits } from '../protocol/client-frames.js';
import type { GatewayConfig } from './config.js';
import type { Session } from './session.js';
import type { RootRouting } from './root-routing.js';
import type { TopicTrie } from './trie.js';

/** What a worker's sessions and its delivery loop share. One per worker thread. */
export interface WorkerContext {
  readonly config: GatewayConfig;
  readonly frameLimits: FrameLimits;
  /** This worker's shared-memory counters (`WorkerStat` indices). */
  readonly stats: Float64Array;
  readonly trie: TopicTrie<Session>;
  /** Which roots main routes to this worker; subscription acks wait for it. */
  readonly routing: RootRouting;
  /** Sessions with messages due in the current delivery batch; written and emptied at its end. */
  readonly touched: Session[];
  readonly log: Logger;
  /** Origin and token checks at upgrade; its verifier (null when auth is off) checks refresh tokens. */
  readonly guard: ConnectionGuard;
}
