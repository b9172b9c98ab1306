import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RootRouting } from '../../src/gateway/worker/root-routing.js';
import type { WorkerEvent } from '../../src/gateway/shared/thread-protocol.js';

function setup() {
  const posted: WorkerEvent[] = [];
  return { posted, routing: new RootRouting((e) => posted.push(e)) };
}

describe('RootRouting (a worker waits for main to route a root before acknowledging)', () => {
  test('the first reference reports a root, the last reports it removed', () => {
    const { posted, routing } = setup();
    routing.acquire('a');
    routing.acquire('a');
    routing.release('a');
    assert.deepEqual(posted, [{ type: 'root-added', root: 'a', seq: 1 }]);
    routing.release('a');
    assert.deepEqual(posted.at(-1), { type: 'root-removed', root: 'a' });
  });

  test('whenRouted is immediate for routed or unknown roots, deferred for reported ones', () => {
    const { routing } = setup();
    let calls = 0;
    routing.whenRouted([], () => calls++);
    routing.whenRouted(['never-reported'], () => calls++);
    assert.equal(calls, 2);
    routing.acquire('a');
    routing.acquire('b');
    routing.whenRouted(['a', 'b', 'a'], () => calls++);
    routing.routed('a', 1);
    assert.equal(calls, 2, 'b is still pending');
    routing.routed('b', 2);
    assert.equal(calls, 3, 'called once, when both are routed');
    routing.whenRouted(['a', 'b'], () => calls++);
    assert.equal(calls, 4, 'routed roots answer at once');
  });

  test('an answer to an earlier report does not release waiters of a newer one', () => {
    const { posted, routing } = setup();
    routing.acquire('a'); // seq 1
    routing.release('a');
    routing.acquire('a'); // seq 2, reported before main answered seq 1
    let routed = false;
    routing.whenRouted(['a'], () => (routed = true));
    routing.routed('a', 1);
    assert.equal(routed, false, 'main may not have processed the second report yet');
    routing.routed('a', 2);
    assert.equal(routed, true);
    assert.deepEqual(posted.map((e) => e.type), ['root-added', 'root-removed', 'root-added']);
  });
});
