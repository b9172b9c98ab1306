/** What one connection may make the trie hold: topic depth and the per-connection segment budget. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log.js';
import { validateGatewayConfig } from '../../src/gateway/shared/config.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { ConnectionGuard } from '../../src/gateway/worker/auth.js';
import type { WorkerContext } from '../../src/gateway/worker/context.js';
import { InterestRouting } from '../../src/gateway/worker/interest-routing.js';
import { Session } from '../../src/gateway/worker/session.js';
import { SocketCounts, SocketKind, gatewaySharedBytes } from '../../src/gateway/shared/socket-counts.js';
import { SubscriptionBudget, UNLIMITED_TOPICS, type TopicAllowance } from '../../src/gateway/worker/subscription-budget.js';
import { TopicTrie } from '../../src/gateway/worker/trie.js';
import type { Writer } from '../../src/gateway/worker/writer.js';
import { topicDepth } from '../../src/protocol/topic.js';
import { WorkerPresence } from '../../src/gateway/worker/presence.js';
import { FakeWs } from '../helpers/fake-socket.js';
import { ReplayBudget } from '../../src/gateway/worker/replay-budget.js';

const deep = (depth: number, tag = 'a') => Array.from({ length: depth }, (_, i) => (i === 0 ? tag : String(i % 10))).join(':');

describe('topicDepth', () => {
  test('counts segments', () => {
    assert.equal(topicDepth('a'), 1);
    assert.equal(topicDepth('ehr:api:1'), 3);
    assert.equal(topicDepth(deep(125)), 125);
  });
});

describe('SubscriptionBudget', () => {
  const limits = { maxTopicDepth: 4, maxSubscriptionSegments: 10, maxTopics: 1000 };

  test('refuses a topic deeper than maxTopicDepth, naming it, and counts it', () => {
    const stats = new Float64Array(WORKER_STATS_LENGTH);
    const budget = new SubscriptionBudget(limits, stats);
    assert.equal(budget.refusal(['a:b:c:d'], new Set(), false), null);
    const refusal = budget.refusal(['a', 'a:b:c:d:e'], new Set(), false);
    assert.equal(refusal?.code, 'ERR_TOPIC_TOO_DEEP');
    assert.match(refusal!.message, /topics\[1\].*at most 4 segments.*has 5/);
    assert.equal(stats[WorkerStat.deepTopicRefusals], 1);
    assert.equal(stats[WorkerStat.subscriptionBudgetRefusals], 0);
  });

  test('refuses what would take the connection over maxSubscriptionSegments; held and repeated topics cost nothing more', () => {
    const stats = new Float64Array(WORKER_STATS_LENGTH);
    const budget = new SubscriptionBudget(limits, stats);
    const held = new Set<string>();
    for (const topic of ['a:b:c:d', 'e:f:g']) {
      assert.equal(budget.refusal([topic], held, false), null);
      held.add(topic);
      budget.charge(topic);
    }
    assert.equal(budget.segments, 7);
    assert.equal(budget.refusal(['x:y', 'x:y', 'a:b:c:d', 'z'], held, false), null, '2 + 1 new segments: exactly 10');
    const refusal = budget.refusal(['x:y', 'z:z'], held, false);
    assert.equal(refusal?.code, 'ERR_SUBSCRIPTION_BUDGET');
    assert.match(refusal!.message, /at most 10 segments in all: it holds 7, this adds 4/);
    assert.equal(stats[WorkerStat.subscriptionBudgetRefusals], 1);
    // Replacing leaves only the new topic.
    assert.equal(budget.refusal(['q:r:s:t'], held, true), null);
    budget.refund('a:b:c:d');
    assert.equal(budget.segments, 3);
  });

  test('the gateway config keeps maxTopicDepth within maxSubscriptionSegments', () => {
    assert.throws(() => validateGatewayConfig({ maxTopicDepth: 20, maxSubscriptionSegments: 10 }), /options.maxTopicDepth must be an integer from 1 to options.maxSubscriptionSegments \(10\), got 20/);
    assert.equal(validateGatewayConfig({}).maxTopicDepth, 16);
    assert.equal(validateGatewayConfig({}).maxSubscriptionSegments, 1024);
  });
});

describe('Session with subscription limits', () => {
  async function open() {
    const config = validateGatewayConfig({ maxTopicDepth: 4, maxSubscriptionSegments: 10 });
    const stats = new Float64Array(WORKER_STATS_LENGTH);
    const log = createLogger('test', 'silent');
    // Main's answer comes at once: every report is marked (routed) as soon as it is made.
    const routing: InterestRouting = new InterestRouting((e) => {
      if (e.type === 'interest-added' || e.type === 'mark-request') routing.marked(e.topic, e.seq, { epoch: 'E', offset: 0 });
    });
    const trie = new TopicTrie<Writer>({ onTopicAdded: (t) => routing.acquire(t), onTopicRemoved: (t) => routing.release(t) });
    const ctx: WorkerContext = {
      config,
      frameLimits: { maxTopicLength: config.maxTopicLength, maxTopicsPerFrame: config.maxSubscriptions },
      stats,
      trie,
      routing,
      log,
      guard: await ConnectionGuard.create(config, stats, log),
      history: () => new Promise(() => {}),
      replayBudget: new ReplayBudget(config.replayBudgetBytes, stats),
      positioned: () => Buffer.alloc(0),
      topics: UNLIMITED_TOPICS,
      presence: new WorkerPresence(() => {}),
    };
    const ws = new FakeWs();
    const session = new Session(ws.asWebSocket(), ctx, null);
    const last = () => JSON.parse(ws.sent.at(-1)!) as Record<string, unknown>;
    return { session, trie, stats, last, ws };
  }

  test('a refused frame leaves the trie untouched; unsubscribing gives the budget back; so does closing', async () => {
    const { session, trie, stats, last } = await open();
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:b:c', 'd:e:f:g:h'], id: 1 }));
    assert.equal(last().code, 'ERR_TOPIC_TOO_DEEP');
    assert.equal(trie.nodeCount(), 0, 'nothing half applied');
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['a:b:c', 'd:e:f:g'], id: 2 }));
    assert.equal(trie.size, 2);
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['x:y:z:w'], id: 3 }));
    assert.equal(last().code, 'ERR_SUBSCRIPTION_BUDGET');
    assert.equal(trie.size, 2);
    session.onText(JSON.stringify({ event: 'unsubscribe', topic: 'd:e:f:g' }));
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['x:y:z:w'], id: 4 }));
    assert.equal(trie.size, 2);
    // Without an id a refusal is counted, not answered.
    const sent = last();
    session.onText(JSON.stringify({ event: 'subscribe', topics: ['p:q:r:s'] }));
    assert.deepEqual(last(), sent);
    assert.equal(stats[WorkerStat.deepTopicRefusals], 1);
    assert.equal(stats[WorkerStat.subscriptionBudgetRefusals], 2);
    assert.equal(stats[WorkerStat.badFrames], 3);
    session.dispose();
    assert.equal(trie.nodeCount(), 0);
  });

  test('the gateway-wide --max-topics: routed topics, reports in flight and reservations of every worker count; refusals are counted (ERR_TOPIC_LIMIT)', () => {
    const counts = new SocketCounts(new SharedArrayBuffer(gatewaySharedBytes(2)));
    const allowance = (worker: number): TopicAllowance => ({
      reserve: (n, limit) => counts.reserveTopics(worker, n, limit),
      release: (n) => counts.add(worker, SocketKind.topicReports, -n),
    });
    const limits = { maxTopicDepth: 4, maxSubscriptionSegments: 10, maxTopics: 1000 };
    const stats = new Float64Array(WORKER_STATS_LENGTH);
    const first = new SubscriptionBudget(limits, stats, allowance(0));
    const second = new SubscriptionBudget(limits, stats, allowance(1));
    counts.routedTopics = 995;
    assert.equal(first.refusal(['a:b:c:d'], new Set(), false), null, '995 + 4 fits');
    assert.equal(second.refusal(['x:y'], new Set(), false)?.code, 'ERR_TOPIC_LIMIT', "the first worker's reservation counts");
    assert.equal(stats[WorkerStat.topicLimitRefusals], 1);
    // Applied: its 4 topics are reported (in flight to main) and the reservation is released.
    counts.add(0, SocketKind.topicReports, 4);
    first.settle();
    assert.equal(counts.total(SocketKind.topicReports), 4);
    assert.equal(second.refusal(['x:y'], new Set(), false)?.code, 'ERR_TOPIC_LIMIT', 'reports in flight count');
    assert.equal(second.refusal(['a:b:c:d'], new Set(['a:b:c:d']), false), null, 'a held topic adds nothing');
    second.settle();
    // Main routes them: counted there instead.
    counts.routedTopics = 999;
    counts.add(0, SocketKind.topicReports, -4);
    assert.equal(second.refusal(['z'], new Set(), false), null, 'exactly at the limit');
    second.settle();
    assert.equal(counts.total(SocketKind.topicReports), 0, 'every reservation released');
    counts.routedTopics = 10;
    assert.equal(first.refusal(['a:b', 'c:d:e:f'], new Set(), false), null, 'room again once topics went');
    assert.equal(stats[WorkerStat.topicLimitRefusals], 2);
  });

  test('the original replace form is held to the depth limit too', async () => {
    const { session, trie, last } = await open();
    session.onText(JSON.stringify({ event: 'subscribe', topic: 'a:b:c:d:e', id: 1 }));
    assert.equal(last().code, 'ERR_TOPIC_TOO_DEEP');
    assert.match(String(last().message), /^topic: /);
    assert.equal(trie.size, 0);
  });
});
