/** The worker's delivery loop and per-connection writer, with fake sockets: runs, gaps, skips, variants, holds. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { RecordKind, RingReader, RingWriter, createRingBuffer } from '../../src/gateway/shared/ring.js';
import { Delivery, MAX_BATCH, positionedFrame } from '../../src/gateway/worker/delivery.js';
import { TopicTrie } from '../../src/gateway/worker/trie.js';
import { Variant, Writer, type WriterLimits } from '../../src/gateway/worker/writer.js';
import { encodeTextFrame } from '../../src/protocol/ws-frame.js';
import { FakeWs } from '../helpers/fake-socket.js';

function setup(limits: Partial<WriterLimits> = {}) {
  const sab = createRingBuffer(1 << 20);
  const ring = new RingWriter(sab);
  const stats = new Float64Array(WORKER_STATS_LENGTH);
  const trie = new TopicTrie<Writer>();
  const controls: string[] = [];
  const delivery = new Delivery(new RingReader(sab), trie, stats, {
    mark: (topic, seq, epoch, offset) => controls.push(`mark ${topic} ${seq} ${epoch} ${offset}`),
    gap: (topic) => controls.push(`gap ${topic}`),
  });
  const full: WriterLimits = { slowClientBytes: 1024, slowClientPolicy: 'close', replayStallMs: 10_000, ...limits };
  const connect = (variant: number, ...topics: string[]) => {
    const ws = new FakeWs();
    const writer = new Writer(ws.asWebSocket(), variant, full, stats, new Set(topics));
    for (const topic of topics) trie.add(topic, writer);
    return { ws, writer };
  };
  const offsets = new Map<string, number>();
  const record = (kind: number, topic: string, body: string, offset: number, seq = 0) => {
    const t = Buffer.from(topic);
    const e = Buffer.from('Ep');
    const b = Buffer.from(body);
    assert.ok(ring.tryWrite({ kind, topicSource: t, epochSource: e, bodySource: b, topicStart: 0, topicEnd: t.length, epochStart: 0, epochEnd: e.length, bodyStart: 0, bodyEnd: b.length, offset, seq, receivedAt: 0 }));
  };
  /** Publishes `n` messages on `topic`, bodies `{"topic":"T","n":K}` at consecutive offsets per topic. */
  const publish = (topic: string, n = 1) => {
    for (let i = 0; i < n; i++) {
      const offset = (offsets.get(topic) ?? 0) + 1;
      offsets.set(topic, offset);
      record(RecordKind.MESSAGE, topic, `{"topic":"${topic}","n":${offset}}`, offset);
    }
  };
  const body = (topic: string, n: number) => `{"topic":"${topic}","n":${n}}`;
  return { ring, stats, trie, delivery, connect, publish, record, body, controls };
}

