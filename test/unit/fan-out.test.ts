/**
 * The main thread's fan-out and routing: frames from the MPC into the workers' rings, positions and
 * marks, continuity (gaps repaired from history or reported), upstream subscriptions.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log.js';
import { FanOut } from '../../src/gateway/main/fan-out.js';
import type { HistoryClient, HistoryResult } from '../../src/gateway/main/history-client.js';
import { RingSlot } from '../../src/gateway/main/ring-slot.js';
import { Routing } from '../../src/gateway/main/routing.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { MIN_RING_BYTES, RecordKind, RingReader, RingWriter, createRingBuffer } from '../../src/gateway/shared/ring.js';
import { encodeStreamFrame, LinkKind, UNHELD_BODY } from '../../src/zmq/gateway-link.js';

const EPOCH = Buffer.from('EpochOne');

interface Read {
  kind: number;
  topic: string;
  epoch: string;
  offset: number;
  seq: number;
  body: string;
}

function setup(ringBytes = 1 << 16) {
  const upstream: string[] = [];
  const routing = new Routing({ want: (t) => upstream.push(`+${t}`), release: (t) => upstream.push(`-${t}`) });
  const fetches: Array<{ topic: string; epoch: string; after: number; limit: number; resolve: (r: HistoryResult) => void }> = [];
  const history = {
    page: (topic: string, epoch: string, after: number, limit: number) => new Promise<HistoryResult>((resolve) => fetches.push({ topic, epoch, after, limit, resolve })),
    reply: () => {},
  } as unknown as HistoryClient;
  const confirmed: string[] = [];
  const fanOut = new FanOut({ maxMessageBytes: 1000 }, routing, history, (t) => confirmed.push(t), createLogger('test', 'silent'));
  const slots = [0, 1].map((index) => {
    const sab = createRingBuffer(ringBytes);
    return { slot: new RingSlot(index, new RingWriter(sab), new Float64Array(WORKER_STATS_LENGTH)), reader: new RingReader(sab) };
  });
  const read = (i: number): Read[] => {
    const out: Read[] = [];
    slots[i]!.reader.drain((r) => out.push({ kind: r.kind, topic: r.topic, epoch: r.epoch, offset: r.offset, seq: r.seq, body: r.bytes.toString('utf8', r.bodyOffset, r.bodyOffset + r.bodyLength) }), 1 << 20);
    return out;
  };
  const message = (topic: string, offset: number, body = `${topic}#${offset}`, epoch = EPOCH) =>
    fanOut.ingest(encodeStreamFrame(LinkKind.MESSAGE, Buffer.from(topic), epoch, offset, Buffer.from(body)));
  const position = (topic: string, offset: number, epoch = EPOCH) => fanOut.ingest(encodeStreamFrame(LinkKind.POSITION, Buffer.from(topic), epoch, offset, null));
  const baselines: string[] = [];
  routing.requestBaseline = (topic) => baselines.push(topic);
  /**
   * The MPC confirms the topic's root (its position, and its subtree), and answers the topic's baseline
   * request with `offset` (what position-check.ts does with a positions reply).
   */
  const confirm = (topic: string, offset: number, epoch = EPOCH) => {
    const root = topic.split(':')[0]!;
    position(root, root === topic ? offset : 0, epoch);
    fanOut.ingest(encodeStreamFrame(LinkKind.SUBTREE, Buffer.from(`${root}:`), Buffer.alloc(0), 0, null));
    const route = routing.routeOf(topic);
    if (root !== topic && route !== undefined) fanOut.baseline(route, epoch.toString('latin1'), offset);
  };
  const messages = (i: number) => read(i).filter((r) => r.kind === RecordKind.MESSAGE).map((r) => r.body);
  return { upstream, routing, fanOut, slots, read, message, position, confirm, baselines, messages, fetches, confirmed };
}

