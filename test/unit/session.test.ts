/** One connection's requests and answers, with a fake ws: subscribe/ack ordering, errors, limits, cleanup. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log.js';
import { validateGatewayConfig, type GatewayOptions } from '../../src/gateway/shared/config.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import type { WorkerEvent } from '../../src/gateway/shared/thread-protocol.js';
import { ConnectionGuard } from '../../src/gateway/worker/auth.js';
import type { WorkerContext } from '../../src/gateway/worker/context.js';
import { RootRouting } from '../../src/gateway/worker/root-routing.js';
import { Session } from '../../src/gateway/worker/session.js';
import { TopicTrie } from '../../src/gateway/worker/trie.js';
import type { Writer } from '../../src/gateway/worker/writer.js';
import { FakeWs } from '../helpers/fake-socket.js';

async function setup(options: GatewayOptions = {}) {
  const config = validateGatewayConfig(options);
  const stats = new Float64Array(WORKER_STATS_LENGTH);
  const log = createLogger('test', 'silent');
  const posted: WorkerEvent[] = [];
  const routing = new RootRouting((e) => posted.push(e));
  const trie = new TopicTrie<Writer>({ onRootAdded: (r) => routing.acquire(r), onRootRemoved: (r) => routing.release(r) });
  const ctx: WorkerContext = {
    config,
    frameLimits: { maxTopicLength: config.maxTopicLength, maxTopicsPerFrame: config.maxSubscriptions },
    stats,
    trie,
    routing,
    log,
    guard: await ConnectionGuard.create(config, stats, log),
  };
  const open = () => {
    const ws = new FakeWs();
    const session = new Session(ws.asWebSocket(), ctx, null);
    const replies = () => ws.sent.map((t) => JSON.parse(t) as Record<string, unknown>);
    return { ws, session, replies };
  };
  /** Main's answer to every root report so far. */
  const routeAll = () => {
    for (const e of posted.splice(0)) if (e.type === 'root-added') routing.routed(e.root, e.seq);
  };
  const reach = (topic: string) => trie.forEachRecipient(topic, () => {});
  return { ctx, stats, posted, routing, trie, open, routeAll, reach };
}

describe('Session', () => {
  test('a subscribe with an id is acknowledged only once main has routed its new roots', async () => {
    const { open, routeAll, reach, posted } = await setup();
    const { session, replies } = open();
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:1', 'b'], id: 1 }));
    assert.equal(reach('a:1'), 1, 'in the trie at once');
    assert.deepEqual(replies(), [], 'no ack before the roots are routed');
    assert.deepEqual(posted.map((e) => e.type === 'root-added' && e.root), ['a', 'b']);
    routeAll();
    assert.deepEqual(replies(), [{ event: 'ack', id: 1 }]);
    // Already routed: answered at once.
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:2'], id: 'x' }));
    assert.deepEqual(replies().at(-1), { event: 'ack', id: 'x' });
  });

  test('"topic" replaces the subscription set, "topics" adds, unsubscribe without topics drops all', async () => {
    const { open, routeAll, reach } = await setup();
    const { session } = open();
    session.onText('{"event":"subscribe","topics":["a","b"]}');
    session.onText('{"event":"subscribe","topic":"c"}');
    routeAll();
    assert.deepEqual([...session.topics], ['c']);
    assert.equal(reach('a'), 0);
    session.onText('{"event":"subscribe","topics":["d"]}');
    assert.deepEqual([...session.topics].sort(), ['c', 'd']);
    session.onText('{"event":"unsubscribe","topic":"d"}');
    assert.deepEqual([...session.topics], ['c']);
    session.onText('{"event":"unsubscribe"}');
    assert.deepEqual([...session.topics], []);
    assert.equal(reach('c'), 0);
  });

  test('bad frames are counted; only those with an id are answered, with a coded error', async () => {
    const { open, stats } = await setup();
    const { session, replies } = open();
    session.onText('not json');
    session.onText('{"event":"dance"}');
    session.onText('{"event":"subscribe","topic":"a::b"}');
    assert.deepEqual(replies(), []);
    session.onText('{"event":"dance","id":3}');
    session.onText('{"event":"subscribe","topic":"a::b","id":4}');
    session.onBinary();
    assert.deepEqual(replies().map((r) => [r.id, r.code]), [[3, 'ERR_UNKNOWN_EVENT'], [4, 'ERR_INVALID_TOPIC']]);
    assert.equal(stats[WorkerStat.badFrames], 6);
  });

  test('ping is answered with pong, with its id when it has one', async () => {
    const { open } = await setup();
    const { session, replies } = open();
    session.onText('{"event":"ping"}');
    session.onText('{"event":"ping","id":9}');
    assert.deepEqual(replies(), [{ event: 'pong' }, { event: 'pong', id: 9 }]);
  });

  test('a subscribe over --max-subscriptions is refused whole', async () => {
    const { open, routeAll } = await setup({ maxSubscriptions: 2 });
    const { session, replies } = open();
    session.onText('{"event":"subscribe","topics":["a","b"],"id":1}');
    routeAll();
    session.onText('{"event":"subscribe","topics":["c"],"id":2}');
    assert.deepEqual([...session.topics], ['a', 'b']);
    assert.equal(replies().at(-1)!.code, 'ERR_TOO_MANY_SUBSCRIPTIONS');
  });

  test('over the rate limit frames are refused (answered when they carry an id); a sustained flood closes with 4029', async () => {
    const { open, stats } = await setup({ clientRateLimit: 1, clientRateBurst: 3 });
    const { ws, session, replies } = open();
    for (let i = 0; i < 3; i++) session.onText('{"event":"ping"}');
    session.onText('{"event":"ping","id":"late"}');
    assert.deepEqual(replies().at(-1), { event: 'error', id: 'late', code: 'ERR_RATE_LIMITED', message: 'over 1 frames per second' });
    for (let i = 0; i < 5; i++) session.onText('{"event":"ping"}');
    assert.deepEqual(ws.closes, [{ code: 4029, reason: 'rate limit exceeded' }]);
    assert.ok(stats[WorkerStat.rateLimitedFrames]! >= 3);
    assert.equal(stats[WorkerStat.rateLimitDisconnects], 1);
  });

  test('dispose removes every subscription from the trie and the gauges, and releases the roots', async () => {
    const { open, reach, stats, posted } = await setup();
    const { session } = open();
    session.onText('{"event":"subscribe","topics":["a","a:b","c"]}');
    assert.equal(stats[WorkerStat.subscriptions], 3);
    session.dispose();
    assert.equal(reach('a'), 0);
    assert.equal(stats[WorkerStat.subscriptions], 0);
    assert.deepEqual(posted.filter((e) => e.type === 'root-removed').map((e) => e.type === 'root-removed' && e.root).sort(), ['a', 'c']);
  });
});
