/**
 * Worker thread for test/unit/ring.test.ts: the gateway worker's reading pattern (drain, yield,
 * park with waitAsync when empty) counting records and summing a byte of each body.
 */
import { workerData } from 'node:worker_threads';
import { RingReader } from '../../src/protocol/ring.js';

const { ring, counters } = workerData as { ring: SharedArrayBuffer; counters: SharedArrayBuffer };
const reader = new RingReader(ring);
const out = new Float64Array(counters); // [records, sum of each body's first byte]
const sink = (_topic: string, bytes: Buffer, offset: number): void => {
  out[0]!++;
  out[1]! += bytes[offset]!;
};
// A parked waitAsync does not keep a worker's event loop alive (the gateway's has its server);
// the test terminates this thread.
setInterval(() => {}, 1 << 30);
for (;;) {
  if (reader.drain(sink, 256) > 0) {
    await new Promise(setImmediate);
    continue;
  }
  const wait = reader.waitForData();
  if (wait !== null) await wait;
}
