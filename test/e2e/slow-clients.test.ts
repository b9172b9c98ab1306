/**
 * Hardening: clients that stop reading and clients that stop answering pings. A sustained broadcast of
 * 256 MiB goes through two gateways at once (slow-client policy `close` and `drop`), each with a client
 * that reads everything and one that never reads. The readers get every message, the gateways' RSS stays
 * bounded, and the non-readers are closed with 4008 or skipped, as configured. tormq.v2 clients that
 * never read and ask for a large recovery hold little each (64 KiB unsent, and their worker's replay
 * budget all together), and are treated as slow clients after --replay-stall-ms.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Publisher } from '../../src/index.js';
import { metricValue, metricsText, rssBytes, until } from '../helpers/probes.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type GatewayStats, type MpcProcess } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

const total = (stats: GatewayStats, key: string) => stats.workers.reduce((n, w) => n + (w[key] as number), 0);
const MiB = 1024 * 1024;

/** Reads everything and checks order, without keeping 256 MiB of messages around. */
class CountingReader {
  count = 0;
  outOfOrder = 0;
  /** Warm-up probes seen (not counted as messages). */
  probes = 0;
  readonly ws: WebSocket;
  private waiter: (() => void) | null = null;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      if (text.startsWith('{"event"')) return; // the subscribe ack
      if (text.includes('"probe"')) {
        this.probes++;
        return;
      }
      const i = Number(/"i":(\d+)/.exec(text.slice(0, 64))?.[1]);
      if (i !== this.count) this.outOfOrder++;
      this.count++;
      this.waiter?.();
    });
  }

  async open(topic: string): Promise<void> {
    await new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.ws.send(JSON.stringify({ event: 'subscribe', topic, id: 1 }));
    await new Promise<void>((resolve) => this.ws.once('message', () => resolve()));
  }

  waitForCount(n: number, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`reader got ${this.count} of ${n}`)), timeoutMs);
      const check = () => {
        if (this.count >= n) {
          clearTimeout(timer);
          this.waiter = null;
          resolve();
        }
      };
      this.waiter = check;
      check();
    });
  }
}

