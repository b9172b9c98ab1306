/**
 * What one connection may make its worker's trie hold. Each segment of a subscribed topic is a trie
 * node (≈ 240 bytes of heap, measured with 633,618 nodes), so neither the frame size, the subscription
 * count nor the topic length bounded it: 256 topics of 125 one-character segments fit in one 64 KiB
 * frame and cost ≈ 7.4 MB of worker heap; 1,600 such connections killed both workers of a gateway
 * (ERR_WORKER_OUT_OF_MEMORY, issue 10). Two limits, checked before a subscribe frame touches the trie
 * (a frame is refused whole, never half applied) and counted:
 * - `maxTopicDepth`: segments in one topic (ERR_TOPIC_TOO_DEEP);
 * - `maxSubscriptionSegments`: segments of all the connection's topics together (ERR_SUBSCRIPTION_BUDGET),
 *   an upper bound on the nodes it adds (a node shared with other topics is charged to each);
 * - `maxTopics`: distinct topics the whole gateway routes (ERR_TOPIC_LIMIT). Every one is a route on
 *   the main thread and a stream at the MPC (≈ 2 KB and ≈ 1 KB, measured), which the first two do not
 *   bound when connections are many.
 * The worst case per connection that results is measured in the README ("Memory per connection").
 */
import type { FrameError } from '../../protocol/client-frames.js';
import { topicDepth } from '../../protocol/topic.js';
import { WireErrorCodes } from '../../protocol/wire-errors.js';
import { WorkerStat } from '../shared/counters.js';

export interface SubscriptionLimits {
  readonly maxTopicDepth: number;
  readonly maxSubscriptionSegments: number;
  /** Distinct topics the whole gateway may route (each subscription and its ancestors). */
  readonly maxTopics: number;
}

/**
 * The gateway-wide count of distinct topics, shared by the workers: topics main routes plus topics
 * reported to main and not yet routed, plus room reserved by frames being applied. `reserve` is
 * all-or-nothing and strict across workers (each adds to its own shared cell, then reads the sum).
 */
export interface TopicAllowance {
  /** Reserves room for `n` more topics; false (and nothing reserved) when that would pass the limit. */
  reserve(n: number, limit: number): boolean;
  release(n: number): void;
}

/** No gateway-wide count (unit tests of one connection). */
export const UNLIMITED_TOPICS: TopicAllowance = { reserve: () => true, release: () => {} };

/** One connection's account: the segments of the topics it holds. */
export class SubscriptionBudget {
  private used = 0;
  /** Room reserved by the frame being applied, released by `settle`. */
  private reserved = 0;

  constructor(
    private readonly limits: SubscriptionLimits,
    private readonly stats: Float64Array,
    private readonly allowance: TopicAllowance = UNLIMITED_TOPICS,
  ) {}

  /** Segments of the topics held now. */
  get segments(): number {
    return this.used;
  }

  /**
   * Why subscribing to `topics` — added to `held`, or replacing all of them — would go over a limit
   * (counted), or null when it fits: then room for the topics is reserved gateway-wide until `settle`,
   * called once the frame is applied (its new topics have been reported to main by then).
   */
  refusal(topics: readonly string[], held: ReadonlySet<string>, replace: boolean): FrameError | null {
    const { maxTopicDepth, maxSubscriptionSegments } = this.limits;
    let adding = 0;
    const counted = topics.length > 1 ? new Set<string>() : null;
    for (let i = 0; i < topics.length; i++) {
      const topic = topics[i]!;
      const depth = topicDepth(topic);
      if (depth > maxTopicDepth) {
        this.stats[WorkerStat.deepTopicRefusals]++;
        const where = topics.length > 1 ? `topics[${i}]` : 'topic';
        return { code: WireErrorCodes.TOPIC_TOO_DEEP, message: `${where}: a topic may have at most ${maxTopicDepth} segments, this one has ${depth}` };
      }
      if (held.has(topic) || counted?.has(topic)) continue;
      counted?.add(topic);
      adding += depth;
    }
    // Replacing: only the new topic is left (a held one is charged already, at the same depth).
    const after = replace ? topicDepth(topics[0]!) : this.used + adding;
    if (after > maxSubscriptionSegments) {
      this.stats[WorkerStat.subscriptionBudgetRefusals]++;
      return {
        code: WireErrorCodes.SUBSCRIPTION_BUDGET,
        message: `a connection's topics may have at most ${maxSubscriptionSegments} segments in all: it holds ${this.used}, this adds ${adding}`,
      };
    }
    // Gateway-wide: each new segment may be a new topic routed upstream (an upper bound: some exist).
    if (adding > 0 && !this.allowance.reserve(adding, this.limits.maxTopics)) {
      this.stats[WorkerStat.topicLimitRefusals]++;
      return { code: WireErrorCodes.TOPIC_LIMIT, message: `the gateway holds as many distinct topics as it may (${this.limits.maxTopics}); try again later` };
    }
    this.reserved = adding;
    return null;
  }

  /** Releases the room `refusal` reserved: the frame is applied (or was not, after all). */
  settle(): void {
    if (this.reserved === 0) return;
    this.allowance.release(this.reserved);
    this.reserved = 0;
  }

  charge(topic: string): void {
    this.used += topicDepth(topic);
  }

  refund(topic: string): void {
    this.used -= topicDepth(topic);
  }
}
