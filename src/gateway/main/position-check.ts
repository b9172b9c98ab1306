/**
 * Positions requests to the MPC (zmq/gateway-link.ts), answered in the order of the messages on the
 * link, so "the stream is at N" means every message up to N that has not arrived was lost on the way.
 *
 * - Baselines: a newly routed topic learns where its stream stands before its marks can go (routing.ts);
 *   the request creates the stream at the MPC when it has none yet, so clients get an epoch to resume
 *   from even before the first message. Requests not answered in time are sent again.
 * - Checks: the end of a burst lost on the way (ZeroMQ drops past a high-water mark, silently) is
 *   revealed by no later message, so every `positionCheckMs` every routed stream is checked; one that
 *   is behind is repaired from history like any gap (fan-out.ts).
 * Control plane: one request per 1,000 topics.
 */
import { UNHELD, type PositionsReplyHeader } from '../../zmq/gateway-link.js';
import type { FanOut } from './fan-out.js';
import type { Routing } from './routing.js';
import type { Upstream } from './upstream.js';

const TOPICS_PER_REQUEST = 1000;
/** A baseline request not answered this long is sent again. */
const BASELINE_RETRY_MS = 2000;
const RETRY_SCAN_MS = 500;

interface Pending {
  readonly topics: readonly string[];
  readonly baseline: boolean;
  readonly sentAt: number;
  /** Every linked MPC answers; the request is done when all have (or it is retried). */
  answers: number;
}

export class PositionCheck {
  /** Positions requests sent (baselines and checks; one per up to 1,000 topics). */
  requests = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Topics waiting for a baseline request (sent together on the next turn of the event loop). */
  private readonly wanted = new Set<string>();
  private flushing = false;
  private checkTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly routing: Routing,
    private readonly upstream: Upstream,
    private readonly fanOut: FanOut,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs > 0) {
      this.checkTimer = setInterval(() => this.check(), this.intervalMs);
      this.checkTimer.unref();
    }
    this.retryTimer = setInterval(() => this.retry(), RETRY_SCAN_MS);
    this.retryTimer.unref();
  }

  stop(): void {
    if (this.checkTimer !== null) clearInterval(this.checkTimer);
    if (this.retryTimer !== null) clearInterval(this.retryTimer);
  }

  /** `topic` was routed: ask where its stream stands (batched with the others of this turn). */
  baseline(topic: string): void {
    this.wanted.add(topic);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      const topics = [...this.wanted];
      this.wanted.clear();
      this.send(topics, true);
    });
  }

  /** The MPC's answer to one request. */
  reply(header: PositionsReplyHeader): void {
    const request = this.pending.get(header.id);
    if (request === undefined || !Array.isArray(header.positions) || header.positions.length !== request.topics.length) return;
    // With several MPCs only the one publishing a topic knows its stream: every answer counts.
    if (++request.answers >= this.upstream.upCount()) this.pending.delete(header.id);
    for (let i = 0; i < request.topics.length; i++) {
      const [epoch, top, mark] = header.positions[i]!;
      const route = this.routing.routeOf(request.topics[i]!);
      if (route === undefined || typeof epoch !== 'string' || typeof top !== 'number') continue;
      if (request.baseline) this.fanOut.baseline(route, epoch, top, mark !== UNHELD);
      else this.fanOut.checkPosition(route, epoch, top);
    }
  }

  /** Checks every routed stream that has a baseline. */
  private check(): void {
    if (this.upstream.upCount() === 0) return;
    const topics: string[] = [];
    for (const topic of this.routing.topics()) if (this.routing.routeOf(topic)!.baseline) topics.push(topic);
    this.send(topics, false);
  }

  /**
   * Baseline requests not answered in time go again, unless some MPC answered without a stream: with
   * one MPC linked but not answering (stopped, say), that answer stands. Checks are not waited for.
   */
  private retry(): void {
    const now = Date.now();
    for (const [id, request] of this.pending) {
      if (now - request.sentAt < BASELINE_RETRY_MS) continue;
      this.pending.delete(id);
      if (!request.baseline) continue;
      for (const topic of request.topics) {
        const route = this.routing.routeOf(topic);
        if (route === undefined || route.baseline) continue;
        if (route.unheld !== null && route.unheld.length > 0) this.fanOut.adoptUnheld(route);
        else this.baseline(topic);
      }
    }
  }

  private send(topics: readonly string[], baseline: boolean): void {
    const now = Date.now();
    for (let i = 0; i < topics.length; i += TOPICS_PER_REQUEST) {
      const chunk = topics.slice(i, i + TOPICS_PER_REQUEST);
      const id = this.nextId++;
      this.pending.set(id, { topics: chunk, baseline, sentAt: now, answers: 0 });
      this.requests++;
      this.upstream.request({ type: 'positions', id, reply: this.upstream.idText, topics: chunk, ...(baseline ? { create: true } : {}) });
    }
  }
}
