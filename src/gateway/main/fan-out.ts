/**
 * Main thread hot path: one message from the MPC in, one copy into the ring of every worker that has
 * a subscriber under its root. Never blocks: a full ring drops the message for that worker only.
 */
import { performance } from 'node:perf_hooks';
import { BodyRejects, extractTopic, parseBodyTopic, rootOf, topicError } from '../../protocol/topic.js';
import type { GatewayConfig } from '../shared/config.js';
import { WorkerStat } from '../shared/counters.js';
import type { Routing } from './routing.js';

/** Why a message from the MPC was not fanned out (label values of tormq_publish_drops_total). */
export const PUBLISH_DROP_REASONS = [
  'bad_frames', // not exactly [root, body]
  'oversized', // body over maxMessageBytes
  'not_json',
  'no_topic', // no string "topic"
  'invalid_topic',
  'root_mismatch', // root frame is not the topic's first segment
  'unrouted', // no worker has the root (ZeroMQ prefix match like "ehrx" for "ehr", or just unsubscribed)
] as const;
export type PublishDropReason = (typeof PUBLISH_DROP_REASONS)[number];

export class FanOut {
  /** Messages received from the MPC, valid or not. */
  messagesIn = 0;
  readonly drops: Record<PublishDropReason, number> = Object.fromEntries(PUBLISH_DROP_REASONS.map((r) => [r, 0])) as Record<PublishDropReason, number>;
  private readonly timeOrigin = performance.timeOrigin;

  constructor(
    private readonly config: GatewayConfig,
    private readonly routing: Routing,
  ) {}

  /** One message from the MPC. */
  ingest(frames: Buffer[]): void {
    this.messagesIn++;
    if (frames.length !== 2) return this.drop('bad_frames');
    const rootFrame = frames[0]!;
    const body = frames[1]!;
    if (body.length > this.config.maxMessageBytes) return this.drop('oversized');
    // Validating (the default, like the original gateway, so no client gets broken JSON): one full parse
    // both proves the body is JSON and yields the topic. Not validating: the topic is read from the
    // bytes and the rest is forwarded unparsed.
    const topic = this.config.validateJson ? parseBodyTopic(body) : extractTopic(body);
    if (topic === BodyRejects.NOT_JSON) return this.drop('not_json');
    if (topic === BodyRejects.NO_TOPIC) return this.drop('no_topic');
    if (topicError(topic, this.config.maxTopicLength) !== null) return this.drop('invalid_topic');
    const root = rootOf(topic);
    if (rootFrame.length !== Buffer.byteLength(root) || rootFrame.toString('utf8') !== root) return this.drop('root_mismatch');
    const slots = this.routing.slotsOf(root);
    if (slots === undefined) return this.drop('unrouted');
    const topicBytes = Buffer.from(topic, 'utf8');
    const receivedAt = this.timeOrigin + performance.now();
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (!slot.ring.tryWrite(topicBytes, body, receivedAt)) slot.stats[WorkerStat.ringDrops]++;
      slot.ring.notify();
    }
  }

  private drop(reason: PublishDropReason): void {
    this.drops[reason]++;
  }
}
