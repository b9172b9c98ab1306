import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../../src/gateway/worker/token-bucket.js';

describe('TokenBucket', () => {
  test('allows a full burst at once, then refuses', () => {
    const bucket = new TokenBucket(10, 5, 0);
    for (let i = 0; i < 5; i++) assert.equal(bucket.take(0), true, `frame ${i}`);
    assert.equal(bucket.take(0), false);
  });

  test('refills at the rate, never beyond the burst', () => {
    const bucket = new TokenBucket(10, 5, 0);
    for (let i = 0; i < 5; i++) bucket.take(0);
    assert.equal(bucket.take(50), false); // half a token
    assert.equal(bucket.take(100), true); // one token after 100 ms at 10/s
    assert.equal(bucket.take(100), false);
    // A long pause refills to the burst only.
    let taken = 0;
    while (bucket.take(60_000)) taken++;
    assert.equal(taken, 5);
  });

  test('a clock that does not move (or goes back) adds nothing', () => {
    const bucket = new TokenBucket(1000, 1, 100);
    assert.equal(bucket.take(100), true);
    assert.equal(bucket.take(90), false);
    assert.equal(bucket.take(90), false);
    assert.equal(bucket.take(91), true); // 1 ms at 1000/s from the last reading
  });
});
