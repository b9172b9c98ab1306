/** The main thread's fan-out and routing: validation, drop reasons, ring copies, upstream subscriptions. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FanOut } from '../../src/gateway/main/fan-out.js';
import { Routing, type RingSlot } from '../../src/gateway/main/routing.js';
import { validateGatewayConfig, type GatewayOptions } from '../../src/gateway/shared/config.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { MIN_RING_BYTES, RingReader, RingWriter, createRingBuffer } from '../../src/gateway/shared/ring.js';

function setup(options: GatewayOptions = {}, ringBytes = 1 << 16) {
  const upstream: string[] = [];
  const routing = new Routing({ want: (root) => upstream.push(`+${root}`), release: (root) => upstream.push(`-${root}`) });
  const fanOut = new FanOut(validateGatewayConfig(options), routing);
  const slots = [0, 1].map((index) => {
    const sab = createRingBuffer(ringBytes);
    const slot: RingSlot = { index, ring: new RingWriter(sab), stats: new Float64Array(WORKER_STATS_LENGTH) };
    return { slot, reader: new RingReader(sab) };
  });
  const read = (i: number) => {
    const out: Array<{ topic: string; body: string }> = [];
    slots[i]!.reader.drain((topic, bytes, offset, length) => out.push({ topic, body: bytes.toString('utf8', offset, offset + length) }), 1 << 20);
    return out;
  };
  const message = (topic: string, root = topic.split(':')[0]!) => [Buffer.from(root), Buffer.from(JSON.stringify({ topic, data: 1 }))];
  return { upstream, routing, fanOut, slots, read, message };
}

describe('FanOut and Routing', () => {
  test('a message is copied once into the ring of every worker routed for its root, and nowhere else', () => {
    const { routing, fanOut, slots, read, message } = setup();
    routing.add('a', slots[0]!.slot);
    routing.add('a', slots[1]!.slot);
    routing.add('b', slots[1]!.slot);
    fanOut.ingest(message('a:1'));
    fanOut.ingest(message('b'));
    assert.deepEqual(read(0).map((r) => r.topic), ['a:1']);
    assert.deepEqual(read(1).map((r) => r.topic), ['a:1', 'b']);
    assert.equal(fanOut.messagesIn, 2);
    assert.ok(Object.values(fanOut.drops).every((n) => n === 0));
  });

  test('the body reaches the ring byte for byte, key order and spacing untouched', () => {
    const { routing, fanOut, slots, read } = setup();
    routing.add('r', slots[0]!.slot);
    const body = '{"data": {"x": "héllo ✓"}, "topic": "r:x"}';
    fanOut.ingest([Buffer.from('r'), Buffer.from(body)]);
    assert.deepEqual(read(0), [{ topic: 'r:x', body }]);
  });

  test('each malformed message is dropped and counted by its reason', () => {
    const { routing, fanOut, slots, read } = setup({ maxMessageBytes: 1000 });
    routing.add('ok', slots[0]!.slot);
    const cases: Array<[Buffer[], string]> = [
      [[Buffer.from('ok')], 'bad_frames'],
      [[Buffer.from('ok'), Buffer.from('{}'), Buffer.from('x')], 'bad_frames'],
      [[Buffer.from('ok'), Buffer.alloc(1001, 0x20)], 'oversized'],
      [[Buffer.from('ok'), Buffer.from('{"topic": "ok", ')], 'not_json'],
      [[Buffer.from('ok'), Buffer.from('[1]')], 'no_topic'],
      [[Buffer.from('ok'), Buffer.from('{"topic": 7, "data": 1}')], 'no_topic'],
      [[Buffer.from('ok'), Buffer.from('{"topic": "ok::x", "data": 1}')], 'invalid_topic'],
      [[Buffer.from('okx'), Buffer.from('{"topic": "ok", "data": 1}')], 'root_mismatch'],
      [[Buffer.from('nobody'), Buffer.from('{"topic": "nobody", "data": 1}')], 'unrouted'],
    ];
    for (const [frames, reason] of cases) {
      const before = fanOut.drops[reason as keyof typeof fanOut.drops];
      fanOut.ingest(frames);
      assert.equal(fanOut.drops[reason as keyof typeof fanOut.drops], before + 1, reason);
    }
    assert.equal(fanOut.messagesIn, cases.length);
    assert.deepEqual(read(0), []);
  });

  test('--no-validate-json reads the topic from the bytes and forwards the rest unparsed', () => {
    const { routing, fanOut, slots, read } = setup({ validateJson: false });
    routing.add('t', slots[0]!.slot);
    fanOut.ingest([Buffer.from('t'), Buffer.from('{"topic": "t", "data": not json}')]);
    assert.deepEqual(read(0).map((r) => r.topic), ['t']);
    assert.equal(fanOut.drops.not_json, 0);
  });

  test('a full ring drops the message for that worker only, counted on its slot', () => {
    const { routing, fanOut, slots, read } = setup({ ringBytes: MIN_RING_BYTES, maxMessageBytes: 1000 }, MIN_RING_BYTES);
    routing.add('f', slots[0]!.slot);
    routing.add('f', slots[1]!.slot);
    const body = JSON.stringify({ topic: 'f', data: 'x'.repeat(900) });
    for (let i = 0; i < 10; i++) {
      fanOut.ingest([Buffer.from('f'), Buffer.from(body)]);
      read(1); // worker 1 keeps up, worker 0 does not
    }
    assert.ok(slots[0]!.slot.stats[WorkerStat.ringDrops]! > 0);
    assert.equal(slots[1]!.slot.stats[WorkerStat.ringDrops], 0);
    assert.equal(read(0).length + slots[0]!.slot.stats[WorkerStat.ringDrops]!, 10);
  });

  test('routing subscribes a root upstream for its first worker and releases it after its last, also when a worker dies', () => {
    const { routing, upstream, slots } = setup();
    const [w0, w1] = [slots[0]!.slot, slots[1]!.slot];
    routing.add('a', w0);
    routing.add('a', w1);
    routing.add('a', w1);
    assert.deepEqual(upstream, ['+a']);
    routing.remove('a', w0);
    assert.deepEqual(upstream, ['+a']);
    assert.deepEqual(routing.rootsOf(w1), ['a']);
    routing.add('b', w1);
    routing.removeSlot(w1);
    assert.deepEqual(upstream, ['+a', '+b', '-a', '-b']);
    assert.deepEqual(routing.roots(), []);
    assert.equal(routing.slotsOf('a'), undefined);
  });
});
