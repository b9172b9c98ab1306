import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN_RING_BYTES, RecordKind, RingReader, RingWriter, createRingBuffer, maxBodyFor } from '../../src/gateway/shared/ring.js';

interface Read {
  kind: number;
  topic: string;
  epoch: string;
  offset: number;
  seq: number;
  body: Buffer;
  at: number;
}

function drainAll(reader: RingReader, max = 1 << 30): Read[] {
  const out: Read[] = [];
  reader.drain((r) => out.push({ kind: r.kind, topic: r.topic, epoch: r.epoch, offset: r.offset, seq: r.seq, body: Buffer.from(r.bytes.subarray(r.bodyOffset, r.bodyOffset + r.bodyLength)), at: r.receivedAt }), max);
  return out;
}

/** Writes a message record with the test's usual shape (epoch "E", offset 1). */
function write(writer: RingWriter, topic: Buffer, body: Buffer, at: number, extra: { kind?: number; epoch?: Buffer; offset?: number; seq?: number } = {}): boolean {
  const epoch = extra.epoch ?? Buffer.from('E');
  return writer.tryWrite({
    kind: extra.kind ?? RecordKind.MESSAGE, topicSource: topic, epochSource: epoch, bodySource: body,
    topicStart: 0, topicEnd: topic.length, epochStart: 0, epochEnd: epoch.length, bodyStart: 0, bodyEnd: body.length,
    offset: extra.offset ?? 1, seq: extra.seq ?? 0, receivedAt: at,
  });
}

