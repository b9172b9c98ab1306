/**
 * A Publisher that is never closed does not keep its process alive: a script that publishes and
 * ends exits by itself, and what it sent is still delivered (ZeroMQ's linger flushes it at exit).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { useSystem } from '../helpers/system.js';

const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));

describe('Publisher lifecycle', () => {
  const sys = useSystem();

  test('a script that never calls close() exits by itself after publishing, and the message arrives', async () => {
    const client = await sys.connect();
    await client.subscribe('bye');
    const script = `
      import { Publisher } from ${JSON.stringify(INDEX)};
      const publisher = new Publisher('127.0.0.1', ${sys.mpc.publisherPort});
      await publisher.ready({ topic: 'bye', timeoutMs: 10000 });
      await publisher.send('bye', 'sent by a script that forgot close()');
      console.log('published');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    // Before the fix the script never ended: the subscription watcher's pending receive held the event
    // loop. A bound so that a regression fails instead of hanging the suite.
    const bound = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise((resolve) => child.once('exit', resolve));
    clearTimeout(bound);
    assert.equal(code, 0, output);
    assert.match(output, /published/);
    assert.equal(await client.waitFor((m) => m.includes('forgot close')), '{"topic": "bye", "data": "sent by a script that forgot close()"}');
  });
});
