/** A port's connection budget: at the cap the oldest connection still in its handshake makes room; established ones stay. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { ConnectionBudget } from '../../src/descriptors.js';

/** What the budget uses of a socket: its address, destroy (which closes it) and 'close'. */
class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(readonly remotePort: number) {
    super();
  }
  readonly remoteAddress = '127.0.0.1';
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    queueMicrotask(() => this.emit('close'));
  }
}
const socket = (port: number) => new FakeSocket(port) as unknown as Socket & FakeSocket;

describe('ConnectionBudget', () => {
  test('at the cap the oldest connection in its handshake is closed for the new one; established ones are not; with none to shed the new one is refused', async () => {
    const reports: string[] = [];
    const budget = new ConnectionBudget('publisher', (port, address, limit, shed) => reports.push(`${port} ${address} ${limit} ${shed}`));
    budget.limit = 3;
    const [a, b, c, d, e, f] = [1, 2, 3, 4, 5, 6].map(socket);
    for (const s of [a!, b!, c!]) assert.equal(budget.admit(s), true);
    budget.established(a!);
    assert.equal(budget.admit(d!), true, 'b, the oldest in its handshake, makes room');
    assert.deepEqual([a!.destroyed, b!.destroyed, c!.destroyed], [false, true, false]);
    budget.established(c!);
    budget.established(d!);
    assert.equal(budget.admit(e!), false, 'everyone has completed the handshake: the new one goes');
    assert.equal(e!.destroyed, true);
    assert.deepEqual(budget.stats(), { open: 3, handshaking: 0, limit: 3, refused: 1, shed: 1 });
    assert.deepEqual(reports, ['publisher 127.0.0.1:2 3 true', 'publisher 127.0.0.1:5 3 false']);
    a!.destroy();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(budget.admit(f!), true, 'a slot freed by a close');
    assert.deepEqual(budget.stats(), { open: 3, handshaking: 1, limit: 3, refused: 1, shed: 1 });
  });
  test('an established connection that begins again (keep-alive\'s next request) is shed first again, in order from then; crowded at half the budget', () => {
    const budget = new ConnectionBudget('http');
    let crowdedCalls = 0;
    budget.onCrowded = () => crowdedCalls++;
    budget.limit = 4;
    const [a, b, c, d, e] = [1, 2, 3, 4, 5].map(socket);
    budget.admit(a!);
    assert.equal(budget.crowded, false);
    assert.equal(crowdedCalls, 0);
    budget.admit(b!);
    assert.equal(budget.crowded, true, 'half of 4');
    assert.equal(crowdedCalls, 1);
    for (const s of [a!, b!]) budget.established(s);
    budget.admit(c!);
    budget.established(c!);
    budget.unsettled(b!);
    budget.unsettled(a!);
    budget.unsettled(b!); // a trickle does not renew its place
    assert.deepEqual(budget.stats().handshaking, 2);
    budget.admit(d!);
    budget.admit(e!);
    assert.deepEqual([a!.destroyed, b!.destroyed, c!.destroyed, d!.destroyed], [false, true, false, false], 'b began again first: the first to go');
    assert.equal(crowdedCalls, 4);
    budget.unsettled(socket(9)); // not admitted: ignored
    assert.equal(budget.stats().handshaking, 3);
  });
});
