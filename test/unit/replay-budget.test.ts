/** A worker's replay budget: reservations admitted while they fit, in order, estimates replaced by real sizes. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { ReplayBudget, type Reservation } from '../../src/gateway/worker/replay-budget.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('ReplayBudget', () => {
  test('reservations past the budget wait, in arrival order, until earlier ones let go; the gauge follows', async () => {
    const stats = new Float64Array(WORKER_STATS_LENGTH);
    const budget = new ReplayBudget(10 * 1024, stats);
    const first = await budget.reserve(8); // estimate 8 × 1 KiB
    assert.equal(stats[WorkerStat.replayBytes], 8 * 1024);
    const admitted: string[] = [];
    const second = budget.reserve(4).then((r) => (admitted.push('second'), r));
    const third = budget.reserve(1).then((r) => (admitted.push('third'), r));
    await tick();
    assert.deepEqual(admitted, [], 'the third fits, but waits behind the second');
    assert.equal(stats[WorkerStat.replayWaits], 2);
    first.settle(8, 8 * 1024);
    first.release(1024); // one frame written: 7 KiB held, and 4 more do not fit in 10
    await tick();
    assert.deepEqual(admitted, []);
    first.release(2 * 1024); // 5 KiB held: the second (4) fits, then the third (1)
    await tick();
    assert.deepEqual(admitted, ['second', 'third']);
    assert.equal(stats[WorkerStat.replayBytes], 10 * 1024);
    first.end();
    (await second).end();
    (await third).end();
    assert.equal(stats[WorkerStat.replayBytes], 0);
  });

  test('one window is let through when nothing is held, however large; estimates learn from real sizes', async () => {
    const stats = new Float64Array(WORKER_STATS_LENGTH);
    const budget = new ReplayBudget(64 * 1024, stats);
    const huge = await budget.reserve(1000); // 1000 × 1 KiB estimated: over the budget, but nothing else is held
    assert.equal(stats[WorkerStat.replayBytes], 1000 * 1024);
    huge.settle(1000, 1000 * 16 * 1024); // the frames were 16 KiB each
    assert.equal(stats[WorkerStat.replayBytes], 1000 * 16 * 1024);
    huge.end();
    let next = null as Reservation | null;
    void budget.reserve(10).then((r) => (next = r));
    await tick();
    assert.ok(next !== null);
    // The estimate moved toward 16 KiB a frame (a mean of the old estimate and what arrived).
    assert.ok(stats[WorkerStat.replayBytes]! > 10 * 4 * 1024, `reserved ${stats[WorkerStat.replayBytes]} bytes for 10 frames`);
    next!.end();
    next!.end(); // ending twice frees nothing twice
    assert.equal(stats[WorkerStat.replayBytes], 0);
  });
});
