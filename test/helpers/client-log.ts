/**
 * Records what a TormqClient and one of its subscriptions report (publications, acks, gaps, errors,
 * state changes) and lets a test wait for a condition on them: woken by the events, never polled.
 */
import assert from 'node:assert/strict';
import type { Publisher } from '../../src/index.js';
import type {
  ClientState,
  DisconnectContext,
  GapContext,
  Publication,
  SubscribedContext,
  Subscription,
  TormqClient,
  TormqClientError,
} from '../../src/client/tormq-client.js';

export class ClientLog {
  readonly publications: Array<Publication<{ i: number }>> = [];
  readonly subscribed: SubscribedContext[] = [];
  readonly gaps: GapContext[] = [];
  readonly errors: TormqClientError[] = [];
  readonly states: Array<{ state: ClientState; at: number }> = [];
  readonly disconnects: Array<DisconnectContext & { at: number }> = [];
  readonly connects: Array<{ url: string; at: number }> = [];
  private readonly waiters = new Set<() => void>();

  constructor(readonly client: TormqClient, readonly sub: Subscription<unknown>) {
    const wake = () => {
      for (const waiter of [...this.waiters]) waiter();
    };
    sub.on('publication', (p) => {
      this.publications.push(p as Publication<{ i: number }>);
      wake();
    });
    sub.on('subscribed', (c) => {
      this.subscribed.push(c);
      wake();
    });
    sub.on('gap', (c) => {
      this.gaps.push(c);
      wake();
    });
    sub.on('error', (e) => {
      this.errors.push(e);
      wake();
    });
    client.on('error', (e) => {
      this.errors.push(e);
      wake();
    });
    client.on('state', (state) => {
      this.states.push({ state, at: Date.now() });
      wake();
    });
    client.on('disconnected', (d) => {
      this.disconnects.push({ ...d, at: Date.now() });
      wake();
    });
    client.on('connected', ({ url }) => {
      this.connects.push({ url, at: Date.now() });
      wake();
    });
  }

  /** Resolves once `predicate` holds (checked now and after every recorded event). */
  until(predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${this.publications.length}, subscribed ${JSON.stringify(this.subscribed)}, gaps ${this.gaps.length}, errors ${this.errors.map((e) => e.code).join(',')}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** The `i` of each publication per stream topic, in arrival order. */
  byStream(): Map<string, Array<{ i: number; offset: number }>> {
    const streams = new Map<string, Array<{ i: number; offset: number }>>();
    for (const p of this.publications) {
      let list = streams.get(p.topic);
      if (list === undefined) streams.set(p.topic, (list = []));
      list.push({ i: p.data.i, offset: p.offset });
    }
    return streams;
  }
}

/**
 * Publishes `{ i }` on `topicOf(i)` every `intervalMs` until `stop()`; remembers what went where.
 * (The interval is the publishing rate, not a wait for anything.)
 */
export class PublishLoop {
  sent = 0;
  readonly byTopic = new Map<string, number[]>();
  private stopping = false;
  private readonly done: Promise<void>;

  constructor(publisher: Publisher, topicOf: (i: number) => string, intervalMs: number, private readonly max = 100_000) {
    this.done = (async () => {
      while (!this.stopping && this.sent < this.max) {
        const i = this.sent++;
        const topic = topicOf(i);
        let list = this.byTopic.get(topic);
        if (list === undefined) this.byTopic.set(topic, (list = []));
        list.push(i);
        await publisher.send(topic, { i });
        for (const wake of [...this.waiters]) wake();
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
      for (const wake of [...this.waiters]) wake();
    })();
  }

  private readonly waiters = new Set<() => void>();

  /** Resolves once `count` more messages than now have been sent (or the loop ended). */
  sendMore(count: number): Promise<void> {
    const target = this.sent + count;
    return new Promise((resolve) => {
      const check = () => {
        if (this.sent < target && !this.stopping && this.sent < this.max) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      check();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }
}

/** Every stream got exactly what was published on it, once each, in order, at offsets first..first+n-1. */
export function assertExactlyOnceInOrder(log: ClientLog, published: Map<string, number[]>, firstOffset = 1): void {
  const received = log.byStream();
  assert.deepEqual([...received.keys()].sort(), [...published.keys()].sort(), 'streams');
  for (const [topic, expected] of published) {
    const got = received.get(topic)!;
    assert.deepEqual(got.map((m) => m.i), expected, `stream ${topic}: messages`);
    assert.deepEqual(got.map((m) => m.offset), expected.map((_, k) => firstOffset + k), `stream ${topic}: offsets`);
  }
}
