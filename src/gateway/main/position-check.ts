/**
 * The end of a burst lost on the way from the MPC (ZeroMQ drops past a high-water mark, silently) is
 * revealed by no later message. So every `positionCheckMs` the gateway asks the MPC where each routed
 * stream stands; the answer travels the same ordered pipe as the messages, so a reported offset above
 * what arrived means messages were lost: repaired from history like any gap (fan-out.ts). Control
 * plane: one request per 1,000 topics per interval.
 */
import type { PositionsReplyHeader } from '../../zmq/gateway-link.js';
import type { FanOut } from './fan-out.js';
import type { Routing } from './routing.js';
import type { Upstream } from './upstream.js';

const TOPICS_PER_REQUEST = 1000;

export class PositionCheck {
  /** Position checks sent (one per up to 1,000 topics). */
  requests = 0;
  private nextId = 1;
  /** Topics of each request in flight, by id (cleared at the next round: a lost reply is not waited for). */
  private readonly pending = new Map<number, readonly string[]>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly routing: Routing,
    private readonly upstream: Upstream,
    private readonly fanOut: FanOut,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs <= 0) return;
    this.timer = setInterval(() => this.round(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
  }

  /** The MPC's answer to one request. */
  reply(header: PositionsReplyHeader): void {
    const topics = this.pending.get(header.id);
    if (topics === undefined || !Array.isArray(header.positions) || header.positions.length !== topics.length) return;
    this.pending.delete(header.id);
    for (let i = 0; i < topics.length; i++) {
      const [epoch, top] = header.positions[i]!;
      const route = this.routing.routeOf(topics[i]!);
      if (route !== undefined && typeof epoch === 'string' && typeof top === 'number') this.fanOut.checkPosition(route, epoch, top);
    }
  }

  private round(): void {
    this.pending.clear();
    if (this.upstream.upCount() === 0) return;
    const topics = this.routing.topics();
    for (let i = 0; i < topics.length; i += TOPICS_PER_REQUEST) {
      const chunk = topics.slice(i, i + TOPICS_PER_REQUEST);
      const id = this.nextId++;
      this.pending.set(id, chunk);
      this.requests++;
      this.upstream.request({ type: 'positions', id, reply: this.upstream.idText, topics: chunk });
    }
  }
}
