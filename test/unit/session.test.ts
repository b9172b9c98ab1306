/** One connection's requests and answers, with a fake ws: ack ordering, tormq.v2 recovery, errors, limits, cleanup. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log.js';
import { validateGatewayConfig, type GatewayOptions } from '../../src/gateway/shared/config.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import type { WorkerEvent } from '../../src/gateway/shared/thread-protocol.js';
import { ConnectionGuard } from '../../src/gateway/worker/auth.js';
import type { HistoryReply, WorkerContext } from '../../src/gateway/worker/context.js';
import { positionedFrame } from '../../src/gateway/worker/delivery.js';
import { InterestRouting } from '../../src/gateway/worker/interest-routing.js';
import { Session, streamsOf } from '../../src/gateway/worker/session.js';
import { UNLIMITED_TOPICS } from '../../src/gateway/worker/subscription-budget.js';
import { TopicTrie } from '../../src/gateway/worker/trie.js';
import type { Writer } from '../../src/gateway/worker/writer.js';
import { encodeTextFrame } from '../../src/protocol/ws-frame.js';
import { FakeWs } from '../helpers/fake-socket.js';
import { WorkerPresence } from '../../src/gateway/worker/presence.js';
import { ReplayBudget } from '../../src/gateway/worker/replay-budget.js';

async function setup(options: GatewayOptions = {}) {
  const config = validateGatewayConfig(options);
  const stats = new Float64Array(WORKER_STATS_LENGTH);
  const log = createLogger('test', 'silent');
  const posted: WorkerEvent[] = [];
  const presencePosts: Array<Array<string | number>> = [];
  const routing = new InterestRouting((e) => posted.push(e));
  const trie = new TopicTrie<Writer>({ onTopicAdded: (t) => routing.acquire(t), onTopicRemoved: (t) => routing.release(t) });
  const historyCalls: Array<{ topic: string; epoch: string; after: number; limit: number; resolve: (r: HistoryReply) => void }> = [];
  const ctx: WorkerContext = {
    config,
    frameLimits: { maxTopicLength: config.maxTopicLength, maxTopicsPerFrame: config.maxSubscriptions },
    stats,
    trie,
    routing,
    log,
    guard: await ConnectionGuard.create(config, stats, log),
    history: (topic, epoch, after, limit) => new Promise((resolve) => historyCalls.push({ topic, epoch, after, limit, resolve })),
    replayBudget: new ReplayBudget(config.replayBudgetBytes, stats),
    positioned: (body, epoch, offset) => positionedFrame(encodeTextFrame(body, 0, body.length), epoch, offset),
    topics: UNLIMITED_TOPICS,
    presence: new WorkerPresence((cards) => presencePosts.push(cards), 0),
  };
  const open = (v2 = false) => {
    const ws = new FakeWs();
    const session = new Session(ws.asWebSocket(), ctx, null, v2);
    const replies = () => ws.sent.map((t) => JSON.parse(t) as Record<string, unknown>);
    return { ws, session, replies };
  };
  /** Main's MARK for every report and request so far, at `offset` in epoch E (per topic when a map). */
  const markAll = (offset: number | Record<string, number> = 0) => {
    for (const e of posted.splice(0)) {
      if (e.type === 'interest-added' || e.type === 'mark-request') {
        routing.marked(e.topic, e.seq, { epoch: 'E', offset: typeof offset === 'number' ? offset : (offset[e.topic] ?? 0) });
      }
    }
  };
  const reach = (topic: string) => trie.forEachRecipient(topic, () => {});
  const flush = () => new Promise((resolve) => setImmediate(resolve));
  return { ctx, stats, posted, routing, trie, open, markAll, reach, historyCalls, flush, presencePosts };
}

