/**
 * The MPC's hot path: one publisher message in, validated once (the MPC is the one place that checks
 * what publishers send: gateways trust the topic it forwards and parse nothing), stamped with its
 * stream position, kept in history, and forwarded to gateways as one frame (zmq/gateway-link.ts) and,
 * when the plain port is on, as the original `[root, body]`. Frames to gateways go through the
 * LinkBatcher, which the caller flushes once the publisher socket has nothing more to read.
 */
import { isUtf8 } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { rootOf, topicError } from '../protocol/topic.js';
import { encodeStreamFrame, LinkKind } from '../zmq/gateway-link.js';
import type { SerialSender } from '../zmq/serial-sender.js';
import type { LinkBatcher } from './link-batcher.js';
import type { StreamStore } from './streams.js';

/** Why a publisher's message was dropped (label values of tormq_mpc_publish_drops_total). */
export const PUBLISH_DROP_REASONS = [
  'bad_frames', // not exactly [root, body]
  'oversized', // body over maxMessageBytes
  'not_utf8', // a frame that is not valid UTF-8 (every client would fail it: 1007 in browsers)
  'not_json',
  'no_topic', // not an object with a string "topic"
  'invalid_topic', // empty segment, control character, too long
  'root_mismatch', // the root frame is not the topic's first segment
] as const;
export type PublishDropReason = (typeof PUBLISH_DROP_REASONS)[number];

export interface ForwarderLimits {
  readonly maxMessageBytes: number;
  readonly maxTopicLength: number;
}

export class Forwarder {
  /** Publisher messages received, valid or not. */
  messagesIn = 0;
  /** Messages stamped and forwarded. */
  forwarded = 0;
  /** Bytes of every frame received from publishers (see mpc/reclaim.ts). */
  bytesIn = 0;
  readonly drops = Object.fromEntries(PUBLISH_DROP_REASONS.map((r) => [r, 0])) as Record<PublishDropReason, number>;

  constructor(
    private readonly limits: ForwarderLimits,
    private readonly streams: StreamStore,
    private readonly gateways: LinkBatcher,
    private readonly plain: SerialSender | null,
    /** Called for each drop (the caller rate-limits its logging). */
    private readonly onDrop: (reason: PublishDropReason, frames: Buffer[]) => void = () => {},
  ) {}

  ingest(frames: Buffer[]): void {
    this.messagesIn++;
    for (let i = 0; i < frames.length; i++) this.bytesIn += frames[i]!.length;
    if (frames.length !== 2) return this.drop('bad_frames', frames);
    const rootFrame = frames[0]!;
    const body = frames[1]!;
    if (body.length > this.limits.maxMessageBytes) return this.drop('oversized', frames);
    // Checked before the parse: toString would turn bad bytes into U+FFFD, and the body is forwarded as is.
    if (!isUtf8(body)) return this.drop('not_utf8', frames);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return this.drop('not_json', frames);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return this.drop('no_topic', frames);
    const topic = (parsed as { topic?: unknown }).topic;
    if (typeof topic !== 'string') return this.drop('no_topic', frames);
    if (topicError(topic, this.limits.maxTopicLength) !== null) return this.drop('invalid_topic', frames);
    const root = rootOf(topic);
    if (rootFrame.length !== Buffer.byteLength(root) || rootFrame.toString('utf8') !== root) return this.drop('root_mismatch', frames);
    const stream = this.streams.append(topic, body, performance.now());
    const frame = encodeStreamFrame(LinkKind.MESSAGE, stream.topicBytes, stream.epochBytes, stream.top, body);
    // A root's own topic travels under its own key; topics below it in the root's batch.
    if (topic.length === root.length) this.gateways.send(frame);
    else this.gateways.message(root, frame);
    // The frames may be views of the reader's buffer (zmtp-peer.ts): the plain port's queue keeps copies.
    this.plain?.send(frames.map((frame) => Buffer.from(frame)));
    this.forwarded++;
  }

  /** A message the publisher port's reader skipped instead of reading (zmq/zmtp-subscriber.ts). */
  skipped(reason: 'bad_frames' | 'oversized', bytes: number): void {
    this.messagesIn++;
    this.bytesIn += bytes;
    this.drop(reason, []);
  }

  private drop(reason: PublishDropReason, frames: Buffer[]): void {
    this.drops[reason]++;
    this.onDrop(reason, frames);
  }
}
