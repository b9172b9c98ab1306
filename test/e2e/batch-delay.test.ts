/**
 * Delivery writes each socket once per batch: the run of consecutive messages due to it as one
 * view of the batch buffer, and a socket that misses a message in the middle gets its runs in
 * order. A coalescing window (--batch-delay-ms) puts a quick burst into one batch, so every shape
 * of run (whole batch, single messages, gaps) is exercised; the assertions hold however the
 * messages happen to be batched.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBody } from '../../src/index.js';
import { once, startCli } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

describe('batched delivery (one worker, --batch-delay-ms 200)', () => {
  const sys = useSystem({ gatewayArgs: ['--workers', '1', '--batch-delay-ms', '200'] });

  test('runs with gaps, whole batches and single messages arrive complete, in order, once', async () => {
    const connect = async (...topics: string[]) => {
      const client = await TestClient.connect(sys.gateway.url);
      sys.clients.push(client);
      await client.subscribe(...topics);
      return client;
    };
    const onA = await connect('bt:a');
    const onB = await connect('bt:b');
    const onBoth = await connect('bt:a', 'bt:b');
    const onC = await connect('bt:c');
    await sys.publisher.ready({ topic: 'bt', timeoutMs: 5000 });

    const burst: Array<[string, string]> = [
      ['bt:a', 'a1'], ['bt:b', 'b1'], ['bt:a', 'a2'], ['bt', 'all1'], ['bt:b', 'b2'], ['bt:a', 'a3'], ['bt:c', 'c1'], ['bt', 'end'],
    ];
    await Promise.all(burst.map(([topic, data]) => sys.publisher.send(topic, data)));
    await Promise.all([onA, onB, onBoth, onC].map((c) => c.waitFor((m) => m.includes('"end"'))));

    const bodies = (...items: Array<[string, string]>) => items.map(([t, d]) => encodeBody(t, d));
    assert.deepEqual(onA.bodies(), bodies(['bt:a', 'a1'], ['bt:a', 'a2'], ['bt', 'all1'], ['bt:a', 'a3'], ['bt', 'end']));
    assert.deepEqual(onB.bodies(), bodies(['bt:b', 'b1'], ['bt', 'all1'], ['bt:b', 'b2'], ['bt', 'end']));
    assert.deepEqual(onBoth.bodies(), bodies(['bt:a', 'a1'], ['bt:b', 'b1'], ['bt:a', 'a2'], ['bt', 'all1'], ['bt:b', 'b2'], ['bt:a', 'a3'], ['bt', 'end']));
    assert.deepEqual(onC.bodies(), bodies(['bt', 'all1'], ['bt:c', 'c1'], ['bt', 'end']));

    const stats = await sys.gateway.stats();
    assert.equal(stats.deliveries, 5 + 4 + 7 + 3, 'deliveries count every message written, not every write');
  });

  test('--batch-delay-ms is validated like every option', async () => {
    const bad = startCli('gateway', ['-r', `127.0.0.1:${sys.mpc.gatewayPort}`, '-p', '0', '--admin-port=-1', '--batch-delay-ms', '5000']);
    const closed = once(bad.child, 'close'); // stdio drained: stderr fully read
    assert.equal(await bad.exited, 2);
    await closed;
    assert.match(bad.stderr.join('\n'), /--batch-delay-ms must be an integer from 0 to 1000, got 5000/);
  });
});
