/**
 * Worker health (issue 10, item 7), provoked for real through the test hooks (`--enable-test-hooks`):
 * - a stalled worker (its event loop blocked) used to look healthy — /healthz 200, its event-loop-lag
 *   gauge frozen at the last value. Its 1 s heartbeat in shared memory stops; main notices.
 * - the restart backoff never started over: after six restarts every restart waited 5 s, even after
 *   hours of health. A worker that ran --restart-backoff-reset-ms restarts after 0.1 s again.
 * The other worker's clients never notice either.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { clientsOnEveryWorker, metricValue, metricsText, until } from '../helpers/probes.js';
import type { GatewayProcess } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import type { TestClient } from '../helpers/ws-client.js';
import type { Publisher } from '../../src/index.js';

const hook = (gateway: GatewayProcess, worker: number, action: string) =>
  fetch(`http://127.0.0.1:${gateway.adminPort}/test-hooks/worker/${worker}/${action}`, { method: 'POST' });

async function roundTrip(publisher: Publisher, client: TestClient, topic: string, text: string): Promise<void> {
  const from = client.messages.length;
  await publisher.send(topic, text);
  await client.waitFor((m) => m.includes(`"${text}"`), from, 15_000);
}

const healthz = async (gateway: GatewayProcess) => {
  const res = await gateway.admin('/healthz');
  return { status: res.status, body: (await res.json()) as { status: string; workersUp: number; stalledWorkers: number[] } };
};

describe('worker health: a stalled worker is reported', () => {
  const sys = useSystem({ gatewayArgs: ['--enable-test-hooks', '--worker-stall-ms', '2000'] });

  after(async () => {
    await hook(sys.gateway, 0, 'release').catch(() => {});
  });

  test('/healthz 503 naming it, tormq_worker_stalled 1, its lag gauge moves, the stall counted; the other worker serves on; released, all is well again', async () => {
    const byWorker = await clientsOnEveryWorker(sys.gateway, 'stall-', 2, sys.clients);
    const { client: stalled, root: stalledRoot } = byWorker.get(0)![0]!;
    const { client: healthy, root: healthyRoot } = byWorker.get(1)![0]!;
    for (const root of [stalledRoot, healthyRoot]) await sys.publisher.ready({ topic: root, timeoutMs: 10_000 });
    assert.equal((await healthz(sys.gateway)).status, 200);

    assert.equal((await hook(sys.gateway, 0, 'stall')).status, 200);
    await until('/healthz reports the stall', async () => (await healthz(sys.gateway)).status === 503, 15_000);
    const { body } = await healthz(sys.gateway);
    assert.equal(body.status, 'unavailable');
    assert.deepEqual(body.stalledWorkers, [0]);
    assert.equal(body.workersUp, 2, 'its thread is alive: only the heartbeat tells');
    const metrics = await metricsText(sys.gateway);
    assert.equal(metricValue(metrics, 'tormq_worker_stalled', { worker: '0' }), 1);
    assert.equal(metricValue(metrics, 'tormq_worker_stalled', { worker: '1' }), 0);
    assert.equal(metricValue(metrics, 'tormq_worker_stalls_total', { worker: '0' }), 1);
    assert.ok(metricValue(metrics, 'tormq_event_loop_lag_seconds', { worker: '0' })! >= 2, 'the lag gauge shows the silence, not its last value');
    assert.ok(sys.gateway.logs.some((l) => l.msg === 'worker stalled: its event loop has not run for too long' && l.worker === 0 && l.level === 50));
    // The other worker's clients are served meanwhile.
    await roundTrip(sys.publisher, healthy, healthyRoot, 'while the other one is stalled');
    const beats = (await sys.gateway.stats()).workers.map((w) => w.heartbeats as number);

    assert.equal((await hook(sys.gateway, 0, 'release')).status, 200);
    await until('/healthz 200 again', async () => (await healthz(sys.gateway)).status === 200, 15_000);
    assert.deepEqual((await healthz(sys.gateway)).body.stalledWorkers, []);
    // What was published for it meanwhile waited in its ring; it serves again.
    await roundTrip(sys.publisher, stalled, stalledRoot, 'after the stall');
    const stats = await sys.gateway.stats();
    assert.ok((stats.workers[0]!.heartbeats as number) > beats[0]!, 'its heartbeat moves again');
    assert.equal(stats.workers[0]!.stalls, 1);
    assert.equal((stats.workers[0] as Record<string, unknown>).stalled, false);
    assert.deepEqual(stats.workers.map((w) => w.restarts), [0, 0], 'reported, not restarted');
    assert.equal(metricValue(await metricsText(sys.gateway), 'tormq_worker_stalled', { worker: '0' }), 0);
    assert.equal(stalled.closeCode, null);
    assert.equal(healthy.closeCode, null);
  });
});

describe('worker health: the restart backoff starts over after a healthy run', () => {
  const RESET_MS = 4000;
  const sys = useSystem({ gatewayArgs: ['--enable-test-hooks', '--restart-backoff-reset-ms', String(RESET_MS)] });
  let survivor: { client: TestClient; root: string };

  before(async () => {
    const byWorker = await clientsOnEveryWorker(sys.gateway, 'backoff-', 2, sys.clients);
    survivor = byWorker.get(1)![0]!;
    await sys.publisher.ready({ topic: survivor.root, timeoutMs: 10_000 });
  });

  const restartDelays = () => sys.gateway.logs.filter((l) => l.msg === 'worker died; restarting' && l.worker === 0).map((l) => l.restartInMs);
  const crashAndWait = async (restarts: number) => {
    assert.equal((await hook(sys.gateway, 0, 'crash')).status, 200);
    await until(`worker 0 restarted (${restarts})`, async () => {
      const w = (await sys.gateway.stats()).workers[0]!;
      return w.up && w.restarts === restarts;
    }, 20_000);
  };

  test('deaths in a row back off 0.1, 0.25, 0.5, 1 s; after running the reset period the next restart waits 0.1 s again; a dead worker leaves no socket counted', async () => {
    // Crashed as soon as it is back: each run far shorter than the reset period.
    for (let i = 1; i <= 4; i++) await crashAndWait(i);
    assert.deepEqual(restartDelays(), [100, 250, 500, 1000]);
    assert.equal((await sys.gateway.stats()).workers[0]!.restartBackoffMs, 2000, 'the next one would wait 2 s');

    // /stats says when the current thread has run long enough: the readiness signal, no fixed sleep.
    await until('the backoff starts over', async () => (await sys.gateway.stats()).workers[0]!.restartBackoffMs === 100, RESET_MS + 10_000);
    await crashAndWait(5);
    assert.deepEqual(restartDelays(), [100, 250, 500, 1000, 100]);
    // And it grows again from there. This time the thread exits at once, with connections: none of
    // their 'close' listeners runs, and the gateway-wide socket counts must forget them all the same.
    const again = await clientsOnEveryWorker(sys.gateway, 'backoff-again-', 2, sys.clients);
    assert.equal((await hook(sys.gateway, 0, 'exit')).status, 200);
    for (const { client } of again.get(0)!) await client.closed;
    await until('worker 0 restarted (6)', async () => {
      const w = (await sys.gateway.stats()).workers[0]!;
      return w.up && w.restarts === 6;
    }, 20_000);
    assert.deepEqual(restartDelays(), [100, 250, 500, 1000, 100, 250]);
    const open = sys.clients.filter((c) => c.closeCode === null).length;
    await until(`socket counts back to the ${open} open clients`, async () => {
      const stats = (await sys.gateway.stats()) as unknown as { openSockets: number; sockets: number };
      return stats.openSockets === open && stats.sockets === open;
    });

    await roundTrip(sys.publisher, survivor.client, survivor.root, 'the other worker never noticed');
    assert.equal(survivor.client.closeCode, null);
    assert.equal((await sys.gateway.stats()).workers[1]!.restarts, 0);
    assert.equal(metricValue(await metricsText(sys.gateway), 'tormq_worker_restarts_total', { worker: '0' }), 6);
  });
});
