/**
 * History requests to the MPC(s) (zmq/gateway-link.ts): the gateway's own gap repairs and its workers'
 * recoveries. Requests go to every connected MPC; each answers on this gateway's private key. A stream
 * is known to one MPC (its epoch is random), so an "ok" answer from an MPC holding it wins; when every
 * connected MPC has answered otherwise, the first answer of one holding the stream stands, else the
 * first. A request not answered in time is sent again,
 * then fails. Identical requests in flight are asked once (a deploy makes many clients resume the same
 * streams at once).
 *
 * `page` is one reply (at most ~1,000 messages or ~4 MiB, the MPC decides); `fetch` follows the pages
 * up to the caller's limit (tormq.v2 recoveries, bounded by --max-recovery-messages).
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
  /** This page ends before the stream's top (`page` only). */
  more: boolean;
}

interface Pending {
  readonly topic: string;
  readonly epoch: string;
  readonly after: number;
  readonly limit: number;
  readonly done: Array<(result: HistoryResult) => void>;
  attempt: number;
  timer: NodeJS.Timeout | null;
  /** Answers that do not settle it alone so far (with several MPCs). */
  answers: HistoryReplyHeader[];
  id: number;
}

export class HistoryClient {
  /** Requests sent (pages count one each). */
  requests = 0;
  /** Requests that failed (no MPC answered in time). */
  failures = 0;
  private nextId = 1;
  private readonly byId = new Map<number, Pending>();
  private readonly byKey = new Map<string, Pending>();

  constructor(private readonly upstream: Upstream) {}

  /** One page of messages of `topic` after `after` in `epoch` (at most `limit`). Never rejects. */
  page(topic: string, epoch: string, after: number, limit: number): Promise<HistoryResult> {
    const key = `${topic}\u0000${epoch}\u0000${after}\u0000${limit}`;
    return new Promise((resolve) => {
      const existing = this.byKey.get(key);
      if (existing !== undefined) {
        existing.done.push(resolve);
        return;
      }
      const pending: Pending = { topic, epoch, after, limit, attempt: 0, timer: null, answers: [], id: 0, done: [resolve] };
      this.byKey.set(key, pending);
      pending.done.push(() => this.byKey.delete(key));
      this.send(pending);
    });
  }

  /** Up to `limit` messages, following pages; stops at the first page that is not ok. Never rejects. */
  async fetch(topic: string, epoch: string, after: number, limit: number): Promise<HistoryResult> {
    const result: HistoryResult = { status: 'ok', epoch, top: 0, from: after + 1, bodies: [], more: false };
    while (result.bodies.length < limit) {
      const page = await this.page(topic, epoch, after + result.bodies.length, limit - result.bodies.length);
      result.status = page.status;
      result.epoch = page.epoch;
      result.top = page.top;
      if (page.status !== 'ok') return result;
      result.bodies.push(...page.bodies);
      if (!page.more || page.bodies.length === 0) break;
    }
    return result;
  }

  /** A private reply from an MPC. */
  reply(header: LinkReplyHeader, parts: Buffer[]): void {
    if (header.type !== 'history') return;
    const pending = this.byId.get(header.id);
    if (pending === undefined) return; // answered already, or timed out
    // With several MPCs, messages from the one holding the stream win; any other answer waits for all
    // of them, and then the holder's stands. An MPC holding no stream of the topic speaks only for
    // itself: its "ok, nothing published" made a resume from its fresh epoch read as recovered while
    // another MPC had published on the topic meanwhile.
    if (header.status !== 'ok' || header.held === false) {
      pending.answers.push(header);
      if (pending.answers.length >= Math.max(1, this.upstream.upCount())) {
        const chosen = pending.answers.find((answer) => answer.held !== false) ?? pending.answers[0]!;
        this.finish(pending, { status: chosen.status, epoch: chosen.epoch, top: chosen.top, from: pending.after + 1, bodies: [], more: false });
      }
      return;
    }
    // Bodies are views into the received frame: copied, so a long replay does not pin the whole frame.
    const bodies = parts.map((part) => Buffer.from(part));
    this.finish(pending, { status: 'ok', epoch: header.epoch, top: header.top, from: header.from, bodies, more: header.more });
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
      this.byId.delete(id);
      if (pending.attempt < ATTEMPTS) this.send(pending);
      else {
        this.failures++;
        this.finish(pending, { status: 'failed', epoch: pending.epoch, top: 0, from: pending.after + 1, bodies: [], more: false });
      }
    }, REQUEST_TIMEOUT_MS);
    pending.timer.unref();
  }

  private finish(pending: Pending, result: HistoryResult): void {
    if (pending.timer !== null) clearTimeout(pending.timer);
    pending.timer = null;
    this.byId.delete(pending.id);
    for (const done of pending.done) done(result);
  }
}
