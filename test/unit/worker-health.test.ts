/** Main-thread health pieces: the stall watch over the workers' heartbeats, and the socket budget's inputs. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../../src/gateway/shared/counters.js';
import { openFilesLimit, socketBudget } from '../../src/descriptors.js';
import { StallWatch } from '../../src/gateway/main/stall-watch.js';
import type { WorkerSlot } from '../../src/gateway/main/worker-pool.js';

const slot = (index: number) => ({ index, up: true, stalled: false, stats: new Float64Array(WORKER_STATS_LENGTH) }) as unknown as WorkerSlot;

describe('StallWatch', () => {
  test('a worker whose heartbeat stops for stallMs is stalled (once counted, lag set); a beat clears it', () => {
    const slots = [slot(0), slot(1)];
    const watch = new StallWatch(slots, 2000, createLogger('test', 'silent'));
    watch.check(0);
    for (const t of [1000, 2000, 3000]) {
      slots[1]!.stats[WorkerStat.heartbeats]++;
      watch.check(t);
    }
    assert.deepEqual(watch.stalled(), [0]);
    watch.check(4000);
    assert.equal(slots[0]!.stats[WorkerStat.stalls], 1, 'one episode, counted once');
    assert.equal(slots[0]!.stats[WorkerStat.eventLoopLagMs], 4000);
    slots[0]!.stats[WorkerStat.heartbeats]++;
    watch.check(4500);
    assert.deepEqual(watch.stalled(), []);
  });

  test('a worker that is not up is never stalled, and its clock starts when it is', () => {
    const s = slot(0);
    const watch = new StallWatch([s], 2000, createLogger('test', 'silent'));
    s.up = false;
    watch.check(0);
    watch.check(10_000);
    assert.deepEqual(watch.stalled(), []);
    s.up = true;
    watch.check(11_000);
    assert.deepEqual(watch.stalled(), []);
    watch.check(13_000);
    assert.deepEqual(watch.stalled(), [0]);
  });
});

describe('socket budget', () => {
  test('reads the soft open-files limit from /proc/self/limits text', () => {
    const limits = 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n';
    assert.equal(openFilesLimit(limits), 1024);
    assert.equal(openFilesLimit('Max open files            unlimited            unlimited            files\n'), null);
  });

  test('the limit less what is open less the reserve; ERR_DESCRIPTOR_LIMIT when nothing is left', () => {
    const budget = socketBudget(10);
    assert.ok(budget !== null, 'the tests run on Linux, where /proc tells');
    assert.equal(budget.limit, budget.fileLimit - budget.inUse - 10);
    assert.throws(() => socketBudget(budget.fileLimit), { code: 'ERR_DESCRIPTOR_LIMIT', message: /raise ulimit -n/ });
  });
});
