/** gopusher presence: worker counts, the gateway's reports on the link, the MPC's table (sums, snapshots, holes, expiry, bounds). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayPresence, MAX_CARDS_PER_FRAME } from '../../src/gateway/main/presence.js';
import { WorkerPresence } from '../../src/gateway/worker/presence.js';
import { PresenceTable } from '../../src/mpc/presence.js';
import { encodePresence, parsePresence, type PresenceReport } from '../../src/zmq/gateway-link.js';

const GW = Buffer.alloc(16, 7).toString('base64url');
const table = (limits: Partial<{ maxEntries: number; maxGateways: number; maxCardLength: number }> = {}) => {
  const resyncs: string[] = [];
  const t = new PresenceTable({ maxEntries: 1000, maxGateways: 10, maxCardLength: 64, ...limits }, (gw) => resyncs.push(gw));
  return { t, resyncs };
};
const report = (over: Partial<PresenceReport> & { seq: number }): PresenceReport => ({ gw: GW, ttl: 3000, clients: 0, workers: 1, kind: 'delta', cards: [], ...over });

describe('PresenceTable (MPC)', () => {
  test('sums gateways per card; absolute counts, 0 removes', () => {
    const { t } = table();
    t.report(report({ seq: 1, kind: 'snapshot', part: 0, parts: 1, cards: ['a', 2, 'b', 1], clients: 3 }), 0);
    t.report(report({ gw: 'other', seq: 1, kind: 'snapshot', part: 0, parts: 1, cards: ['a', 1], clients: 4 }), 0);
    assert.deepEqual([t.connections('a'), t.connections('b'), t.connections('c')], [3, 1, 0]);
    t.report(report({ seq: 2, cards: ['a', 1, 'b', 0] }), 0);
    assert.deepEqual([t.connections('a'), t.connections('b')], [2, 0]);
    t.report(report({ seq: 3, cards: ['a', 1] }), 0);
    assert.equal(t.connections('a'), 2, 'applying the same absolute count again changes nothing');
    assert.deepEqual(t.totals(), { clients: 4, cards: 1, gateways: 2, workers: 2 });
    assert.equal(t.stats().entries, 2);
  });

  test('a complete snapshot replaces the gateway\'s counts; one cut short is dropped and a resync asked', () => {
    const { t, resyncs } = table();
    t.report(report({ seq: 1, kind: 'snapshot', part: 0, parts: 1, cards: ['a', 1, 'b', 1] }), 0);
    t.report(report({ seq: 2, kind: 'snapshot', part: 0, parts: 2, cards: ['c', 1] }), 0);
    assert.equal(t.connections('c'), 0, 'not before the last part');
    t.report(report({ seq: 3, kind: 'snapshot', part: 1, parts: 2, cards: ['a', 5] }), 0);
    assert.deepEqual([t.connections('a'), t.connections('b'), t.connections('c')], [5, 0, 1]);
    assert.deepEqual(resyncs, []);
    // Part 0 of 3, then part 2 (part 1 lost: a hole in seq): dropped.
    t.report(report({ seq: 4, kind: 'snapshot', part: 0, parts: 3, cards: ['z', 1] }), 10_000);
    t.report(report({ seq: 6, kind: 'snapshot', part: 2, parts: 3, cards: [] }), 10_000);
    assert.equal(t.connections('z'), 0);
    assert.deepEqual(resyncs, [GW]);
  });

  test('a hole in the numbers, or a gateway new to this MPC, asks for a snapshot (at most once a second); deltas still apply', () => {
    const { t, resyncs } = table();
    t.report(report({ seq: 5, cards: ['a', 1] }), 0);
    assert.deepEqual(resyncs, [GW], 'unknown gateway');
    assert.equal(t.connections('a'), 1);
    t.report(report({ seq: 7, cards: ['b', 1] }), 500);
    assert.deepEqual(resyncs, [GW], 'rate-limited');
    t.report(report({ seq: 9, cards: [] }), 1500);
    assert.deepEqual(resyncs, [GW, GW]);
    assert.equal(t.connections('b'), 1);
    assert.equal(t.stats().resyncs, 2);
  });

  test('a gateway silent for its ttl is forgotten; bye forgets at once', () => {
    const { t } = table();
    t.report(report({ seq: 1, kind: 'snapshot', part: 0, parts: 1, cards: ['a', 1], ttl: 3000, clients: 2 }), 1000);
    t.report(report({ gw: 'g2', seq: 1, kind: 'snapshot', part: 0, parts: 1, cards: ['a', 1, 'b', 2], ttl: 10_000 }), 1000);
    t.sweep(3999);
    assert.equal(t.connections('a'), 2);
    t.sweep(4000);
    assert.deepEqual([t.connections('a'), t.totals().clients, t.totals().gateways], [1, 0, 1]);
    assert.equal(t.stats().expiredGateways, 1);
    t.report(report({ gw: 'g2', seq: 2, kind: 'bye' }), 5000);
    assert.deepEqual([t.connections('a'), t.connections('b'), t.totals().cards, t.stats().entries], [0, 0, 0, 0]);
  });

  test('bounded: entries past maxEntries and gateways past maxGateways are refused and counted; bad cards refuse the report', () => {
    const { t } = table({ maxEntries: 2, maxGateways: 1, maxCardLength: 5 });
    t.report(report({ seq: 1, cards: ['a', 1, 'b', 1, 'c', 1] }), 0);
    assert.deepEqual([t.connections('a'), t.connections('b'), t.connections('c')], [1, 1, 0]);
    assert.equal(t.stats().refusedEntries, 1);
    t.report(report({ gw: 'g2', seq: 1, cards: ['d', 1] }), 0);
    assert.equal(t.stats().refusedGateways, 1);
    t.report(report({ seq: 2, cards: ['a', 0, 'toolong', 1] }), 0);
    t.report(report({ seq: 3, cards: ['x:y', 1] }), 0);
    assert.equal(t.stats().badReports, 2);
    assert.equal(t.connections('a'), 1, 'a bad report changes nothing');
  });
});

describe('the link frame', () => {
  test('encodePresence / parsePresence round trip; malformed reports are refused', () => {
    const r = report({ seq: 3, kind: 'snapshot', part: 1, parts: 2, cards: ['a', 2] });
    assert.deepEqual(parsePresence(encodePresence(r)), r);
    const bad = (over: Record<string, unknown>) => Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ ...report({ seq: 1 }), ...over }))]);
    for (const over of [{ seq: -1 }, { kind: 'x' }, { cards: ['a'] }, { cards: [1, 1] }, { cards: ['a', -1] }, { kind: 'snapshot' }, { kind: 'snapshot', part: 2, parts: 2 }, { gw: 5 }]) {
      assert.equal(parsePresence(bad(over)), null, JSON.stringify(over));
    }
    assert.equal(parsePresence(Buffer.from([3, 0x7b])), null);
    assert.equal(parsePresence(Buffer.from('\u0002{}')), null);
  });
});

describe('GatewayPresence and WorkerPresence', () => {
  test('a worker coalesces its changes into one message of absolute counts', async () => {
    const posts: Array<Array<string | number>> = [];
    const worker = new WorkerPresence((cards) => posts.push(cards), 5);
    worker.joined('a');
    worker.joined('a');
    worker.joined('b');
    worker.left('b');
    assert.deepEqual(posts, []);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(posts, [['a', 2, 'b', 0]]);
    assert.equal(worker.cards, 1);
  });

  test('the gateway sums its workers, withdraws a dead one, and its snapshot in parts rebuilds the same view at the MPC', () => {
    const frames: Buffer[] = [];
    const gateway = new GatewayPresence((frame) => frames.push(frame), GW, 1000, () => ({ clients: 7, workers: 2 }));
    gateway.worker(0, ['a', 2, 'b', 1]);
    gateway.worker(1, ['a', 1]);
    assert.deepEqual([gateway.connections('a'), gateway.connections('b')], [3, 1]);
    gateway.workerGone(0);
    assert.deepEqual([gateway.connections('a'), gateway.connections('b'), gateway.cards], [1, 0, 1]);
    const many = Array.from({ length: MAX_CARDS_PER_FRAME * 2 + 5 }, (_, i) => [`c${i}`, 1]).flat();
    gateway.worker(1, many);
    (gateway as unknown as { snapshot(): void }).snapshot();
    const reports = frames.map((f) => parsePresence(f)!);
    assert.deepEqual(reports.map((r) => [r.kind, r.part, r.parts, r.seq]), [['snapshot', 0, 3, 1], ['snapshot', 1, 3, 2], ['snapshot', 2, 3, 3]]);
    assert.ok(reports.every((r) => r.ttl === 3000 && r.clients === 7 && r.workers === 2 && r.gw === GW));
    const { t, resyncs } = table({ maxEntries: 100_000 });
    for (const r of reports) t.report(r, 0);
    assert.deepEqual(resyncs, []);
    assert.deepEqual([t.connections('a'), t.connections('c0'), t.connections(`c${MAX_CARDS_PER_FRAME * 2 + 4}`), t.totals().cards], [1, 1, 1, MAX_CARDS_PER_FRAME * 2 + 6]);
    gateway.worker(1, ['a', 0]);
    gateway.stop();
    const last = frames.slice(3).map((f) => parsePresence(f)!);
    assert.deepEqual(last.map((r) => [r.kind, r.cards]), [['delta', ['a', 0]], ['bye', []]], 'pending changes, then bye');
    for (const r of last.slice(0, 1)) t.report(r, 0);
    assert.equal(t.connections('a'), 0);
  });
});
