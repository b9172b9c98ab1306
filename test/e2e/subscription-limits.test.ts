/**
 * Hostile input (issue 10, item 2): one subscribe frame under 64 KiB naming 256 topics of 125
 * one-character segments cost ≈ 7.4 MB of worker heap (a trie node per segment), and 1,600 such
 * connections killed both workers (ERR_WORKER_OUT_OF_MEMORY). Reproduced at that scale against real
 * processes: the frame is refused (ERR_TOPIC_TOO_DEEP), the costliest frame the limits allow is
 * accepted and the next one refused (ERR_SUBSCRIPTION_BUDGET), the gateway's RSS stays within the
 * documented worst case per connection, no worker dies, bystanders get their messages, and the
 * counters show every refusal. The same holds under token auth, below a connection's own grant.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Publisher } from '../../src/index.js';
import { clientsOnEveryWorker, metricValue, metricsText, rawUpgrade, rssBytes } from '../helpers/probes.js';
import type { GatewayProcess, GatewayStats } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

/** The scale that killed a 2-worker gateway. */
const ATTACKERS = 1600;
/**
 * What one connection may cost the gateway at most with the default limits, bytes of RSS: measured
 * 354 KB (`node dist/bench/subscription-memory.js`, README "Memory per connection"), with room for
 * garbage the workers have not collected yet. Before the limits it was ≈ 7.4 MB.
 */
const WORST_CASE_BYTES_PER_CONNECTION = 512 * 1024;
const SECRET = 'e2e-secret-0123456789-abcdefghijklmnopqrstuv';

const total = (stats: GatewayStats, key: string) => stats.workers.reduce((n, w) => n + (w[key] as number), 0);
// Random text to cut segments from (base64url: never `:`).
const POOL = randomBytes(1 << 20).toString('base64url');
const cut = (length: number) => {
  const at = Math.floor(Math.random() * (POOL.length - length));
  return POOL.slice(at, at + length);
};

/**
 * Issue 10's frame: 256 distinct topics of 125 one-character segments (249 characters: the whole frame
 * just under 64 KiB); below `prefix`, as many segments as fit in the same length.
 */
function attackTopics(prefix = ''): string[] {
  const segments = Math.floor((249 - prefix.length + 1) / 2);
  return Array.from({ length: 256 }, () => prefix + Array.from({ length: segments }, () => cut(1)).join(':'));
}

/** The costliest subscription set the defaults allow: 256 topics of 4 random segments (1024 in all), ~250 characters each. */
function worstTopics(prefix?: string): string[] {
  return Array.from({ length: 256 }, (_, t) => {
    const head = prefix ?? `w${t % 16}`;
    const rest = 4 - head.split(':').length;
    return [head, ...Array.from({ length: rest }, () => cut(Math.floor((245 - head.length) / rest)))].join(':');
  });
}

