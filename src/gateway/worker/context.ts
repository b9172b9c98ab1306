import type { Logger } from '../../log.js';
import type { FrameLimits } from '../../protocol/client-frames.js';
import type { GatewayConfig } from '../shared/config.js';
import type { MainEvent } from '../shared/thread-protocol.js';
import type { ConnectionGuard } from './auth.js';
import type { InterestRouting } from './interest-routing.js';
import type { WorkerPresence } from './presence.js';
import type { ReplayBudget } from './replay-budget.js';
import type { TopicAllowance } from './subscription-budget.js';
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
  /** Which topics main routes to this worker, and where their streams stand; subscription acks wait for it. */
  readonly routing: InterestRouting;
  /** Messages of a stream from the MPC's history (through the main thread), for a tormq.v2 recovery. */
  history(topic: string, epoch: string, after: number, limit: number): Promise<HistoryReply>;
  /** History this worker's recoveries may hold at once (replay-budget.ts). */
  readonly replayBudget: ReplayBudget;
  /** The gateway-wide count of distinct topics (for --max-topics). */
  readonly topics: TopicAllowance;
  /** The tormq.v2 frame of a message body at a stream position. */
  positioned(body: Uint8Array, epoch: string, offset: number): Buffer;
  readonly log: Logger;
  /** Origin and token checks at upgrade; its verifier (null when auth is off) checks refresh tokens. */
  readonly guard: ConnectionGuard;
  /** gopusher presence: this worker's joined connections per card. */
  readonly presence: WorkerPresence;
}

/** A history reply as the worker gets it from main. */
export type HistoryReply = Omit<Extract<MainEvent, { type: 'history-reply' }>, 'type' | 'id'>;