describe('FanOut and Routing', () => {
  test('a message is copied once into the ring of every worker routed for its topic, and nowhere else', () => {
    const { routing, slots, read, message, confirm } = setup();
    const [w0, w1] = [slots[0]!.slot, slots[1]!.slot];
    routing.add('a:1', w0, 1);
    routing.add('a:1', w1, 1);
    routing.add('b', w1, 2);
    confirm('a:1', 0);
    confirm('b', 0);
    message('a:1', 1);
    message('b', 1);
    message('nobody', 1);
    assert.deepEqual(read(0).map((r) => [r.kind, r.topic, r.body]), [[RecordKind.MARK, 'a:1', ''], [RecordKind.MESSAGE, 'a:1', 'a:1#1']]);
    assert.deepEqual(read(1).map((r) => [r.kind, r.topic, r.body]), [
      [RecordKind.MARK, 'a:1', ''], [RecordKind.MARK, 'b', ''], [RecordKind.MESSAGE, 'a:1', 'a:1#1'], [RecordKind.MESSAGE, 'b', 'b#1'],
    ]);
  });

  test('the body reaches the ring byte for byte, with its topic and stream position', () => {
    const { routing, slots, read, confirm, fanOut } = setup();
    routing.add('r:x', slots[0]!.slot, 1);
    confirm('r:x', 6);
    const body = '{"data": {"x": "héllo ✓"}, "topic": "r:x"}';
    fanOut.ingest(encodeStreamFrame(LinkKind.MESSAGE, Buffer.from('r:x'), EPOCH, 7, Buffer.from(body)));
    assert.deepEqual(read(0).at(-1), { kind: RecordKind.MESSAGE, topic: 'r:x', epoch: 'EpochOne', offset: 7, seq: 0, body });
  });

  test('a worker\'s report is marked only once the MPC confirmed the root (both keys) and the topic\'s position is known', () => {
    const { routing, slots, read, position, message, confirmed, baselines, fanOut } = setup();
    routing.add('t:x', slots[0]!.slot, 5);
    routing.add('t', slots[0]!.slot, 6);
    assert.deepEqual(read(0), [], 'not confirmed yet: no mark');
    position('t', 41);
    assert.deepEqual(read(0), [], 'the subtree is not confirmed yet');
    fanOut.ingest(encodeStreamFrame(LinkKind.SUBTREE, Buffer.from('t:'), Buffer.alloc(0), 0, null));
    assert.deepEqual(confirmed, ['t', 't:'], 'both keys confirmed upstream');
    assert.deepEqual(read(0).map((r) => [r.kind, r.topic, r.offset, r.seq]), [[RecordKind.MARK, 't', 41, 6]], 'the root had its position with its confirmation');
    assert.deepEqual(baselines, ['t:x'], 't:x asks where its stream is');
    fanOut.baseline(routing.routeOf('t:x')!, 'EpochOne', 9);
    assert.deepEqual(read(0), [{ kind: RecordKind.MARK, topic: 't:x', epoch: 'EpochOne', offset: 9, seq: 5, body: '' }]);
    message('t:x', 10);
    routing.mark('t:x', slots[0]!.slot, 7); // a tormq.v2 subscription asks where the stream is now
    assert.deepEqual(read(0).map((r) => [r.kind, r.offset, r.seq]), [[RecordKind.MESSAGE, 10, 0], [RecordKind.MARK, 10, 7]]);
    routing.mark('never', slots[0]!.slot, 8);
    assert.deepEqual(read(0).map((r) => [r.kind, r.topic, r.offset, r.seq]), [[RecordKind.MARK, 'never', -1, 8]], 'answered even when not routed');
  });

  test('a skipped offset holds the stream back while history fills the hole, then goes on in order', async () => {
    const { routing, slots, confirm, message, messages, fetches, fanOut } = setup();
    routing.add('s', slots[0]!.slot, 1);
    confirm('s', 0);
    message('s', 1);
    message('s', 4); // 2 and 3 lost upstream
    message('s', 5);
    assert.deepEqual(messages(0), ['s#1'], 'held back until the repair');
    assert.deepEqual(fetches.map((f) => [f.topic, f.epoch, f.after, f.limit]), [['s', 'EpochOne', 1, 2]]);
    fetches[0]!.resolve({ status: 'ok', epoch: 'EpochOne', top: 5, from: 2, bodies: [Buffer.from('s#2'), Buffer.from('s#3')], more: false });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(messages(0), ['s#2', 's#3', 's#4', 's#5']);
    message('s', 5); // a duplicate: dropped
    message('s', 6);
    assert.deepEqual(messages(0), ['s#6']);
    assert.equal(fanOut.upstreamGaps, 1);
    assert.equal(fanOut.repairedGaps, 1);
    assert.equal(fanOut.drops.duplicate, 1);
  });

  test('a hole history cannot fill becomes a GAP record, and the stream goes on', async () => {
    const { routing, slots, confirm, message, read, fetches, fanOut } = setup();
    routing.add('s', slots[0]!.slot, 1);
    confirm('s', 0);
    read(0);
    message('s', 3);
    fetches[0]!.resolve({ status: 'evicted', epoch: 'EpochOne', top: 3, from: 0, bodies: [], more: false });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(read(0).map((r) => [r.kind, r.topic, r.body]), [[RecordKind.GAP, 's', ''], [RecordKind.MESSAGE, 's', 's#3']]);
    assert.equal(fanOut.unrepairedGaps, 1);
  });

  test('a new epoch (the MPC restarted) is a gap for every worker routed for the topic', () => {
    const { routing, slots, confirm, message, read } = setup();
    routing.add('e', slots[0]!.slot, 1);
    routing.add('e', slots[1]!.slot, 1);
    confirm('e', 10);
    read(0);
    read(1);
    message('e', 1, 'fresh', Buffer.from('EpochTwo'));
    for (const i of [0, 1]) assert.deepEqual(read(i).map((r) => [r.kind, r.epoch, r.body]), [[RecordKind.GAP, '', ''], [RecordKind.MESSAGE, 'EpochTwo', 'fresh']]);
  });

  test('a position ahead of what arrived is a gap too (a position check), repaired the same way', async () => {
    const { routing, slots, confirm, position, message, messages, fetches } = setup();
    routing.add('p', slots[0]!.slot, 1);
    confirm('p', 0);
    message('p', 1);
    position('p', 3); // another gateway's subscription: the MPC says the stream is at 3
    assert.deepEqual(fetches.map((f) => [f.after, f.limit]), [[1, 2]]);
    fetches[0]!.resolve({ status: 'ok', epoch: 'EpochOne', top: 3, from: 2, bodies: [Buffer.from('p#2'), Buffer.from('p#3')], more: false });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(messages(0), ['p#1', 'p#2', 'p#3']);
  });

  test('a repair does not wait long for a worker whose ring stays full: the others get the stream, it gets what fits or a GAP', async () => {
    const { routing, slots, confirm, message, read, fetches, fanOut } = setup(MIN_RING_BYTES);
    routing.add('q', slots[0]!.slot, 1);
    routing.add('q', slots[1]!.slot, 1);
    confirm('q', 0);
    read(0);
    read(1);
    const big = 'x'.repeat(900); // under maxMessageBytes (1000)
    for (let o = 1; o <= 4; o++) message('q', o, big); // worker 0 never reads from here on: its ring fills
    message('q', 7, 'after the hole');
    read(1);
    assert.deepEqual(fetches.map((f) => [f.topic, f.after, f.limit]), [['q', 4, 2]]);
    fetches[0]!.resolve({ status: 'ok', epoch: 'EpochOne', top: 7, from: 5, bodies: [Buffer.from('x'.repeat(900)), Buffer.from('q#6')], more: false });
    const started = Date.now();
    const offsets: number[] = [];
    while (!offsets.includes(7) && Date.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      offsets.push(...read(1).filter((r) => r.kind === RecordKind.MESSAGE).map((r) => r.offset));
    }
    // Worker 1 got the repaired messages and the held one, in order, within the patience (1 s), not
    // after the 5 s a whole-repair give-up used to take, during which it got nothing of the topic.
    assert.deepEqual(offsets, [5, 6, 7]);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    assert.equal(fanOut.repairedGaps, 1);
    assert.equal(slots[1]!.slot.stats[WorkerStat.ringDrops], 0);
    // Worker 0 has every offset 1..7 it can read, or is owed a GAP for what did not fit (counted).
    message('q', 8, 'later');
    const records = read(0);
    const got = records.filter((r) => r.kind === RecordKind.MESSAGE).map((r) => r.offset);
    const missing = [1, 2, 3, 4, 5, 6, 7].filter((o) => !got.includes(o));
    if (missing.length > 0) {
      assert.ok(records.some((r) => r.kind === RecordKind.GAP && r.topic === 'q'), `worker 0 missing ${missing} without a GAP`);
      assert.ok(slots[0]!.slot.stats[WorkerStat.ringDrops]! >= missing.length);
    }
  });

  test('a full ring drops for that worker only, counted, and owes it a GAP record written as soon as there is room', () => {
    const { routing, slots, confirm, message, read } = setup(MIN_RING_BYTES);
    routing.add('f', slots[0]!.slot, 1);
    routing.add('f', slots[1]!.slot, 1);
    confirm('f', 0);
    read(0);
    read(1);
    const big = 'x'.repeat(900);
    for (let i = 1; i <= 10; i++) {
      message('f', i, big);
      read(1); // worker 1 keeps up, worker 0 does not
    }
    const dropped = slots[0]!.slot.stats[WorkerStat.ringDrops]!;
    assert.ok(dropped > 0);
    assert.equal(slots[1]!.slot.stats[WorkerStat.ringDrops], 0);
    message('f', 11, 'after');
    const records = read(0);
    const arrived = records.filter((r) => r.kind === RecordKind.MESSAGE).map((r) => r.offset);
    assert.equal(arrived.length + dropped, 11);
    const firstLost = [...Array(11).keys()].map((i) => i + 1).find((o) => !arrived.includes(o))!;
    const gapAt = records.findIndex((r) => r.kind === RecordKind.GAP && r.topic === 'f');
    const nextAt = records.findIndex((r) => r.kind === RecordKind.MESSAGE && r.offset > firstLost);
    assert.ok(gapAt !== -1 && gapAt < nextAt, 'the owed gap comes before anything after the lost message');
  });

  test('routing subscribes a root upstream for its first route and releases it after its last; a route that comes back asks its position again', () => {
    const { routing, upstream, slots, confirm, read, baselines } = setup();
    const [w0, w1] = [slots[0]!.slot, slots[1]!.slot];
    routing.add('a:1', w0, 1);
    routing.add('a:2', w1, 1);
    routing.add('a', w1, 2);
    assert.deepEqual(upstream, ['+a'], 'one root, however many topics below it');
    confirm('a:1', 0);
    routing.remove('a:1', w0);
    routing.remove('a:2', w1);
    assert.deepEqual(upstream, ['+a']);
    assert.deepEqual(routing.topics(), ['a']);
    routing.remove('a', w1);
    assert.deepEqual(upstream, ['+a', '-a']);
    assert.equal(routing.size, 0);
    read(0);
    baselines.length = 0;
    routing.add('a:1', w0, 3); // back before the root's unsubscription went out: still confirmed
    assert.deepEqual(upstream, ['+a', '-a', '+a']);
    assert.deepEqual(baselines, ['a:1']);
    routing.removeSlot(w0);
    routing.forget('a');
    assert.equal(routing.rootOf('a'), undefined);
  });

  test('several MPCs: a position from one holding no stream of the topic waits for the holder\'s, and is ignored once there is one', () => {
    const { routing, slots, read, fanOut } = setup();
    fanOut.linkedMpcs = () => 2;
    const held = (topic: string, offset: number, epoch: Buffer) => fanOut.ingest(encodeStreamFrame(LinkKind.POSITION, Buffer.from(topic), epoch, offset, null));
    const unheld = (topic: string, epoch: Buffer) => fanOut.ingest(encodeStreamFrame(LinkKind.POSITION, Buffer.from(topic), epoch, 0, UNHELD_BODY));
    const subtree = (root: string) => fanOut.ingest(encodeStreamFrame(LinkKind.SUBTREE, Buffer.from(`${root}:`), Buffer.alloc(0), 0, null));
    const FRESH_B = Buffer.from('FreshOfB');
    /** Routes root `topic` for worker 1; B confirms it without a stream, A has not answered yet. */
    const routedAnsweredByB = (topic: string, seq: number) => {
      routing.add(topic, slots[1]!.slot, seq);
      unheld(topic, FRESH_B);
      subtree(topic);
    };
    // The topic is published through A (EpochOne, at 7); B holds no stream of it.
    routing.add('live', slots[0]!.slot, 1);
    routing.add('live:x', slots[0]!.slot, 2);
    unheld('live', FRESH_B);
    subtree('live');
    fanOut.baseline(routing.routeOf('live:x')!, 'FreshOfB', 0, false);
    assert.deepEqual(read(0), [], 'no mark on the word of an MPC without the stream while another may hold it');
    held('live', 7, EPOCH);
    fanOut.baseline(routing.routeOf('live:x')!, 'EpochOne', 3);
    assert.deepEqual(read(0).map((r) => [r.topic, r.epoch, r.offset, r.seq]), [['live', 'EpochOne', 7, 1], ['live:x', 'EpochOne', 3, 2]]);
    // Later answers from B (a repeated confirmation, a baseline) say nothing about the stream: no gap.
    unheld('live', FRESH_B);
    fanOut.baseline(routing.routeOf('live:x')!, 'FreshOfB', 0, false);
    assert.deepEqual(read(0), []);
    assert.equal(fanOut.upstreamGaps, 0);
    // A topic nobody published: both MPCs answer without a stream; the first answer stands.
    routedAnsweredByB('new', 3);
    assert.deepEqual(read(1), []);
    unheld('new', Buffer.from('FreshOfA'));
    assert.deepEqual(read(1).map((r) => [r.topic, r.epoch, r.offset, r.seq]), [['new', 'FreshOfB', 0, 3]]);
    // One MPC answering twice (a root's confirmation, then its baseline request) is still one answer.
    routedAnsweredByB('twice', 5);
    fanOut.baseline(routing.routeOf('twice')!, 'FreshOfB', 0, false);
    assert.deepEqual(read(1), [], 'B twice is not B and A');
    held('twice', 4, EPOCH);
    assert.deepEqual(read(1).map((r) => [r.topic, r.epoch, r.offset, r.seq]), [['twice', 'EpochOne', 4, 5]]);
    // An MPC that does not answer: the request's retry adopts what the others said (position-check.ts).
    routedAnsweredByB('mute', 6);
    assert.deepEqual(read(1), []);
    fanOut.adoptUnheld(routing.routeOf('mute')!);
    assert.deepEqual(read(1).map((r) => [r.topic, r.epoch, r.offset, r.seq]), [['mute', 'FreshOfB', 0, 6]]);
    // Unless messages were seen meanwhile: then the answer of their epoch stands.
    routedAnsweredByB('seen', 4);
    fanOut.ingest(encodeStreamFrame(LinkKind.MESSAGE, Buffer.from('seen'), Buffer.from('FreshOfA'), 1, Buffer.from('first')));
    unheld('seen', Buffer.from('FreshOfA'));
    assert.deepEqual(read(1).map((r) => [r.kind, r.epoch, r.offset]), [[RecordKind.MESSAGE, 'FreshOfA', 1], [RecordKind.MARK, 'FreshOfA', 1]]);
    assert.equal(fanOut.upstreamGaps, 0);
  });

  test('one MPC: its position for a topic it holds no stream of is where the stream stands', () => {
    const { routing, slots, read, fanOut } = setup();
    routing.add('solo', slots[0]!.slot, 1);
    fanOut.ingest(encodeStreamFrame(LinkKind.POSITION, Buffer.from('solo'), Buffer.from('Fresh'), 0, UNHELD_BODY));
    fanOut.ingest(encodeStreamFrame(LinkKind.SUBTREE, Buffer.from('solo:'), Buffer.alloc(0), 0, null));
    assert.deepEqual(read(0).map((r) => [r.topic, r.epoch, r.offset]), [['solo', 'Fresh', 0]]);
    // It forgot the stream later (another fresh epoch): continuity is lost, as for any new epoch.
    fanOut.ingest(encodeStreamFrame(LinkKind.POSITION, Buffer.from('solo'), Buffer.from('Fresh2'), 0, UNHELD_BODY));
    assert.deepEqual(read(0).map((r) => r.kind), [RecordKind.GAP]);
  });
});
