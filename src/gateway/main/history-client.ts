/**
 * History requests to the MPC(s) (zmq/gateway-link.ts): the gateway's own gap repairs and its workers'
 * recoveries. Requests go to every connected MPC; each answers on this gateway's private key. A stream
 * is known to one MPC (its epoch is random), so an "ok" answer wins; when every connected MPC has
 * answered otherwise, the first such answer stands. A request not answered in time is sent again,
 * then fails. Pages (`more`) are fetched until the caller's limit. Identical requests in flight are
 * asked once (a deploy makes many clients resume the same streams at once).
 */
import type { HistoryReplyHeader, HistoryStatus, LinkReplyHeader } from '../../zmq/gateway-link.js';
import type { Upstream } from './upstream.js';

const REQUEST_TIMEOUT_MS = 2000;
const ATTEMPTS = 3;

export interface HistoryResult {
  status: HistoryStatus | 'failed';
  epoch: string;
  top: number;
  /** Offset of bodies[0]. */
  from: number;
  bodies: Buffer[];
}

interface Pending {
  readonly topic: string;
  readonly epoch: string;
  after: number;
  limit: number;
  readonly result: HistoryResult;
  readonly done: Array<(result: HistoryResult) => void>;
  attempt: number;
  timer: NodeJS.Timeout | null;
  /** Non-ok answers to the current page so far (with several MPCs). */
  answers: HistoryReplyHeader[];
  id: number;
}

export class HistoryClient {
  /** Requests that failed (no MPC answered in time). */
  failures = 0;
  requests = 0;
  private nextId = 1;
  private readonly byId = new Map<number, Pending>();
  private readonly byKey = new Map<string, Pending>();

  constructor(private readonly upstream: Upstream) {}

  /** Up to `limit` messages of `topic` after `after` in `epoch`. Never rejects: failures are a status. */
  fetch(topic: string, epoch: string, after: number, limit: number): Promise<HistoryResult> {
    const key = `${topic}\u0000${epoch}\u0000${after}\u0000${limit}`;
    return new Promise((resolve) => {
      const existing = this.byKey.get(key);
      if (existing !== undefined) {
        existing.done.push(resolve);
        return;
      }
      const pending: Pending = {
        topic, epoch, after, limit, attempt: 0, timer: null, answers: [], id: 0,
        result: { status: 'ok', epoch, top: 0, from: after + 1, bodies: [] },
        done: [resolve],
      };
      this.byKey.set(key, pending);
      pending.done.push(() => this.byKey.delete(key));
      this.send(pending);
    });
  }

  /** A private reply from an MPC. */
  reply(header: LinkReplyHeader, parts: Buffer[]): void {
    if (header.type !== 'history') return;
    const pending = this.byId.get(header.id);
    if (pending === undefined) return; // answered already, or timed out
    if (header.status !== 'ok') {
      pending.answers.push(header);
      if (pending.answers.length >= Math.max(1, this.upstream.upCount())) this.complete(pending, pending.answers[0]!);
      return;
    }
    const result = pending.result;
    result.epoch = header.epoch;
    result.top = header.top;
    // Bodies are views into the received frame: copied, so the frame is not retained by a long replay.
    for (const part of parts) result.bodies.push(Buffer.from(part));
    pending.after += parts.length;
    pending.limit -= parts.length;
    if (header.more && pending.limit > 0 && parts.length > 0) {
      this.clear(pending);
      pending.attempt = 0;
      this.send(pending);
      return;
    }
    this.complete(pending, header);
  }

  private send(pending: Pending): void {
    const id = this.nextId++;
    pending.id = id;
    pending.answers = [];
    pending.attempt++;
    this.byId.set(id, pending);
    this.requests++;
    this.upstream.request({ type: 'history', id, reply: this.upstream.idText, topic: pending.topic, epoch: pending.epoch, after: pending.after, limit: pending.limit });
    pending.timer = setTimeout(() => {
      this.clear(pending);
      if (pending.attempt < ATTEMPTS) this.send(pending);
      else {
        this.failures++;
        this.finish(pending, 'failed');
      }
    }, REQUEST_TIMEOUT_MS);
    pending.timer.unref();
  }

  private complete(pending: Pending, header: HistoryReplyHeader): void {
    this.clear(pending);
    if (header.status !== 'ok') {
      pending.result.epoch = header.epoch;
      pending.result.top = header.top;
    }
    this.finish(pending, header.status);
  }

  private finish(pending: Pending, status: HistoryResult['status']): void {
    pending.result.status = status;
    for (const done of pending.done) done(pending.result);
  }

  private clear(pending: Pending): void {
    if (pending.timer !== null) clearTimeout(pending.timer);
    pending.timer = null;
    this.byId.delete(pending.id);
  }
}