/** Sends `frame` from every client, 100 at a time, and returns the reply codes (`ack` for acks). */
async function everyone(clients: TestClient[], frame: (client: TestClient) => Record<string, unknown>): Promise<Map<string, number>> {
  const codes = new Map<string, number>();
  for (let i = 0; i < clients.length; i += 100) {
    // 100 at once at the scale of the attack: seconds on a busy machine, so a bound well over 10 s.
    const replies = await Promise.all(clients.slice(i, i + 100).map((client) => client.request(frame(client), 60_000)));
    for (const reply of replies) {
      const code = reply.event === 'ack' ? 'ack' : String(reply.code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
  }
  return codes;
}

/** A message published now reaches every bystander; none was closed; no worker died; /healthz 200. */
async function bystandersServed(gateway: GatewayProcess, publisher: Publisher, bystanders: TestClient[], text: string): Promise<void> {
  const from = bystanders.map((b) => b.messages.length);
  await publisher.send('bystander', text);
  for (const [i, bystander] of bystanders.entries()) {
    await bystander.waitFor((m) => m.includes(`"${text}"`), from[i], 30_000);
    assert.equal(bystander.closeCode, null);
  }
  const stats = await gateway.stats();
  assert.deepEqual(stats.workers.map((w) => [w.up, w.restarts]), stats.workers.map(() => [true, 0]), 'no worker died');
  assert.equal((await gateway.admin('/healthz')).status, 200);
}

/** The gateway-wide cap on distinct topics in the first test (the default is 250,000). */
const MAX_TOPICS = 100_000;
/** What one distinct topic may cost the gateway at most, bytes of RSS: ≈ 2 KB measured (README, "Subscription limits"), with room for garbage. */
const WORST_CASE_BYTES_PER_TOPIC = 4096;

describe('hostile input: 1,600 connections each subscribing to 256 topics of 125 segments', () => {
  const sys = useSystem({ gatewayArgs: ['--max-topics', String(MAX_TOPICS)] });
  const attackers: TestClient[] = [];
  let bystanders: TestClient[];

  before(async () => {
    const byWorker = await clientsOnEveryWorker(sys.gateway, 'bystander-', 2, sys.clients);
    bystanders = [...byWorker.values()].flat().map((entry) => entry.client);
    for (const bystander of bystanders) await bystander.subscribe('bystander');
    await sys.publisher.ready({ topic: 'bystander', timeoutMs: 10_000 });
  });

  after(async () => {
    await Promise.all(attackers.map((c) => c.close()));
  });

  test('the frame is refused (ERR_TOPIC_TOO_DEEP); the costliest allowed sets are accepted up to --max-topics (then ERR_TOPIC_LIMIT), a full connection gets ERR_SUBSCRIPTION_BUDGET; memory stays within the documented worst case; workers and bystanders unharmed', async (t) => {
    const rssBefore = rssBytes(sys.gateway.child.pid!);
    const before = await sys.gateway.stats();
    for (let i = 0; i < ATTACKERS; i++) attackers.push(await TestClient.connect(sys.gateway.url));

    assert.deepEqual([...(await everyone(attackers, () => ({ event: 'subscribe', topics: attackTopics() })))], [['ERR_TOPIC_TOO_DEEP', ATTACKERS]]);
    await bystandersServed(sys.gateway, sys.publisher, bystanders, 'after the deep frames');

    // Each set is ~768 topics no one else holds: the gateway takes them until --max-topics.
    const full: TestClient[] = [];
    let limited = 0;
    for (let i = 0; i < attackers.length; i += 100) {
      const batch = attackers.slice(i, i + 100);
      // 100 × 768 new topics at once, each confirmed upstream before its ack: seconds on a busy machine.
      const replies = await Promise.all(batch.map((client) => client.request({ event: 'subscribe', topics: worstTopics() }, 60_000)));
      replies.forEach((reply, j) => {
        if (reply.event === 'ack') full.push(batch[j]!);
        else if (reply.code === 'ERR_TOPIC_LIMIT') limited++;
        else assert.fail(`unexpected reply ${JSON.stringify(reply)}`);
      });
    }
    t.diagnostic(`${full.length} sets accepted, ${limited} refused with ERR_TOPIC_LIMIT at ${(await sys.gateway.stats()).upstream.topics} topics`);
    assert.ok(full.length >= MAX_TOPICS / 1024 - 1 && limited > 0, `${full.length} accepted, ${limited} limited`);
    assert.ok((await sys.gateway.stats()).upstream.topics <= MAX_TOPICS);
    // A connection at its own budget: one more segment is too many.
    assert.deepEqual([...(await everyone(full, () => ({ event: 'subscribe', topics: ['w0:one-more'] })))], [['ERR_SUBSCRIPTION_BUDGET', full.length]]);
    await bystandersServed(sys.gateway, sys.publisher, bystanders, 'after the budget is full');

    const grown = rssBytes(sys.gateway.child.pid!) - rssBefore;
    const bound = MAX_TOPICS * WORST_CASE_BYTES_PER_TOPIC + ATTACKERS * WORST_CASE_BYTES_PER_CONNECTION;
    t.diagnostic(`gateway RSS grew ${(grown / 2 ** 20).toFixed(0)} MB for ${ATTACKERS} connections (bound ${(bound / 2 ** 20).toFixed(0)} MB)`);
    assert.ok(grown < bound, `gateway RSS grew ${(grown / 2 ** 20).toFixed(0)} MB (bound ${(bound / 2 ** 20).toFixed(0)} MB)`);
    const stats = await sys.gateway.stats();
    assert.equal(total(stats, 'deepTopicRefusals') - total(before, 'deepTopicRefusals'), ATTACKERS);
    assert.equal(total(stats, 'subscriptionBudgetRefusals') - total(before, 'subscriptionBudgetRefusals'), full.length);
    assert.equal(total(stats, 'topicLimitRefusals') - total(before, 'topicLimitRefusals'), limited);
    assert.equal(total(stats, 'subscriptions'), total(before, 'subscriptions') + full.length * 256);
    const metrics = await metricsText(sys.gateway);
    const sum = (name: string) => stats.workers.reduce((n, w) => n + (metricValue(metrics, name, { worker: String(w.index) }) ?? NaN), 0);
    assert.equal(sum('tormq_deep_topic_refusals_total'), total(stats, 'deepTopicRefusals'));
    assert.equal(sum('tormq_subscription_budget_refusals_total'), total(stats, 'subscriptionBudgetRefusals'));
    // Every attacker is still connected and its accepted subscriptions work.
    assert.ok(attackers.every((a) => a.closeCode === null));
  });
});

describe('hostile input: deep topics below a connection\'s own grant (token auth)', () => {
  const sys = useSystem({ gatewayArgs: ['--auth-secret', SECRET, '--auth-subscribe-sub'] });
  const mint = (sub: string) =>
    new SignJWT({ exp: Math.floor(Date.now() / 1000) + 600 }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).sign(new TextEncoder().encode(SECRET));
  const attackers: TestClient[] = [];
  let bystanders: TestClient[];

  before(async () => {
    const token = await mint('bystander');
    bystanders = [];
    // Auto-subscribed to "bystander"; enough of them that both workers hold some (odds 2^-15 otherwise).
    for (let i = 0; i < 16; i++) bystanders.push(await sys.connect({ headers: { authorization: `Bearer ${token}` } }));
    assert.ok((await sys.gateway.stats()).workers.every((w) => w.connections > 0));
    await sys.publisher.ready({ topic: 'bystander', timeoutMs: 10_000 });
  });

  after(async () => {
    await Promise.all(attackers.map((c) => c.close()));
  });

  test('granted "tenant:N": its deep topics are refused with ERR_TOPIC_TOO_DEEP, the budget holds; a token whose sub is too deep gets 401', async () => {
    const before = await sys.gateway.stats();
    const count = 200;
    for (let i = 0; i < count; i++) {
      attackers.push(await TestClient.connect(sys.gateway.url, { headers: { authorization: `Bearer ${await mint(`tenant:${i}`)}` } }));
    }
    const grantOf = (client: TestClient) => `tenant:${attackers.indexOf(client)}`;
    assert.deepEqual([...(await everyone(attackers, (c) => ({ event: 'subscribe', topics: attackTopics(`${grantOf(c)}:`) })))], [['ERR_TOPIC_TOO_DEEP', count]]);
    // Outside the grant is still ERR_FORBIDDEN, whatever its depth.
    assert.deepEqual([...(await everyone(attackers.slice(0, 10), () => ({ event: 'subscribe', topics: attackTopics('other:') })))], [['ERR_FORBIDDEN', 10]]);
    // 255 topics of 4 segments plus the auto-subscribed sub (2): 1022 of 1024 segments.
    const fill = await everyone(attackers, (c) => ({ event: 'subscribe', topics: worstTopics(grantOf(c)).slice(0, 255) }));
    assert.deepEqual([...fill], [['ack', count]]);
    assert.deepEqual([...(await everyone(attackers, (c) => ({ event: 'subscribe', topics: [`${grantOf(c)}:x:y`] })))], [['ERR_SUBSCRIPTION_BUDGET', count]]);

    // The identity itself too deep to be subscribed to: refused at the upgrade.
    const deepSub = await mint(Array.from({ length: 17 }, (_, i) => `s${i}`).join(':'));
    const refused = await rawUpgrade(sys.gateway.port, `Authorization: Bearer ${deepSub}\r\n`);
    refused.socket.destroy();
    assert.equal(refused.status, 'HTTP/1.1 401 Unauthorized');

    await bystandersServed(sys.gateway, sys.publisher, bystanders, 'after the deep grants');
    const stats = await sys.gateway.stats();
    assert.equal(total(stats, 'deepTopicRefusals') - total(before, 'deepTopicRefusals'), count);
    assert.equal(total(stats, 'subscriptionBudgetRefusals') - total(before, 'subscriptionBudgetRefusals'), count);
    assert.equal(total(stats, 'forbiddenSubscriptions') - total(before, 'forbiddenSubscriptions'), 10);
    assert.equal(total(stats, 'authFailures') - total(before, 'authFailures'), 1);
    assert.equal(total(stats, 'subscriptions'), total(before, 'subscriptions') + count * 256);
  });
});
