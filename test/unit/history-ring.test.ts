/**
 * The history ring against a plain array of Buffers: random appends of mixed sizes (tiny to 64 KB, so
 * the ring wraps, grows and shrinks) and drops, every body read back byte for byte.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HistoryRing } from '../../src/mpc/history-ring.js';

/** Deterministic PRNG (mulberry32): a failure replays. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('history ring', () => {
  test('holds what a plain array would, across wraps, growth and shrinking', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const next = random(seed);
      const capacity = 1 + Math.floor(next() * 120);
      const ring = new HistoryRing(capacity);
      const model: Array<{ body: Buffer; time: number }> = [];
      let largestRing = 0;
      let rebuiltSmaller = false;
      for (let step = 0; step < 20_000; step++) {
        // Phases of large and of small messages, so the ring must grow and later give room back.
        const large = Math.floor(step / 2000) % 2 === 1;
        if (model.length === capacity || (model.length > 0 && next() < 0.35)) {
          assert.equal(ring.dropOldest(), model.shift()!.body.length);
        } else {
          const size = large ? Math.floor(next() * 65_536) : Math.floor(next() * 200);
          const body = Buffer.alloc(size, step % 251);
          if (size >= 4) body.writeUInt32LE(step, 0);
          ring.push(body, step);
          model.push({ body, time: step });
        }
        if (ring.byteLength < largestRing) rebuiltSmaller = true;
        largestRing = Math.max(largestRing, ring.byteLength);
        assert.equal(ring.count, model.length);
        assert.equal(ring.liveBytes, model.reduce((n, m) => n + m.body.length, 0));
        // The ring stays within 4× what it holds (plus its minimum size).
        assert.ok(ring.byteLength <= Math.max(1024, 4 * (ring.liveBytes + 65_536)), `${ring.byteLength} B for ${ring.liveBytes} live`);
        if (step % 97 === 0 || model.length < 3) {
          for (let i = 0; i < model.length; i++) {
            assert.equal(ring.time(i), model[i]!.time);
            assert.equal(ring.length(i), model[i]!.body.length);
            assert.ok(ring.body(i).equals(model[i]!.body), `seed ${seed} step ${step} message ${i}`);
          }
        }
      }
      assert.ok(rebuiltSmaller || capacity < 4, `seed ${seed}: the ring never gave room back (largest ${largestRing} B)`);
    }
  });

  test('a body read out is a copy: later appends do not change it', () => {
    const ring = new HistoryRing(2);
    ring.push(Buffer.from('first'), 1);
    const read = ring.body(0);
    for (let i = 0; i < 50; i++) {
      ring.dropOldest();
      ring.push(Buffer.alloc(300, i), i);
    }
    assert.equal(read.toString(), 'first');
  });

  test('refuses to overfill: the store drops the oldest first', () => {
    const ring = new HistoryRing(1);
    ring.push(Buffer.from('a'), 1);
    assert.throws(() => ring.push(Buffer.from('b'), 2), /full/);
  });
});
