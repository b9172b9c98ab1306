/**
 * The bench's ws baseline (bench/load/baseline-server.ts), started as the bench starts it
 * (bench/load/processes.ts, unpinned) on an MPC's plain port, delivers what is published to a
 * subscribed client. It used to read the MPC's gateway port; when that became the tormq link, the
 * bench went on comparing tormq with a baseline that delivered nothing, and no test noticed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBaseline, startMpc, stopAll } from '../../bench/load/processes.js';
import { Publisher } from '../../src/sdk/publisher.js';
import { TestClient } from '../helpers/ws-client.js';

test('the bench baseline delivers a published message to its subscriber', async () => {
  let publisher: Publisher | null = null;
  try {
    const mpc = await startMpc(null, [], ['--plain-port', '0']);
    assert.ok(mpc.plainPort !== null, 'the MPC reports its plain port');
    const baseline = await startBaseline(null, mpc.plainPort);
    const client = await TestClient.connect(baseline.url);
    await client.subscribe('bb:1');
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
    await publisher.ready({ timeoutMs: 10_000 });
    // The baseline's SUB may join the plain port after the first messages (pub/sub drops what comes
    // before): publish until one arrives, a bounded number of times.
    let received: string | null = null;
    for (let i = 0; i < 50 && received === null; i++) {
      await publisher.send('bb:1', { n: i });
      received = await client.waitFor((m) => m.includes('"bb:1"'), 0, 200).catch(() => null);
    }
    assert.ok(received !== null, 'a message published on bb:1 reached the baseline\'s subscriber');
    assert.match(received, /"n":\d+/);
    await client.close();
  } finally {
    await publisher?.close();
    await stopAll();
  }
});