describe('Delivery and Writer', () => {
  test('a broadcast batch is one write per connection carrying every message, counted once per delivery', () => {
    const { delivery, connect, publish, stats, body } = setup();
    const clients = [connect(Variant.BODY, 'news'), connect(Variant.BODY, 'news:sport'), connect(Variant.BODY, 'other')];
    publish('news', 3);
    assert.equal(delivery.deliverAvailable(), 3);
    for (const { ws } of clients.slice(0, 2)) assert.deepEqual(ws.socket.writes, [[body('news', 1), body('news', 2), body('news', 3)]]);
    assert.deepEqual(clients[2]!.ws.socket.writes, []);
    assert.equal(stats[WorkerStat.messages], 3);
    assert.equal(stats[WorkerStat.deliveries], 6);
  });

  test('a connection whose messages have gaps gets its runs in order, corked into one writev', () => {
    const { delivery, connect, publish, body } = setup();
    const all = connect(Variant.BODY, 'a', 'b');
    const onlyA = connect(Variant.BODY, 'a');
    publish('a');
    publish('b');
    publish('a');
    delivery.deliverAvailable();
    assert.deepEqual(all.ws.socket.writes, [[body('a', 1), body('b', 1), body('a', 2)]]);
    assert.equal(all.ws.socket.corks, 0);
    assert.deepEqual(onlyA.ws.socket.writes, [[body('a', 1)], [body('a', 2)]]);
    assert.equal(onlyA.ws.socket.corks, 1);
    assert.equal(onlyA.ws.socket.uncorks, 1);
  });

  test('tormq.v2 connections get the body with its position; original ones the body byte for byte; each variant built once', () => {
    const { delivery, connect, publish, body } = setup();
    const v1 = connect(Variant.BODY, 'n');
    const v2 = connect(Variant.POSITIONED, 'n');
    const v2b = connect(Variant.POSITIONED, 'n');
    publish('n', 2);
    delivery.deliverAvailable();
    assert.deepEqual(v1.ws.pushed(), [body('n', 1), body('n', 2)]);
    assert.deepEqual(v2.ws.pushed(), ['{"topic":"n","n":1,"epoch":"Ep","offset":1}', '{"topic":"n","n":2,"epoch":"Ep","offset":2}']);
    assert.deepEqual(v2b.ws.pushed(), v2.ws.pushed());
    for (const m of v2.ws.pushed()) assert.doesNotThrow(() => JSON.parse(m));
  });

  test('joined (gopusher) connections get {"type":1,"data":<content>}, one buffer for all of them; others the body byte for byte', () => {
    const { delivery, connect, record } = setup();
    const plain = connect(Variant.BODY, 'card');
    const a = connect(Variant.GOPUSHER, 'card:chat');
    const b = connect(Variant.GOPUSHER, 'card');
    const body = '{"topic": "card", "data": {"from":"f","content":"hi <3"}}';
    record(RecordKind.MESSAGE, 'card', body, 1);
    delivery.deliverAvailable();
    assert.deepEqual(plain.ws.pushed(), [body]);
    assert.deepEqual(a.ws.pushed(), ['{"type":1,"data":"hi \\u003c3"}\n']);
    assert.deepEqual(b.ws.pushed(), a.ws.pushed());
    assert.equal(a.ws._socket.chunks[0], b.ws._socket.chunks[0], 'the same bytes: encoded once per message');
  });

  test('positionedFrame: trailing whitespace, long bodies (16- and 64-bit lengths) stay valid JSON', () => {
    for (const size of [10, 200, 70_000]) {
      const text = `{"topic": "t", "data": "${'x'.repeat(size)}"}  \n`;
      const frame = positionedFrame(encodeTextFrame(Buffer.from(text), 0, Buffer.byteLength(text)), 'AbC', 2 ** 40);
      const header = frame[1]! < 126 ? 2 : frame[1] === 126 ? 4 : 10;
      const declared = header === 2 ? frame[1]! : header === 4 ? frame.readUInt16BE(2) : frame.readUInt32BE(6);
      assert.equal(declared, frame.length - header);
      assert.deepEqual(JSON.parse(frame.toString('utf8', header)), { topic: 't', data: 'x'.repeat(size), epoch: 'AbC', offset: 2 ** 40 });
    }
  });

  test('a connection subscribed twice under the published topic gets each message once', () => {
    const { delivery, connect, publish } = setup();
    const { ws } = connect(Variant.BODY, 'x', 'x:y', 'x:y:z');
    publish('x', 2);
    delivery.deliverAvailable();
    assert.equal(ws.pushed().length, 2);
  });

  test('policy close: a connection over slowClientBytes before the batch is closed with 4008 and written nothing', () => {
    const { delivery, connect, publish, stats } = setup({ slowClientPolicy: 'close' });
    const slow = connect(Variant.BODY, 't');
    const fine = connect(Variant.BODY, 't');
    slow.ws.socket.writableLength = 2048;
    publish('t', 2);
    delivery.deliverAvailable();
    assert.deepEqual(slow.ws.socket.writes, []);
    assert.deepEqual(slow.ws.closes, [{ code: 4008, reason: 'slow client' }]);
    assert.equal(fine.ws.pushed().length, 2);
    assert.equal(stats[WorkerStat.slowClientDisconnects], 1);
    assert.equal(stats[WorkerStat.deliveries], 2);
    publish('t');
    delivery.deliverAvailable();
    assert.deepEqual(slow.ws.socket.writes, []);
    assert.equal(stats[WorkerStat.slowClientDisconnects], 1);
  });

  test('policy drop: the batch is skipped and counted per message; a tormq.v2 connection is told with a gap once it catches up', () => {
    const { delivery, connect, publish, stats, body } = setup({ slowClientPolicy: 'drop' });
    const slow = connect(Variant.BODY, 't');
    const slowV2 = connect(Variant.POSITIONED, 't:x', 'other');
    slow.ws.socket.writableLength = 4096;
    slowV2.ws.socket.writableLength = 4096;
    publish('t', 3);
    delivery.deliverAvailable();
    assert.deepEqual(slow.ws.socket.writes, []);
    assert.equal(stats[WorkerStat.slowClientDrops], 6);
    assert.deepEqual(slowV2.ws.sent, [], 'no gap notice while it is still behind');
    // It catches up (the socket drains): told at once, without waiting for another message.
    slowV2.ws.socket.writableLength = 0;
    slowV2.ws.socket.emit('drain');
    assert.deepEqual(slowV2.ws.sent.map((t) => JSON.parse(t)), [{ event: 'gap', topics: ['t:x'] }], 'only the subscription the stream feeds');
    slow.ws.socket.writableLength = 0;
    publish('t');
    delivery.deliverAvailable();
    assert.deepEqual(slow.ws.pushed(), [body('t', 4)]);
    assert.equal(slowV2.ws.sent.length, 1, 'told once');
  });

  test('slowness is judged once per batch, on what earlier batches left: a batch larger than the limit is not "slow"', () => {
    const { delivery, connect, record, stats } = setup({ slowClientBytes: 1024 });
    const { ws } = connect(Variant.BODY, 'big');
    const write = ws.socket.write.bind(ws.socket);
    ws.socket.write = (chunk: Buffer) => {
      ws.socket.writableLength += chunk.length;
      return write(chunk);
    };
    for (let i = 1; i <= 4; i++) record(RecordKind.MESSAGE, 'big', `{"p":"${'a'.repeat(600)}"}`, i);
    delivery.deliverAvailable();
    assert.equal(ws.pushed().length, 4);
    assert.equal(stats[WorkerStat.slowClientDisconnects], 0);
    record(RecordKind.MESSAGE, 'big', '{}', 5);
    delivery.deliverAvailable();
    assert.equal(stats[WorkerStat.slowClientDisconnects], 1);
  });

  test('a control record ends the batch before it: the messages before a MARK are written before it is handled', () => {
    const { delivery, connect, publish, record, controls } = setup();
    const { ws } = connect(Variant.BODY, 'm');
    publish('m', 2);
    ws.socket.write = ((original) => (chunk: Buffer) => {
      controls.push(`write ${chunk.length}`);
      return original(chunk);
    })(ws.socket.write.bind(ws.socket));
    record(RecordKind.MARK, 'm', '', 2, 9);
    publish('m');
    record(RecordKind.GAP, 'm', '', 0);
    delivery.deliverAvailable();
    assert.deepEqual(controls.map((c) => c.split(' ')[0]), ['write', 'mark', 'write', 'gap']);
    assert.equal(controls[1], 'mark m 9 Ep 2');
  });

  test('hold and release: held messages of a recovering stream go out after the replay point, in order, without duplicates', () => {
    const { delivery, connect, publish } = setup();
    const { ws, writer } = connect(Variant.POSITIONED, 'h');
    writer.hold(['h']);
    publish('h', 4);
    delivery.deliverAvailable();
    assert.deepEqual(ws.pushed(), [], 'held');
    writer.writeFrames([Buffer.from([0x81, 3, 0x72, 0x65, 0x70])]); // the replay ("rep"), up to offset 2
    writer.release('h', 2);
    assert.deepEqual(ws.pushed().map((m) => (m === 'rep' ? m : (JSON.parse(m) as { offset: number }).offset)), ['rep', 3, 4]);
    publish('h');
    delivery.deliverAvailable();
    assert.equal((JSON.parse(ws.pushed().at(-1)!) as { offset: number }).offset, 5, 'live again');
    assert.deepEqual(ws.sent, []);
  });

  test('a hole among held messages is a gap, told after the release', () => {
    const { delivery, connect, record } = setup();
    const { ws, writer } = connect(Variant.POSITIONED, 'h');
    writer.hold(['h']);
    record(RecordKind.MESSAGE, 'h', '{"a":1}', 3);
    record(RecordKind.MESSAGE, 'h', '{"a":1}', 5);
    delivery.deliverAvailable();
    writer.release('h', 2);
    assert.equal(ws.pushed().length, 2);
    assert.deepEqual(ws.sent.map((t) => JSON.parse(t)), [{ event: 'gap', topics: ['h'] }]);
  });

  test('held messages are bounded by slowClientBytes for all streams together, not per stream; past it a gap per stream is told', () => {
    const { delivery, connect, publish } = setup({ slowClientBytes: 1024 });
    const streams = Array.from({ length: 20 }, (_, i) => `h${i}`);
    const { ws, writer } = connect(Variant.POSITIONED, ...streams);
    writer.hold(streams);
    for (const stream of streams) publish(stream, 3); // 60 frames of ≈ 50 bytes: ≈ 3 KB, 150 bytes per stream
    delivery.deliverAvailable();
    for (const stream of streams) writer.release(stream, 0);
    const frames = ws.pushed();
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    assert.ok(frames.length > 0 && bytes <= 1024, `released ${frames.length} frames, ${bytes} bytes`);
    const gaps = ws.sent.flatMap((t) => (JSON.parse(t) as { topics: string[] }).topics);
    assert.equal(frames.length + gaps.length * 3 >= 60, true);
    assert.ok(gaps.length > 0 && gaps.length < streams.length, `gaps told for ${gaps.length} streams`);
    // Released streams are held no more: the next hold starts from zero.
    writer.hold(['h0']);
    publish('h0', 1);
    delivery.deliverAvailable();
    writer.release('h0', 3);
    assert.equal((JSON.parse(ws.pushed().at(-1)!) as { offset: number }).offset, 4);
  });

  test('a connection that is closing gets nothing', () => {
    const { delivery, connect, publish } = setup();
    const { ws } = connect(Variant.BODY, 't');
    ws.readyState = 2;
    publish('t');
    delivery.deliverAvailable();
    assert.deepEqual(ws.socket.writes, []);
  });

  test(`one call delivers at most ${MAX_BATCH} records; the rest stay for the next`, () => {
    const { delivery, connect, publish, stats } = setup();
    const { ws } = connect(Variant.BODY, 'n');
    publish('n', MAX_BATCH + 10);
    assert.equal(delivery.deliverAvailable(), MAX_BATCH);
    assert.equal(delivery.deliverAvailable(), 10);
    assert.equal(delivery.deliverAvailable(), 0);
    assert.equal(ws.pushed().length, MAX_BATCH + 10);
    assert.equal(stats[WorkerStat.messages], MAX_BATCH + 10);
  });
});
