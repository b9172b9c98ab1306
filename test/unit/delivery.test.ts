/** The worker's delivery loop and per-connection writer, with fake sockets: runs, gaps, skips, counting. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { RingReader, RingWriter, createRingBuffer } from '../../src/gateway/shared/ring.js';
import { Delivery, MAX_BATCH } from '../../src/gateway/worker/delivery.js';
import { TopicTrie } from '../../src/gateway/worker/trie.js';
import { Writer, type WriterLimits } from '../../src/gateway/worker/writer.js';
import { FakeWs } from '../helpers/fake-socket.js';

function setup(limits: Partial<WriterLimits> = {}) {
  const sab = createRingBuffer(1 << 20);
  const ring = new RingWriter(sab);
  const stats = new Float64Array(WORKER_STATS_LENGTH);
  const trie = new TopicTrie<Writer>();
  const delivery = new Delivery(new RingReader(sab), trie, stats);
  const full: WriterLimits = { slowClientBytes: 1024, slowClientPolicy: 'close', ...limits };
  const connect = (...topics: string[]) => {
    const ws = new FakeWs();
    const writer = new Writer(ws.asWebSocket(), full, stats);
    for (const topic of topics) trie.add(topic, writer);
    return ws;
  };
  const publish = (topic: string, n = 1) => {
    for (let i = 0; i < n; i++) assert.ok(ring.tryWrite(Buffer.from(topic), Buffer.from(`${topic}#${i}`), 0));
  };
  return { ring, stats, trie, delivery, connect, publish };
}

describe('Delivery and Writer', () => {
  test('a broadcast batch is one write per connection carrying every message, counted once per delivery', () => {
    const { delivery, connect, publish, stats } = setup();
    const clients = [connect('news'), connect('news:sport'), connect('other')];
    publish('news', 3);
    assert.equal(delivery.deliverAvailable(), 3);
    for (const ws of clients.slice(0, 2)) assert.deepEqual(ws.socket.writes, [['news#0', 'news#1', 'news#2']]);
    assert.deepEqual(clients[2]!.socket.writes, []);
    assert.equal(stats[WorkerStat.messages], 3);
    assert.equal(stats[WorkerStat.deliveries], 6);
  });

  test('a connection whose messages have gaps gets its runs in order, corked into one writev', () => {
    const { delivery, connect, publish } = setup();
    const all = connect('a', 'b');
    const onlyA = connect('a');
    publish('a');
    publish('b');
    publish('a');
    delivery.deliverAvailable();
    // `all` has every message: one contiguous run, no cork.
    assert.deepEqual(all.socket.writes, [['a#0', 'b#0', 'a#0']]);
    assert.equal(all.socket.corks, 0);
    // `onlyA` missed the middle one: two runs, written corked and uncorked once.
    assert.deepEqual(onlyA.socket.writes, [['a#0'], ['a#0']]);
    assert.equal(onlyA.socket.corks, 1);
    assert.equal(onlyA.socket.uncorks, 1);
  });

  test('a connection subscribed twice under the published topic gets each message once', () => {
    const { delivery, connect, publish } = setup();
    const ws = connect('x', 'x:y', 'x:y:z');
    publish('x', 2);
    delivery.deliverAvailable();
    assert.deepEqual(ws.pushed(), ['x#0', 'x#1']);
  });

  test('policy close: a connection over slowClientBytes before the batch is closed with 4008 and written nothing', () => {
    const { delivery, connect, publish, stats } = setup({ slowClientPolicy: 'close' });
    const slow = connect('t');
    const fine = connect('t');
    slow.socket.writableLength = 2048;
    publish('t', 2);
    delivery.deliverAvailable();
    assert.deepEqual(slow.socket.writes, []);
    assert.deepEqual(slow.closes, [{ code: 4008, reason: 'slow client' }]);
    assert.deepEqual(fine.pushed(), ['t#0', 't#1']);
    assert.equal(stats[WorkerStat.slowClientDisconnects], 1);
    assert.equal(stats[WorkerStat.deliveries], 2);
    // Closing: later batches skip it without counting it again.
    publish('t');
    delivery.deliverAvailable();
    assert.deepEqual(slow.socket.writes, []);
    assert.equal(stats[WorkerStat.slowClientDisconnects], 1);
  });

  test('policy drop: every message of the batch is skipped and counted, and delivery resumes once it catches up', () => {
    const { delivery, connect, publish, stats } = setup({ slowClientPolicy: 'drop' });
    const slow = connect('t');
    slow.socket.writableLength = 4096;
    publish('t', 3);
    delivery.deliverAvailable();
    assert.deepEqual(slow.socket.writes, []);
    assert.equal(stats[WorkerStat.slowClientDrops], 3);
    assert.deepEqual(slow.closes, []);
    slow.socket.writableLength = 0;
    publish('t');
    delivery.deliverAvailable();
    assert.deepEqual(slow.pushed(), ['t#0']);
  });

  test('slowness is judged once per batch, on what earlier batches left: a batch larger than the limit is not "slow"', () => {
    const { delivery, connect, ring, stats } = setup({ slowClientBytes: 1024 });
    const ws = connect('big');
    // Writes do not drain in the fake: writableLength grows with each write as a real socket's would.
    const write = ws.socket.write.bind(ws.socket);
    ws.socket.write = (chunk: Buffer) => {
      ws.socket.writableLength += chunk.length;
      return write(chunk);
    };
    for (let i = 0; i < 4; i++) ring.tryWrite(Buffer.from('big'), Buffer.alloc(600, 0x61), 0);
    delivery.deliverAvailable();
    assert.equal(ws.pushed().length, 4);
    assert.equal(stats[WorkerStat.slowClientDisconnects], 0);
    // The next batch sees 2.4 KB unsent from the last one: now it is slow.
    ring.tryWrite(Buffer.from('big'), Buffer.from('x'), 0);
    delivery.deliverAvailable();
    assert.equal(stats[WorkerStat.slowClientDisconnects], 1);
  });

  test('a connection that is closing gets nothing', () => {
    const { delivery, connect, publish } = setup();
    const ws = connect('t');
    ws.readyState = 2;
    publish('t');
    delivery.deliverAvailable();
    assert.deepEqual(ws.socket.writes, []);
  });

  test(`one call delivers at most ${MAX_BATCH} records; the rest stay for the next`, () => {
    const { delivery, connect, publish, stats } = setup();
    const ws = connect('n');
    publish('n', MAX_BATCH + 10);
    assert.equal(delivery.deliverAvailable(), MAX_BATCH);
    assert.equal(delivery.deliverAvailable(), 10);
    assert.equal(delivery.deliverAvailable(), 0);
    assert.equal(ws.pushed().length, MAX_BATCH + 10);
    assert.equal(stats[WorkerStat.messages], MAX_BATCH + 10);
  });
});
