/**
 * What one connection may make its worker's trie hold. Each segment of a subscribed topic is a trie
 * node (≈ 240 bytes of heap, measured with 633,618 nodes), so neither the frame size, the subscription
 * count nor the topic length bounded it: 256 topics of 125 one-character segments fit in one 64 KiB
 * frame and cost ≈ 7.4 MB of worker heap; 1,600 such connections killed both workers of a gateway
 * (ERR_WORKER_OUT_OF_MEMORY, issue 10). Two limits, checked before a subscribe frame touches the trie
 * (a frame is refused whole, never half applied) and counted:
 * - `maxTopicDepth`: segments in one topic (ERR_TOPIC_TOO_DEEP);
 * - `maxSubscriptionSegments`: segments of all the connection's topics together (ERR_SUBSCRIPTION_BUDGET),
 *   an upper bound on the nodes it adds (a node shared with other topics is charged to each).
 * The worst case per connection that results is measured in the README ("Memory per connection").
 */
import type { FrameError } from '../../protocol/client-frames.js';
import { topicDepth } from '../../protocol/topic.js';
import { WireErrorCodes } from '../../protocol/wire-errors.js';
import { WorkerStat } from '../shared/counters.js';

export interface SubscriptionLimits {
  readonly maxTopicDepth: number;
  readonly maxSubscriptionSegments: number;
}

/** One connection's account: the segments of the topics it holds. */
export class SubscriptionBudget {
  private used = 0;

  constructor(
    private readonly limits: SubscriptionLimits,
    private readonly stats: Float64Array,
  ) {}

  /** Segments of the topics held now. */
  get segments(): number {
    return this.used;
  }

  /**
   * Why subscribing to `topics` — added to `held`, or replacing all of them — would go over a limit
   * (counted), or null when it fits.
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
    if (after <= maxSubscriptionSegments) return null;
    this.stats[WorkerStat.subscriptionBudgetRefusals]++;
    return {
      code: WireErrorCodes.SUBSCRIPTION_BUDGET,
      message: `a connection's topics may have at most ${maxSubscriptionSegments} segments in all: it holds ${this.used}, this adds ${adding}`,
    };
  }

  charge(topic: string): void {
    this.used += topicDepth(topic);
  }

  refund(topic: string): void {
    this.used -= topicDepth(topic);
  }
}
