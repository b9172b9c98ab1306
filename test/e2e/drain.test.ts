/**
 * Hardening: graceful drain. On SIGTERM/SIGINT the gateway stops accepting, closes every client with
 * 1001 in batches spread over --drain-ms (no reconnect storm), and exits 0.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { clientsOnEveryWorker, until } from '../helpers/probes.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';

/** Tries to open a WebSocket; resolves with how it was refused (or 'opened'). */
function tryConnect(url: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.terminate();
      resolve('opened');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(`http ${res.statusCode}`);
      ws.terminate();
    });
    ws.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('hardening: drain on SIGTERM / SIGINT', () => {
  let mpc: MpcProcess;
  const gateways: GatewayProcess[] = [];
  const clients: TestClient[] = [];

  before(async () => {
    mpc = await startMpcProcess();
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const g of gateways) await g.stop();
    await mpc?.stop();
  });

  test('SIGTERM: stops accepting, closes every client with 1001 in batches, exits 0', async () => {
    const gateway = await startGatewayProcess(mpc.gatewayPort, ['--drain-ms', '2000']);
    gateways.push(gateway);
    const byWorker = await clientsOnEveryWorker(gateway, 'drain-', 2, clients);
    while (clients.length < 24) {
      const client = await TestClient.connect(gateway.url);
      clients.push(client);
    }
    const all = [...clients];
    // The 101 reaches the client a moment before the worker has registered the session: poll.
    await until('all clients registered', async () => (await gateway.stats()).connections === all.length);
    assert.equal(byWorker.size, 2);

    gateway.child.kill('SIGTERM');
    for (const worker of [0, 1]) await gateway.waitForLog((l) => l.msg === 'worker draining' && l.worker === worker);
    // Both workers have stopped accepting: a new connection is refused (503 or the port is closed).
    const refused = await tryConnect(gateway.url);
    assert.ok(['http 503', 'ECONNREFUSED', 'ECONNRESET'].includes(refused), `new connection during drain: ${refused}`);
    // The admin port stays up until the clients are gone (the 2 s window), reporting the drain.
    const health = await gateway.admin('/healthz');
    assert.equal(health.status, 503, 'not healthy while draining');
    assert.equal(((await health.json()) as { draining: boolean }).draining, true);

    const codes = await Promise.all(all.map((c) => c.closed));
    assert.deepEqual(codes, all.map(() => 1001));
    assert.ok(all.every((c) => c.closeReason === 'gateway shutting down'));
    assert.equal(await gateway.exited, 0);
    // Spread: each worker closed its clients in more than one batch.
    const drained = gateway.logs.filter((l) => l.msg === 'worker drained');
    assert.equal(drained.length, 2);
    for (const line of drained) assert.ok((line.batches as number) > 1, JSON.stringify(line));
    assert.ok(gateway.logs.some((l) => l.msg === 'shutdown requested' && l.signal === 'SIGTERM'));
    assert.ok(gateway.logs.some((l) => l.msg === 'stopped'));
    clients.length = 0;
  });

  test('SIGINT drains the same way and exits 0', async () => {
    const gateway = await startGatewayProcess(mpc.gatewayPort, ['--drain-ms', '200']);
    gateways.push(gateway);
    const a = await TestClient.connect(gateway.url);
    const b = await TestClient.connect(gateway.url);
    gateway.child.kill('SIGINT');
    assert.deepEqual(await Promise.all([a.closed, b.closed]), [1001, 1001]);
    assert.equal(await gateway.exited, 0);
    assert.ok(gateway.logs.some((l) => l.msg === 'shutdown requested' && l.signal === 'SIGINT'));
  });
});