describe('Session', () => {
  test('streamsOf: a subscription receives its topic and every ancestor', () => {
    assert.deepEqual(streamsOf('a:b:c'), ['a', 'a:b', 'a:b:c']);
    assert.deepEqual(streamsOf('a'), ['a']);
  });

  test('a subscribe with an id is acknowledged only once every stream of it is marked', async () => {
    const { open, markAll, reach, posted } = await setup();
    const { session, replies } = open();
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:1', 'b'], id: 1 }));
    assert.equal(reach('a:1'), 1, 'in the trie at once');
    assert.deepEqual(replies(), [], 'no ack before the marks');
    assert.deepEqual(posted.map((e) => e.type === 'interest-added' && e.topic), ['a', 'a:1', 'b']);
    markAll();
    assert.deepEqual(replies(), [{ event: 'ack', id: 1 }]);
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:1'], id: 'x' }));
    assert.deepEqual(replies().at(-1), { event: 'ack', id: 'x' }, 'already routed: at once');
  });

  test('replies come in request order: a pong behind a subscribe waiting for its mark waits too', async () => {
    const { open, markAll } = await setup();
    const { session, replies } = open();
    session.onText('{"event":"subscribe","topics":["w"],"id":1}');
    session.onText('{"event":"ping","id":2}');
    session.onText('{"event":"dance","id":3}');
    assert.deepEqual(replies(), []);
    markAll();
    assert.deepEqual(replies().map((r) => [r.event, r.id]), [['ack', 1], ['pong', 2], ['error', 3]]);
  });

  test('"topic" replaces the subscription set, "topics" adds, unsubscribe without topics drops all', async () => {
    const { open, markAll, reach } = await setup();
    const { session } = open();
    session.onText('{"event":"subscribe","topics":["a","b"]}');
    session.onText('{"event":"subscribe","topic":"c"}');
    markAll();
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
    const { open, markAll } = await setup({ maxSubscriptions: 2 });
    const { session, replies } = open();
    session.onText('{"event":"subscribe","topics":["a","b"],"id":1}');
    markAll();
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

  test('dispose removes every subscription from the trie and the gauges, and releases the topics', async () => {
    const { open, reach, stats, posted } = await setup();
    const { session } = open();
    session.onText('{"event":"subscribe","topics":["a","a:b","c"]}');
    assert.equal(stats[WorkerStat.subscriptions], 3);
    session.dispose();
    assert.equal(reach('a'), 0);
    assert.equal(stats[WorkerStat.subscriptions], 0);
    assert.deepEqual(posted.filter((e) => e.type === 'interest-removed').map((e) => e.type === 'interest-removed' && e.topic).sort(), ['a', 'a:b', 'c']);
  });

  test('recover/since need tormq.v2, and a bad since is refused whole with ERR_BAD_SINCE', async () => {
    const { open } = await setup({ maxSubscriptions: 3 });
    const v1 = open(false);
    v1.session.onText('{"event":"subscribe","topics":["a"],"recover":true,"id":1}');
    assert.deepEqual(v1.replies(), [{ event: 'error', id: 1, code: 'ERR_BAD_SINCE', message: 'recover needs the tormq.v2 subprotocol' }]);
    assert.deepEqual([...v1.session.topics], []);
    const v2 = open(true);
    const bad: Array<[unknown, RegExp]> = [
      [{ recover: 'yes' }, /recover must be true or false/],
      [{ since: {} }, /since needs "recover": true/],
      [{ recover: true, since: [] }, /since must be an object/],
      [{ recover: true, since: { 'x:y': { epoch: 'E', offset: 1 } } }, /not a stream of this subscription/],
      [{ recover: true, since: { 'a::b': { epoch: 'E', offset: 1 } } }, /not a valid topic/],
      [{ recover: true, since: { a: { epoch: 7, offset: 1 } } }, /epoch must be a string/],
      [{ recover: true, since: { a: { epoch: 'E', offset: 1.5 } } }, /offset must be an integer/],
      [{ recover: true, since: { a: { epoch: 'E', offset: -1 } } }, /offset must be an integer/],
      [{ recover: true, since: { a: null } }, /must be \{"epoch"/],
      [{ recover: true, since: { a: { epoch: 'E', offset: 1 }, 'a:b': { epoch: 'E', offset: 1 }, 'a:b:c': { epoch: 'E', offset: 1 }, 'a:b:c:d': { epoch: 'E', offset: 1 } } }, /at most 3 streams/],
    ];
    bad.forEach(([fields, message], i) => {
      v2.session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:b:c:d'], id: i, ...(fields as object) }));
      const reply = v2.replies().at(-1)!;
      assert.equal(reply.code, 'ERR_BAD_SINCE', JSON.stringify(fields));
      assert.match(String(reply.message), message);
    });
    assert.deepEqual([...v2.session.topics], [], 'nothing applied');
  });

  test('tormq.v2 recovery: the missed messages from history, then the ack with positions, then the held live ones; frames that came meanwhile wait', async () => {
    const { open, markAll, historyCalls, flush } = await setup();
    const { ws, session, replies } = open(true);
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['user:42'], recover: true, since: { 'user:42': { epoch: 'E', offset: 17 }, user: { epoch: 'E', offset: 5 } }, id: 1 }));
    session.onText('{"event":"ping","id":2}');
    // A live message arrives while recovering: held (the writer holds the streams), not written.
    markAll({ user: 5, 'user:42': 20 });
    await flush();
    assert.deepEqual(historyCalls.map((c) => [c.topic, c.epoch, c.after, c.limit]), [['user:42', 'E', 17, 3]], '"user" missed nothing');
    assert.deepEqual(replies(), [], 'the ack waits for the replay');
    historyCalls[0]!.resolve({ status: 'ok', epoch: 'E', top: 20, from: 18, bodies: [18, 19, 20].map((n) => Buffer.from(`{"topic": "user:42", "data": ${n}}`)) });
    await flush();
    assert.deepEqual(ws.pushed().map((m) => JSON.parse(m) as { data: number; offset: number }).map((m) => [m.data, m.offset]), [[18, 18], [19, 19], [20, 20]]);
    assert.deepEqual(replies(), [
      { event: 'ack', id: 1, recovered: true, positions: { user: { epoch: 'E', offset: 5 }, 'user:42': { epoch: 'E', offset: 20 } } },
      { event: 'pong', id: 2 },
    ]);
  });

  test('tormq.v2 recovery is "not recovered" when the epoch changed or more was missed than --max-recovery-messages; the subscription holds', async () => {
    const { open, markAll, historyCalls, flush } = await setup({ maxRecoveryMessages: 10 });
    const a = open(true);
    a.session.onText(JSON.stringify({ event: 'subscribe', topics: ['s'], recover: true, since: { s: { epoch: 'OLD', offset: 3 } }, id: 1 }));
    markAll(8);
    await flush();
    assert.deepEqual(a.replies(), [{ event: 'ack', id: 1, recovered: false, positions: { s: { epoch: 'E', offset: 8 } } }]);
    const b = open(true);
    b.session.onText(JSON.stringify({ event: 'subscribe', topics: ['s'], recover: true, since: { s: { epoch: 'E', offset: 1 } }, id: 1 }));
    markAll(50);
    await flush();
    assert.equal(b.replies()[0]!.recovered, false);
    assert.deepEqual(historyCalls, [], 'nothing fetched that could not be complete');
    assert.deepEqual([...b.session.topics], ['s']);
    const c = open(true);
    c.session.onText(JSON.stringify({ event: 'subscribe', topics: ['s'], recover: true, id: 1 }));
    markAll(50);
    await flush();
    assert.deepEqual(c.replies(), [{ event: 'ack', id: 1, recovered: false, positions: { s: { epoch: 'E', offset: 50 } } }], 'no since: just the positions');
  });
});

