import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InterestRouting, NOT_ROUTED, type Position } from '../../src/gateway/worker/interest-routing.js';
import type { WorkerEvent } from '../../src/gateway/shared/thread-protocol.js';

function setup() {
  const posted: WorkerEvent[] = [];
  return { posted, routing: new InterestRouting((e) => posted.push(e)) };
}

const at = (offset: number): Position => ({ epoch: 'E', offset });

describe('InterestRouting (a worker waits for main to mark a topic before acknowledging)', () => {
  test('the first reference reports a topic, the last reports it removed', () => {
    const { posted, routing } = setup();
    routing.acquire('a');
    routing.acquire('a');
    routing.release('a');
    assert.deepEqual(posted, [{ type: 'interest-added', topic: 'a', seq: 1 }]);
    routing.release('a');
    assert.deepEqual(posted.at(-1), { type: 'interest-removed', topic: 'a' });
  });

  test('whenRouted is immediate for routed or unknown topics, deferred for reported ones', () => {
    const { routing } = setup();
    let calls = 0;
    routing.whenRouted([], () => calls++);
    routing.whenRouted(['never-reported'], () => calls++);
    assert.equal(calls, 2);
    routing.acquire('a');
    routing.acquire('b');
    routing.whenRouted(['a', 'b', 'a'], () => calls++);
    routing.marked('a', 1, at(0));
    assert.equal(calls, 2, 'b is still pending');
    routing.marked('b', 2, at(3));
    assert.equal(calls, 3, 'called once, when both are marked');
    routing.whenRouted(['a', 'b'], () => calls++);
    assert.equal(calls, 4, 'marked topics answer at once');
  });

  test('a mark for an earlier report does not release waiters of a newer one', () => {
    const { posted, routing } = setup();
    routing.acquire('a'); // seq 1
    routing.release('a');
    routing.acquire('a'); // seq 2, reported before main answered seq 1
    let routed = false;
    routing.whenRouted(['a'], () => (routed = true));
    routing.marked('a', 1, at(0));
    assert.equal(routed, false, 'main may not have processed the second report yet');
    routing.marked('a', 2, at(0));
    assert.equal(routed, true);
    assert.deepEqual(posted.map((e) => e.type), ['interest-added', 'interest-removed', 'interest-added']);
  });

  test('positions: a pending report\'s mark serves; a routed topic gets a mark request; callers of one request share its mark', () => {
    const { posted, routing } = setup();
    routing.acquire('a'); // reported, seq 1
    routing.marked('a', 1, at(5)); // routed
    routing.acquire('b'); // reported, seq 2, pending
    posted.length = 0;
    const seen: Array<Map<string, Position>> = [];
    routing.positions(['a', 'b'], (p) => seen.push(p));
    routing.positions(['a'], (p) => seen.push(p));
    assert.deepEqual(posted, [{ type: 'mark-request', topic: 'a', seq: 3 }], 'one request for a; b waits for its report');
    routing.marked('a', 3, at(9));
    assert.equal(seen.length, 1, 'the second caller only needed a');
    assert.deepEqual([...seen[0]!], [['a', at(9)]]);
    routing.marked('b', 2, at(0));
    assert.deepEqual([...seen[1]!].sort(), [['a', at(9)], ['b', at(0)]]);
    // Not routed any more by the time main answered: answered all the same.
    routing.positions(['a'], (p) => seen.push(p));
    routing.marked('a', 4, NOT_ROUTED);
    assert.equal(seen[2]!.get('a'), NOT_ROUTED);
  });
});
