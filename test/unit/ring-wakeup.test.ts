/**
 * The ring across two real threads: a reader that parks with Atomics.waitAsync whenever it has caught
 * up must always be woken by the writer's next batch (a lost wake-up stalls a worker for good).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { RecordKind, RingWriter, createRingBuffer } from '../../src/gateway/shared/ring.js';

const RING_URL = new URL('../../src/gateway/shared/ring.js', import.meta.url).href;
const TOTAL = 1_000_000;

// The reader the way the gateway's delivery loop uses it: drain a batch, yield, park when empty.
const READER = `
const { workerData, parentPort } = require('node:worker_threads');
const { setImmediate: yieldToEventLoop } = require('node:timers/promises');
import(workerData.ringUrl).then(async ({ RingReader }) => {
  const reader = new RingReader(workerData.ring);
  // A pending Atomics.waitAsync does not keep a thread alive (the gateway's sockets do): hold it open.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let count = 0;
  let sum = 0;
  const sink = (r) => { count++; sum += r.bytes.readUInt32LE(r.bodyOffset); };
  while (count < workerData.total) {
    if (reader.drain(sink, 256) > 0) { await yieldToEventLoop(); continue; }
    const wait = reader.waitForData();
    if (wait !== null) await wait;
  }
  clearInterval(keepAlive);
  parentPort.postMessage({ count, sum });
});
`;

test(`${TOTAL} records in irregular bursts all reach a parking reader`, async () => {
  const ring = createRingBuffer(64 * 1024);
  const writer = new RingWriter(ring);
  const worker = new Worker(READER, { eval: true, workerData: { ring, ringUrl: RING_URL, total: TOTAL } });
  const done = new Promise<{ count: number; sum: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const topic = Buffer.from('t');
  const body = Buffer.alloc(4);
  const record = {
    kind: RecordKind.MESSAGE, topicSource: topic, epochSource: topic, bodySource: body,
    topicStart: 0, topicEnd: 1, epochStart: 0, epochEnd: 0, bodyStart: 0, bodyEnd: 4, offset: 0, seq: 0, receivedAt: 0,
  };
  let written = 0;
  let expectedSum = 0;
  let burst = 1;
  // Bounded in time: a stalled reader leaves the ring full and the writer unable to finish.
  const deadline = Date.now() + 20_000;
  while (written < TOTAL && Date.now() < deadline) {
    // Burst sizes cycle from 1 to 300 so the reader is caught both idle and mid-drain.
    const end = Math.min(TOTAL, written + burst);
    while (written < end) {
      body.writeUInt32LE(written % 1000);
      if (!writer.tryWrite(record)) break; // full: let the reader catch up
      expectedSum += written % 1000;
      written++;
    }
    writer.notify();
    burst = (burst % 300) + 1;
    await yieldToEventLoop();
  }
  if (written < TOTAL) {
    await worker.terminate();
    assert.fail(`the writer could not finish (${written} of ${TOTAL}): the reader stopped reading (lost wake-up)`);
  }
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the reader stalled with records in the ring (lost wake-up)')), 20_000);
  });
  try {
    assert.deepEqual(await Promise.race([done, stalled]), { count: TOTAL, sum: expectedSum });

  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
});