describe('hardening: slow clients under a sustained broadcast', () => {
  let mpc: MpcProcess;
  let closing: GatewayProcess;
  let dropping: GatewayProcess;
  let publisher: Publisher;
  const readers: CountingReader[] = [];
  const clients: TestClient[] = [];

  before(async () => {
    mpc = await startMpcProcess();
    // The default --slow-client-bytes (4 MiB): a window in flight (2 MiB) always fits for a reader.
    const common = ['--max-message-bytes', String(128 * 1024)];
    closing = await startGatewayProcess(mpc.gatewayPort, [...common, '--slow-client-policy', 'close']);
    dropping = await startGatewayProcess(mpc.gatewayPort, [...common, '--slow-client-policy', 'drop']);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    for (const r of readers) r.ws.terminate();
    await Promise.all(clients.map((c) => c.close()));
    await publisher?.close();
    await closing?.stop();
    await dropping?.stop();
    await mpc?.stop();
  });

  test('readers get every message, RSS stays bounded, non-readers are closed (4008) or skipped', async (t) => {
    const gateways = [closing, dropping];
    const slow: TestClient[] = [];
    for (const gateway of gateways) {
      const reader = new CountingReader(gateway.url);
      await reader.open('big');
      readers.push(reader);
      const stalled = await TestClient.connect(gateway.url);
      clients.push(stalled);
      await stalled.subscribe('big');
      stalled.ws.pause(); // stops reading from the socket: TCP windows fill, then the gateway's buffer
      slow.push(stalled);
    }
    // Both gateways' subscriptions must have reached the MPC before the first counted send, or one
    // misses the start. ZeroMQ keeps order: once a probe reached both readers, everything after does.
    await until('both gateways subscribed upstream', async () => {
      if (readers.every((r) => r.probes > 0)) return true;
      if (publisher.hasSubscribers('big')) await publisher.send('big', 'probe');
      return false;
    });

    const pad = 'x'.repeat(64 * 1024 - 40);
    const messages = 4096; // 4096 x 64 KiB = 256 MiB through each gateway
    const window = 32; // publish in windows the readers confirm: no ZeroMQ high-water-mark loss
    const baseline = gateways.map((g) => rssBytes(g.child.pid!));
    const peak = [...baseline];
    const earlyPeak = [...baseline]; // first quarter: the heap and allocator warm up
    const latePeak = [0, 0]; // second half: a bounded gateway has plateaued
    let resumedClosed = false;
    for (let sent = 0; sent < messages; ) {
      for (let k = 0; k < window; k++, sent++) await publisher.send('big', { i: sent, pad });
      await Promise.all(readers.map((r) => r.waitForCount(sent)));
      gateways.forEach((g, i) => {
        const rss = rssBytes(g.child.pid!);
        peak[i] = Math.max(peak[i]!, rss);
        if (sent <= messages / 4) earlyPeak[i] = Math.max(earlyPeak[i]!, rss);
        if (sent > messages / 2) latePeak[i] = Math.max(latePeak[i]!, rss);
      });
      if (!resumedClosed && total(await closing.stats(), 'slowClientDisconnects') > 0) {
        // Closed for being slow: now let it read, so it sees the close frame behind what was queued.
        slow[0]!.ws.resume();
        resumedClosed = true;
      }
    }

    for (const reader of readers) {
      assert.equal(reader.count, messages);
      assert.equal(reader.outOfOrder, 0);
    }
    // Unbounded buffering for the non-reader would hold most of the 256 MiB (128 MiB of it arriving in
    // the second half); the limit is 4 MiB. Bounded, RSS warms up (heap, allocator) and then stays flat.
    gateways.forEach((g, i) => {
      const mib = (n: number) => Math.round(n / MiB);
      const detail = `gateway ${i}: baseline ${mib(baseline[i]!)}, first quarter ${mib(earlyPeak[i]!)}, second half ${mib(latePeak[i]!)} MiB`;
      t.diagnostic(detail);
      assert.ok(peak[i]! - baseline[i]! < 160 * MiB, detail);
      // Node 24's heap warms up longer (measured: first quarter 182, second half 235 MiB on one gateway);
      // unbounded buffering would add at least the 128 MiB of the second half.
      assert.ok(latePeak[i]! - earlyPeak[i]! < 80 * MiB, detail);
    });

    // Policy close: disconnected with 4008 once, and counted.
    assert.equal(resumedClosed, true, 'the close-policy gateway closed its slow client');
    assert.equal(await slow[0]!.closed, 4008);
    const closedStats = await closing.stats();
    assert.equal(total(closedStats, 'slowClientDisconnects'), 1);
    assert.equal(total(closedStats, 'slowClientDrops'), 0);
    assert.equal(metricValue(await metricsText(closing), 'tormq_slow_client_disconnects_total', { worker: '0' })! +
      metricValue(await metricsText(closing), 'tormq_slow_client_disconnects_total', { worker: '1' })!, 1);

    // Policy drop: still connected, messages skipped and counted; once it reads again it gets new ones.
    const dropStats = await dropping.stats();
    assert.equal(total(dropStats, 'slowClientDisconnects'), 0);
    const skipped = total(dropStats, 'slowClientDrops');
    assert.ok(skipped > 0 && skipped < messages, `skipped ${skipped}`);
    assert.equal(slow[1]!.closeCode, null);
    slow[1]!.ws.resume();
    // Markers sent while it still works through its backlog are skipped too (that is the policy), so
    // keep offering one until it has caught up; there is no other signal for "its buffer drained".
    await until('the resumed client to catch up', async () => {
      if (slow[1]!.messages.some((m) => m.includes('"caught up"'))) return true;
      await publisher.send('big', { pad: 'caught up' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      return false;
    }, 30_000);
    // It got what fitted in its buffers before the limit: never more than was sent.
    const got = slow[1]!.bodies().filter((b) => b.includes('"i":')).length;
    assert.ok(got > 0 && got + skipped <= messages, `got ${got} + skipped ${skipped}`);
  });
});

describe('hardening: heartbeats', () => {
  const sys = useSystem({ gatewayArgs: ['--heartbeat-ms', '200'] });

  test('a client that does not answer pings is terminated and counted; others and {"event":"ping"} keep working', async () => {
    const healthy = await TestClient.connect(sys.gateway.url);
    sys.clients.push(healthy);
    await healthy.subscribe('hb');
    // autoPong: false makes ws ignore pings, like a peer whose network died.
    const deaf = await TestClient.connect(sys.gateway.url, { autoPong: false });
    sys.clients.push(deaf);
    await deaf.subscribe('hb');
    // Terminated, not closed: no close frame, so the client sees 1006.
    assert.equal(await deaf.closed, 1006);
    await until('termination counted', async () => total(await sys.gateway.stats(), 'heartbeatTerminations') === 1);
    // A second deaf client takes at least two more intervals: the healthy one answered all the while.
    const deaf2 = await TestClient.connect(sys.gateway.url, { autoPong: false });
    sys.clients.push(deaf2);
    assert.deepEqual(await deaf2.request({ event: 'ping' }), { event: 'pong', id: 1 }, 'application ping answered');
    assert.equal(await deaf2.closed, 1006);
    await until('second termination counted', async () => total(await sys.gateway.stats(), 'heartbeatTerminations') === 2);
    assert.equal(healthy.closeCode, null);
    assert.deepEqual(await healthy.request({ event: 'ping' }), { event: 'pong', id: 2 });
    healthy.send({ event: 'ping' });
    await healthy.waitFor((m) => m === '{"event":"pong"}');
    const metrics = await metricsText(sys.gateway);
    const counted = ['0', '1'].reduce((n, worker) => n + metricValue(metrics, 'tormq_heartbeat_terminations_total', { worker })!, 0);
    assert.equal(counted, 2);
    const stats = await sys.gateway.stats();
    assert.equal(stats.connections, 1);
    assert.ok(!stats.workers.some((w) => w.subscriptions > 1), 'the terminated clients left their subscriptions');
  });
});

/**
 * 64 streams × 100 messages of 4 KB in the MPC's history (published paced by a reader, so none is lost to
 * a full queue): 25.6 MB of replay for a client that asks for all of it, more than loopback's socket
 * buffers take (at most 4 MB sent, 6 MB received). Returns the reader and the streams' start positions.
 */
async function publishHistory(sys: ReturnType<typeof useSystem>) {
  const reader = await TestClient.v2(sys.gateway.url);
  sys.clients.push(reader);
  const ack = (await reader.request({ event: 'subscribe', topics: RECOVERY_TOPICS, recover: true })) as { positions: Record<string, { epoch: string; offset: number }> };
  const since = Object.fromEntries(RECOVERY_TOPICS.map((topic) => [topic, ack.positions[topic]!]));
  await sys.publisher.ready({ topic: 'rc', timeoutMs: 10_000 });
  for (let n = 1; n <= PER_TOPIC; n++) {
    for (const topic of RECOVERY_TOPICS) await sys.publisher.send(topic, { n, pad: 'r'.repeat(4000) });
    await reader.waitForCount(1 + RECOVERY_TOPICS.length * n, 30_000);
  }
  return { reader, since };
}
const RECOVERY_TOPICS = Array.from({ length: 64 }, (_, i) => `rc:${i}`);
const PER_TOPIC = 100;

/** Asks for everything since `since` with one frame, and never reads. */
async function stalledRecovery(sys: ReturnType<typeof useSystem>, since: Record<string, unknown>): Promise<TestClient> {
  const client = await TestClient.v2(sys.gateway.url);
  sys.clients.push(client);
  client.ws.pause();
  client.send({ event: 'subscribe', id: 1, topics: RECOVERY_TOPICS, recover: true, since });
  return client;
}

/** The client got the ack (`recovered` as expected) and every message since `since`, in order per stream. */
async function assertFullRecovery(client: TestClient, since: Record<string, { offset: number }>): Promise<void> {
  await client.waitForCount(1 + RECOVERY_TOPICS.length * PER_TOPIC, 30_000);
  const reply = JSON.parse(client.messages.find((m) => m.includes('"id":1'))!) as { event: string; recovered: boolean };
  assert.deepEqual([reply.event, reply.recovered], ['ack', true]);
  const offsets = new Map<string, number>();
  for (const p of client.publications()) {
    assert.equal(p.offset, (offsets.get(p.topic) ?? since[p.topic]!.offset) + 1, `${p.topic} in order, none missing`);
    offsets.set(p.topic, p.offset);
  }
  assert.equal(client.publications().length, RECOVERY_TOPICS.length * PER_TOPIC);
}

describe('hardening: recoveries asked for by clients that never read', () => {
  const sys = useSystem({ mpcArgs: ['--history-size', '100'] }); // --slow-client-bytes and --replay-stall-ms at their defaults

  test('each one holds a little of its replay, not all it asked for; one that starts reading gets all of it, in order', async (t) => {
    const { reader, since } = await publishHistory(sys);
    const before = rssBytes(sys.gateway.child.pid!);
    const deliveredBefore = total(await sys.gateway.stats(), 'deliveries');
    // Four connections each ask for all 6,400 messages (25.6 MB of replay) with one frame, and never read.
    const stalled: TestClient[] = [];
    for (let i = 0; i < 4; i++) stalled.push(await stalledRecovery(sys, since));
    // Long enough for every replay to have been fetched and written as far as it can go.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const grown = rssBytes(sys.gateway.child.pid!) - before;
    const written = total(await sys.gateway.stats(), 'deliveries') - deliveredBefore;
    const all = 4 * RECOVERY_TOPICS.length * PER_TOPIC;
    t.diagnostic(`gateway RSS grew by ${(grown / MiB).toFixed(1)} MB for 4 stalled recoveries of 25.6 MB each; ${written} of ${all} messages written`);
    // Written at once, every replay went to its socket's buffer (≈ 2.7× its bytes of RSS), held there
    // until the connection closed. Paced, each stops once its socket holds 64 KiB unsent.
    assert.ok(written < all * 0.6, `${written} replayed messages written to clients that read none`);
    assert.ok(grown < 150 * MiB, `gateway RSS grew by ${(grown / MiB).toFixed(1)} MB`);
    // The replay was paced, not lost: one that starts reading gets the ack and every message, in order.
    stalled[0]!.ws.resume();
    await assertFullRecovery(stalled[0]!, since);
    // Everyone else is served meanwhile.
    const from = reader.messages.length;
    await sys.publisher.send('rc:0', 'after');
    await reader.waitFor((m) => m.includes('"after"'), from);
    for (const client of stalled.slice(1)) client.ws.terminate(); // paused, they would never finish a close handshake
  });
});

describe('hardening: many recoveries that never read, within the worker\'s replay budget', () => {
  const budget = 1 * MiB;
  const sys = useSystem({
    mpcArgs: ['--history-size', '100'],
    gatewayArgs: ['--workers', '1', '--replay-budget-bytes', String(budget), '--replay-stall-ms', '1500'],
  });

  test('together they hold about --replay-budget-bytes, not a window each; each is closed (4008) after --replay-stall-ms; a recovery queued behind them completes', async (t) => {
    const { since } = await publishHistory(sys);
    const stalled: TestClient[] = [];
    for (let i = 0; i < 12; i++) stalled.push(await stalledRecovery(sys, since));
    // One window is 8 streams × 100 × 4 KB ≈ 3.3 MB: twelve held at once would be ≈ 40 MB.
    let peak = 0;
    const sampler = setInterval(() => {
      void sys.gateway.stats().then((stats) => (peak = Math.max(peak, total(stats, 'replayBytes'))), () => {});
    }, 50);
    // An honest client asks meanwhile: it waits its turn behind the stalled ones.
    const honest = await TestClient.v2(sys.gateway.url);
    sys.clients.push(honest);
    honest.send({ event: 'subscribe', id: 1, topics: RECOVERY_TOPICS, recover: true, since });
    try {
      await until('every stalled recovery closed as a slow client', async () => total(await sys.gateway.stats(), 'slowClientDisconnects') === 12, 60_000);
    } finally {
      clearInterval(sampler);
    }
    const stats = await sys.gateway.stats();
    t.diagnostic(`replay held at most ${(peak / MiB).toFixed(1)} MB (budget ${budget / MiB} MiB); ${total(stats, 'replayWaits')} windows waited`);
    assert.ok(total(stats, 'replayWaits') > 0, 'windows waited for the budget');
    assert.ok(peak > 0 && peak < 10 * MiB, `replay held ${peak} bytes at most`);
    await assertFullRecovery(honest, since);
    assert.equal(honest.closeCode, null);
    await until('the replay budget emptied', async () => total(await sys.gateway.stats(), 'replayBytes') === 0);
    assert.equal(metricValue(await metricsText(sys.gateway), 'tormq_slow_client_disconnects_total', { worker: '0' }), 12);
    for (const client of stalled) client.ws.terminate();
  });
});

describe('hardening: a recovery whose client stops reading, under policy drop', () => {
  const sys = useSystem({
    mpcArgs: ['--history-size', '100'],
    gatewayArgs: ['--slow-client-policy', 'drop', '--replay-stall-ms', '1000'],
  });

  test('the replay ends after --replay-stall-ms, the rest counted as drops; the client stays, is told recovered: false, and gets live messages', async (t) => {
    const { since } = await publishHistory(sys);
    const client = await stalledRecovery(sys, since);
    await until('the replay ended as stalled', async () => total(await sys.gateway.stats(), 'slowClientDrops') > 0, 20_000);
    const drops = total(await sys.gateway.stats(), 'slowClientDrops');
    client.ws.resume();
    const ack = JSON.parse(await client.waitFor((m) => m.includes('"id":1'))) as { event: string; recovered: boolean };
    assert.deepEqual([ack.event, ack.recovered], ['ack', false]);
    const replayed = client.publications().length;
    t.diagnostic(`${replayed} replayed, ${drops} counted as dropped, of ${RECOVERY_TOPICS.length * PER_TOPIC}`);
    assert.ok(replayed > 0 && replayed + drops <= RECOVERY_TOPICS.length * PER_TOPIC, `${replayed} replayed + ${drops} dropped`);
    assert.ok(replayed < RECOVERY_TOPICS.length * PER_TOPIC);
    const from = client.messages.length;
    await sys.publisher.send('rc:1', 'live');
    await client.waitFor((m) => m.includes('"live"'), from);
    assert.equal(client.closeCode, null);
    assert.equal(total(await sys.gateway.stats(), 'slowClientDisconnects'), 0);
  });
});