describe('ring', () => {
  test('capacity must be a power of two within bounds', () => {
    assert.throws(() => createRingBuffer(5000), RangeError);
    assert.throws(() => createRingBuffer(MIN_RING_BYTES / 2), RangeError);
    assert.doesNotThrow(() => createRingBuffer(MIN_RING_BYTES));
  });

  test('records round-trip with topic, body and timestamp, in order', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    assert.equal(reader.hasData(), false);
    assert.ok(write(writer, Buffer.from('ehr:api'), Buffer.from('{"topic": "ehr:api", "data": "héllo"}'), 123.5));
    assert.ok(write(writer, Buffer.from('日本'), Buffer.alloc(0), 7));
    assert.equal(reader.hasData(), true);
    const got = drainAll(reader);
    assert.deepEqual(got.map((r) => [r.topic, r.body.toString(), r.at]), [
      ['ehr:api', '{"topic": "ehr:api", "data": "héllo"}', 123.5],
      ['日本', '', 7],
    ]);
    assert.equal(reader.hasData(), false);
    assert.equal(writer.used(), 0);
  });

  test('every field of a record survives: kind, topic, epoch, offset, seq, body, time', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    write(writer, Buffer.from('user:42'), Buffer.from('{"topic": "user:42", "data": 1}'), 5.5, { epoch: Buffer.from('AbCdEfGh'), offset: 2 ** 40 + 7 });
    write(writer, Buffer.from('user'), Buffer.alloc(0), 6, { kind: RecordKind.MARK, epoch: Buffer.from('XyZ'), offset: 0, seq: 4_000_000_000 });
    write(writer, Buffer.from('user:42'), Buffer.alloc(0), 7, { kind: RecordKind.GAP, epoch: Buffer.alloc(0), offset: 0 });
    assert.deepEqual(drainAll(reader).map((r) => ({ ...r, body: r.body.toString() })), [
      { kind: RecordKind.MESSAGE, topic: 'user:42', epoch: 'AbCdEfGh', offset: 2 ** 40 + 7, seq: 0, body: '{"topic": "user:42", "data": 1}', at: 5.5 },
      { kind: RecordKind.MARK, topic: 'user', epoch: 'XyZ', offset: 0, seq: 4_000_000_000, body: '', at: 6 },
      { kind: RecordKind.GAP, topic: 'user:42', epoch: '', offset: 0, seq: 0, body: '', at: 7 },
    ]);
  });

  test('wraps around many times without corrupting records of every size', () => {
    const capacity = MIN_RING_BYTES;
    const sab = createRingBuffer(capacity);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    const max = maxBodyFor(capacity, 3);
    let written = 0;
    let read = 0;
    // Sizes walk 0..max in steps of 7, so records land on every alignment and wrap offset.
    for (let size = 0; size <= max; size += 7) {
      const body = Buffer.alloc(size, size % 251);
      assert.ok(write(writer, Buffer.from('t:x'), body, size), `write of ${size} bytes into an empty ring`);
      written++;
      const [record] = drainAll(reader);
      assert.ok(record);
      assert.equal(record.topic, 't:x');
      assert.equal(record.at, size);
      assert.ok(record.body.equals(body), `body of ${size} bytes intact`);
      read++;
    }
    assert.equal(read, written);
  });

  test('a full ring refuses the write without blocking and accepts again once read', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    const body = Buffer.alloc(100, 1);
    let accepted = 0;
    while (write(writer, Buffer.from('a'), body, 0)) accepted++;
    assert.ok(accepted > 0 && accepted < MIN_RING_BYTES / 100);
    assert.equal(write(writer, Buffer.from('a'), body, 0), false, 'still full');
    const got = drainAll(reader);
    assert.equal(got.length, accepted, 'nothing written before the refusal was lost');
    assert.ok(write(writer, Buffer.from('a'), body, 0));
  });

  test('records over half the ring are refused (they could never fit after a wrap)', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    const writer = new RingWriter(sab);
    const longestEpoch = Buffer.alloc(255, 0x41);
    // maxBodyFor holds with the longest epoch; anything that makes the record pass half the ring is refused.
    assert.equal(write(writer, Buffer.from('a'), Buffer.alloc(maxBodyFor(MIN_RING_BYTES, 1)), 0, { epoch: longestEpoch }), true);
    assert.equal(write(writer, Buffer.from('a'), Buffer.alloc(maxBodyFor(MIN_RING_BYTES, 1) + 8), 0, { epoch: longestEpoch }), false);
    assert.equal(write(writer, Buffer.from('a'), Buffer.alloc(1), 0, { epoch: Buffer.alloc(256) }), false, 'an epoch over 255 bytes');
  });

  test('free-running u32 positions wrap past 2^32 without losing a record', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    // Start both positions just below 2^32 (as if 4 GiB had already passed through).
    const header = new Int32Array(sab, 0, 2);
    header[0] = -64; // WRITE = 0xffffffc0
    header[1] = -64; // READ
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    for (let i = 0; i < 200; i++) {
      const body = Buffer.from(`message ${i} `.repeat(i % 9));
      assert.ok(write(writer, Buffer.from('w'), body, i));
      const [record] = drainAll(reader);
      assert.ok(record && record.body.equals(body) && record.at === i, `record ${i}`);
    }
    assert.ok((Atomics.load(header, 0) >>> 0) < 0xffffffc0, 'the write position did wrap');
    assert.equal(writer.used(), 0);
  });

  test('drain honours maxRecords and resumes where it stopped', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    for (let i = 0; i < 10; i++) write(writer, Buffer.from('t'), Buffer.from(String(i)), i);
    assert.deepEqual(drainAll(reader, 4).map((r) => r.body.toString()), ['0', '1', '2', '3']);
    assert.deepEqual(drainAll(reader).map((r) => r.body.toString()), ['4', '5', '6', '7', '8', '9']);
  });

  test('notify is requested only on the idle -> busy transition', () => {
    const sab = createRingBuffer(MIN_RING_BYTES);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    write(writer, Buffer.from('t'), Buffer.from('1'), 0);
    assert.equal(writer.needsNotify, true);
    writer.notify();
    assert.equal(writer.needsNotify, false);
    write(writer, Buffer.from('t'), Buffer.from('2'), 0);
    assert.equal(writer.needsNotify, false, 'the reader has not caught up: it will see this record without a wake-up');
    drainAll(reader);
    write(writer, Buffer.from('t'), Buffer.from('3'), 0);
    assert.equal(writer.needsNotify, true);
  });

  test('a parked reader is woken by a write from another thread', async () => {
    const { Worker } = await import('node:worker_threads');
    const sab = createRingBuffer(MIN_RING_BYTES);
    const reader = new RingReader(sab);
    const waiting = reader.waitForData();
    assert.ok(waiting, 'nothing written yet: the reader parks');
    const ringUrl = new URL('../../src/gateway/shared/ring.js', import.meta.url).href;
    const worker = new Worker(
      `import { RingWriter } from ${JSON.stringify(ringUrl)};
       import { workerData } from 'node:worker_threads';
       const w = new RingWriter(workerData);
       const t = Buffer.from('from'), b = Buffer.from('worker'), e = Buffer.alloc(0);
       w.tryWrite({ kind: 0, topicSource: t, epochSource: e, bodySource: b, topicStart: 0, topicEnd: t.length,
         epochStart: 0, epochEnd: 0, bodyStart: 0, bodyEnd: b.length, offset: 1, seq: 0, receivedAt: 1 });
       w.notify();`,
      { eval: true, workerData: sab, type: 'module' } as ConstructorParameters<typeof Worker>[1],
    );
    assert.equal(await waiting, 'ok');
    assert.deepEqual(drainAll(reader).map((r) => `${r.topic}=${r.body}`), ['from=worker']);
    await worker.terminate();
  });
});
