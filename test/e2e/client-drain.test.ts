/**
 * A deploy, for real: 2,000 client instances on one gateway, the gateway drained with SIGTERM (each
 * connection closed with 1001, spread over --drain-ms) and replaced by a new gateway process on the
 * same port. Every client must come back, recover, and have every message once and in order; how
 * their reconnects spread over time (the point of the jittered backoff: no spike) is measured and
 * printed, not asserted (timings are the machine's).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Publisher } from '../../src/index.js';
import { TormqClient, type SubscribedContext, type Subscription } from '../../src/client/tormq-client.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';

const FLEET = 2000;
const WAVE = 200;
const MIN_DELAY = 250;
const MAX_DELAY = 4000;
const DRAIN_MS = 2000;
const PER_PHASE = 10;

interface Member {
  readonly client: TormqClient;
  readonly sub: Subscription<{ i: number }>;
  readonly acks: SubscribedContext[];
  readonly received: number[];
  closedAt: number | null;
  closeCode: number | null;
  /** Connection attempts after the 1001 (each 'connecting'). */
  attempts: number;
  reconnectedAt: number | null;
  /** When the attempt that succeeded started (its backoff timer fired). */
  attemptAt: number | null;
  lastConnectingAt: number;
}

describe(`a drained gateway and ${FLEET} client instances`, () => {
  let mpc: MpcProcess;
  let publisher: Publisher;
  const gateways: GatewayProcess[] = [];
  const members: Member[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const until = (predicate: () => boolean, what: string, timeoutMs = 60_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  before(async () => {
    mpc = await startMpcProcess();
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    for (const m of members) m.client.close();
    await publisher?.close();
    for (const g of gateways) await g.stop();
    await mpc?.stop();
  });

  test('every client reconnects, recovers and has every message once; the reconnects spread over the backoff window', async () => {
    const g1 = await startGatewayProcess(mpc.gatewayPort, ['--drain-ms', String(DRAIN_MS)]);
    gateways.push(g1);
    const connectStarted = Date.now();
    for (let start = 0; start < FLEET; start += WAVE) {
      const wave: Array<Promise<void>> = [];
      for (let i = start; i < Math.min(FLEET, start + WAVE); i++) {
        const client = new TormqClient(g1.url, { minReconnectDelay: MIN_DELAY, maxReconnectDelay: MAX_DELAY });
        const sub = client.subscribe<{ i: number }>(`fleet:${i % 40}`);
        const m: Member = { client, sub, acks: [], received: [], closedAt: null, closeCode: null, attempts: 0, reconnectedAt: null, attemptAt: null, lastConnectingAt: 0 };
        sub.on('subscribed', (c) => {
          m.acks.push(c);
          wake();
        });
        sub.on('publication', (p) => {
          m.received.push(p.data.i);
          wake();
        });
        client.on('disconnected', (d) => {
          if (m.closedAt === null) {
            m.closedAt = Date.now();
            m.closeCode = d.code;
          }
        });
        client.on('state', (s) => {
          if (m.closedAt !== null && s === 'connecting') {
            m.attempts++;
            m.lastConnectingAt = Date.now();
          }
          if (m.closedAt !== null && s === 'connected' && m.reconnectedAt === null) {
            m.reconnectedAt = Date.now();
            m.attemptAt = m.lastConnectingAt;
          }
        });
        members.push(m);
        wave.push(client.connect().then(() => until(() => m.acks.length === 1, 'a first ack')));
      }
      await Promise.all(wave);
    }
    const connectMs = Date.now() - connectStarted;

    await publisher.ready({ topic: 'fleet:0', timeoutMs: 15_000 });
    let next = 0;
    const publishPhase = async (gapMs: number) => {
      for (let k = 0; k < PER_PHASE; k++) {
        await publisher.send('fleet', { i: next++ });
        if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
    };
    await publishPhase(0);
    await until(() => members.every((m) => m.received.length === PER_PHASE), 'every client to have the first messages');

    const termAt = Date.now();
    const exited = g1.stop('SIGTERM');
    await publishPhase(DRAIN_MS / PER_PHASE); // published during the drain
    assert.equal(await exited, 0);
    const g2 = await startGatewayProcess(mpc.gatewayPort, ['-p', String(g1.port), '--drain-ms', String(DRAIN_MS)]);
    gateways.push(g2);
    // The port accepts from the first worker listening on (before "gateway ready").
    const listening = await g2.waitForLog((l) => l.msg === 'worker listening');
    const readyAt = Date.parse(String(listening.time));
    await publishPhase(0);
    const total = next;
    await until(
      () => members.every((m) => m.acks.length === 2 && m.received.length === total),
      'every client to resubscribe and have every message',
      90_000,
    );

    // Correctness: each client was drained once, came back, recovered, and has 0..total-1 once, in order.
    const expected = Array.from({ length: total }, (_, i) => i);
    for (const [n, m] of members.entries()) {
      assert.equal(m.closeCode, 1001, `client ${n}: close code`);
      assert.deepEqual(m.acks[1] && [m.acks[1].wasRecovering, m.acks[1].recovered], [true, true], `client ${n}: recovery`);
      assert.deepEqual(m.received, expected, `client ${n}: messages`);
    }

    // Measured, printed: how the closes and the reconnects spread over time.
    const closes = members.map((m) => m.closedAt! - termAt).sort((a, b) => a - b);
    const reconnects = members.map((m) => m.reconnectedAt! - readyAt).sort((a, b) => a - b);
    const attempts = members.map((m) => m.attempts);
    const q = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
    const histogram = (times: number[]) => {
      const buckets = new Map<number, number>();
      for (const t of times) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) ?? 0) + 1);
      return buckets;
    };
    const buckets = histogram(reconnects);
    const busiest = Math.max(...buckets.values());
    // The successful attempts by when they started (their backoff timer fired), before the gateway's accept queue.
    const started = members.map((m) => m.attemptAt! - readyAt).sort((a, b) => a - b);
    const startedBuckets = histogram(started);
    const perSecond = new Map<number, number>();
    for (const r of reconnects) perSecond.set(Math.floor(r / 1000), (perSecond.get(Math.floor(r / 1000)) ?? 0) + 1);
    const figures = {
      clients: FLEET,
      connectAllMs: connectMs,
      backoff: { minReconnectDelay: MIN_DELAY, maxReconnectDelay: MAX_DELAY },
      drainMs: DRAIN_MS,
      closesAfterSigtermMs: { first: closes[0], p50: q(closes, 0.5), last: closes.at(-1) },
      gatewayDownMs: readyAt - termAt,
      reconnectsAfterNewGatewayListensMs: { first: reconnects[0], p10: q(reconnects, 0.1), p50: q(reconnects, 0.5), p90: q(reconnects, 0.9), last: reconnects.at(-1) },
      busiest100msBucket: { reconnects: busiest, shareOfFleet: Number((busiest / FLEET).toFixed(3)) },
      reconnectsPerSecond: Object.fromEntries([...perSecond].sort((a, b) => a[0] - b[0]).map(([s, n]) => [`${s}s`, n])),
      reconnectsPer100ms: [...buckets].sort((a, b) => a[0] - b[0]).map(([, n]) => n).join(' '),
      successfulAttemptsStartedPer100ms: [...startedBuckets].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${k}:${n}`).join(' '),
      busiestStartBucket: Math.max(...startedBuckets.values()),
      attemptsPerClient: { mean: Number((attempts.reduce((a, b) => a + b, 0) / FLEET).toFixed(2)), max: Math.max(...attempts) },
    };
    console.log(`# drain figures: ${JSON.stringify(figures)}`);
  });
});