describe('Session: gopusher joins', () => {
  test('join and ping are answered {"type":1,"data":"ok"} (with its newline), the join once routed; the connection counts as online', async () => {
    const { open, markAll, reach, ctx } = await setup();
    const { session, ws } = open();
    session.onText('{"event":"ping"}');
    assert.deepEqual(ws.sent, ['{"event":"pong"}'], 'before a join: tormq\'s pong');
    session.onText('{"event":"join","data":{"app_id":"chat","card_id":"alice"}}');
    assert.equal(reach('alice'), 1);
    assert.equal(ctx.presence.count('alice'), 1);
    assert.equal(session.gopusher, true);
    session.onText('{"event":"ping"}');
    assert.deepEqual(ws.sent, ['{"event":"pong"}'], 'nothing before the join is routed (the ping waits its turn)');
    markAll();
    assert.deepEqual(ws.sent, ['{"event":"pong"}', '{"type":1,"data":"ok"}\n', '{"type":1,"data":"ok"}\n']);
    // With an id (tormq's request protocol; gopusher clients send none): tormq's replies.
    session.onText('{"event":"ping","id":7}');
    session.onText('{"event":"join","data":{"card_id":"bob"},"id":8}');
    markAll();
    assert.deepEqual(ws.sent.slice(3).map((t) => JSON.parse(t)), [{ event: 'pong', id: 7 }, { event: 'ack', id: 8 }]);
  });

  test('presence: a card counts a connection once whatever its apps; leaving its last joined topic, or closing, ends it', async () => {
    const { open, ctx, presencePosts } = await setup();
    const a = open();
    const b = open();
    a.session.onText('{"event":"join","data":{"card_id":"c","app_id":"x"}}');
    a.session.onText('{"event":"join","data":{"card_id":"c","app_id":"y"}}');
    a.session.onText('{"event":"join","data":{"card_id":"c","app_id":"y"}}');
    b.session.onText('{"event":"join","data":{"card_id":"c","app_id":""}}');
    assert.equal(ctx.presence.count('c'), 2);
    a.session.onText('{"event":"unsubscribe","topic":"c:x"}');
    assert.equal(ctx.presence.count('c'), 2, 'still joined through c:y');
    a.session.onText('{"event":"unsubscribe","topics":["c:y"]}');
    assert.equal(ctx.presence.count('c'), 1);
    b.session.dispose();
    assert.equal(ctx.presence.count('c'), 0);
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(presencePosts, [['c', 0]], 'coalesced: one report of the absolute count');
  });

  test('a refused join counts nothing; a join on a tormq.v2 connection is refused', async () => {
    const { open, ctx } = await setup();
    const { session, ws } = open();
    session.onText('{"event":"join","data":{"card_id":"a:b"},"id":1}');
    session.onText('{"event":"join","data":{"card_id":"a:b"}}');
    assert.equal(ctx.presence.cards, 0);
    assert.equal(session.gopusher, false);
    assert.deepEqual(ws.sent.map((t) => JSON.parse(t).code), ['ERR_INVALID_TOPIC'], 'answered only with an id');
    const v2 = open(true);
    v2.session.onText('{"event":"join","data":{"card_id":"c"},"id":2}');
    assert.deepEqual(v2.replies(), [{ event: 'error', id: 2, code: 'ERR_BAD_REQUEST', message: "join is gopusher's protocol: not on a tormq.v2 connection" }]);
    assert.equal(ctx.presence.cards, 0);
  });
});
