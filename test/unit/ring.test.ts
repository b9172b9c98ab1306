/**
 * The shared-memory ring with a real reader thread: the writer never waits, the reader parks with
 * Atomics.waitAsync whenever it has caught up, and no record may be stranded by a missed wake-up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { createRingBuffer, RingWriter } from '../../src/protocol/ring.js';

test('a parked reader thread is always woken: 100,000 records in random bursts all arrive', async () => {
  const ring = createRingBuffer(1 << 16); // small, so it fills and wraps often
  const counters = new SharedArrayBuffer(16);
  const seen = new Float64Array(counters);
  const worker = new Worker(new URL('../helpers/ring-reader-worker.js', import.meta.url), { workerData: { ring, counters } });
  try {
    const writer = new RingWriter(ring);
    const topic = Buffer.from('t');
    const total = 100_000;
    let sent = 0;
    let sum = 0;
    const deadline = Date.now() + 60_000;
    // Bursts of 0-4 records between event-loop turns: the reader parks and wakes thousands of times.
    while (sent < total && Date.now() < deadline) {
      const burst = Math.floor(Math.random() * 5);
      for (let i = 0; i < burst && sent < total; i++) {
        const fill = sent % 251;
        if (writer.tryWrite(topic, Buffer.alloc(20 + (sent % 200), fill), 0)) {
          sent++;
          sum += fill;
        }
        writer.notify();
      }
      await tick();
    }
    assert.equal(sent, total, 'the ring stayed full: the reader stopped reading (a lost wake-up)');
    while (seen[0]! < total && Date.now() < deadline) await sleep(10);
    assert.equal(seen[0], total);
    assert.equal(seen[1], sum, 'every body arrived intact');
    assert.equal(writer.used(), 0);
  } finally {
    await worker.terminate();
  }
});
