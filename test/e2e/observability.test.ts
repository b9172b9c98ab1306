/**
 * Hardening: what operators see. /metrics carries every series the issue lists, per worker (label
 * `worker`) and gateway-wide; /stats has the same numbers with totals; logs are structured JSON lines
 * with levels, set by --log-level, and nothing is logged per message.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { metricValue, metricsText } from '../helpers/probes.js';
import { startCli, startGatewayProcess } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

const PER_WORKER = [
  'tormq_connections',
  'tormq_subscriptions',
  'tormq_worker_messages_total',
  'tormq_deliveries_total',
  'tormq_ring_drops_total',
  'tormq_ring_used_bytes',
  'tormq_ring_capacity_bytes',
  'tormq_slow_client_drops_total',
  'tormq_slow_client_disconnects_total',
  'tormq_bad_frames_total',
  'tormq_oversize_frames_total',
  'tormq_rate_limited_frames_total',
  'tormq_rate_limit_disconnects_total',
  'tormq_heartbeat_terminations_total',
  'tormq_connections_accepted_total',
  'tormq_connections_rejected_total',
  'tormq_event_loop_lag_seconds',
  'tormq_worker_heap_used_bytes',
  'tormq_worker_heap_committed_bytes',
  'tormq_worker_young_generation_bytes',
  'tormq_worker_up',
  'tormq_worker_restarts_total',
  'tormq_delivery_latency_seconds_count',
  'tormq_delivery_latency_seconds_sum',
];

describe('hardening: observability', () => {
  const sys = useSystem({ gatewayArgs: ['--log-level', 'debug'] });

  test('/metrics has every listed series per worker and gateway-wide, consistent with /stats', async () => {
    for (let i = 0; i < 6; i++) sys.clients.push(await TestClient.connect(sys.gateway.url));
    for (const [i, c] of sys.clients.entries()) await c.subscribe('obs', `obs:${i}`);
    await sys.publisher.ready({ topic: 'obs', timeoutMs: 10_000 });
    for (let i = 0; i < 20; i++) await sys.publisher.send('obs', i);
    await Promise.all(sys.clients.map((c) => c.waitFor((m) => m.includes('"data": 19'))));

    const text = await metricsText(sys.gateway);
    for (const name of PER_WORKER) {
      for (const worker of ['0', '1']) assert.notEqual(metricValue(text, name, { worker }), undefined, `${name}{worker="${worker}"}`);
      assert.match(text, new RegExp(`^# HELP ${name.replace(/_(count|sum)$/, '')} \\S`, 'm'), `${name} has help text`);
    }
    for (const worker of ['0', '1']) {
      for (const le of ['0.0001', '0.001', '0.01', '0.1', '1', '+Inf']) {
        assert.notEqual(metricValue(text, 'tormq_delivery_latency_seconds_bucket', { worker, le }), undefined, `latency le=${le}`);
      }
    }
    for (const reason of ['bad_frames', 'oversized', 'unrouted', 'duplicate']) {
      assert.equal(metricValue(text, 'tormq_publish_drops_total', { reason }), 0, reason);
    }
    for (const name of ['tormq_upstream_gaps_total', 'tormq_upstream_gaps_repaired_total', 'tormq_upstream_gaps_unrepaired_total', 'tormq_upstream_subscribe_retries_total']) {
      assert.equal(metricValue(text, name), 0, name);
    }
    const stats = await sys.gateway.stats();
    const sum = (name: string) => ['0', '1'].reduce((n, worker) => n + metricValue(text, name, { worker })!, 0);
    // Gateway-wide: in one series, or the sum over workers, equal to /stats.
    assert.equal(metricValue(text, 'tormq_messages_in_total'), stats.messagesIn);
    assert.equal(stats.messagesIn, 20);
    assert.equal(metricValue(text, 'tormq_gateway_connections'), 6);
    assert.equal(sum('tormq_connections'), 6);
    assert.equal(sum('tormq_subscriptions'), 12);
    assert.equal(sum('tormq_deliveries_total'), 6 * 20);
    assert.equal(stats.deliveries, 6 * 20);
    assert.equal((stats as unknown as { totals: { subscriptions: number } }).totals.subscriptions, 12);
    // Every delivered message went through the latency histogram of the worker that wrote it.
    const latencyCount = sum('tormq_delivery_latency_seconds_count');
    assert.equal(latencyCount, sum('tormq_worker_messages_total'));
    assert.ok(latencyCount >= 20);
    assert.equal(metricValue(text, 'tormq_mpc_up', { endpoint: `tcp://127.0.0.1:${sys.mpc.gatewayPort}` }), 1);
    // Subscribed upstream exactly: obs and obs:0 … obs:5.
    assert.equal(metricValue(text, 'tormq_upstream_topics'), 7);
    // Process metrics of the gateway (main thread event loop, memory) come from prom-client's defaults.
    assert.notEqual(metricValue(text, 'tormq_process_resident_memory_bytes'), undefined);
    assert.notEqual(metricValue(text, 'tormq_nodejs_eventloop_lag_p99_seconds'), undefined);
  });

  test('logs are JSON lines with levels; nothing is logged per message; --log-level debug shows debug lines', async () => {
    for (const line of sys.gateway.logs) {
      assert.equal(typeof line.level, 'number', JSON.stringify(line));
      assert.match(String(line.time), /^\d{4}-\d\d-\d\dT/);
      assert.equal(typeof line.msg, 'string');
    }
    assert.ok(sys.gateway.logs.some((l) => l.msg === 'worker listening' && l.worker === 0));
    const client = await TestClient.connect(sys.gateway.url);
    sys.clients.push(client);
    await client.subscribe('quiet');
    await sys.publisher.ready({ topic: 'quiet', timeoutMs: 10_000 });
    const before = sys.gateway.logs.length;
    for (let i = 0; i < 300; i++) await sys.publisher.send('quiet', i);
    await client.waitFor((m) => m.includes('"data": 299'));
    assert.ok(sys.gateway.logs.length - before < 5, `${sys.gateway.logs.length - before} log lines for 300 messages`);
    // A client protocol error is a debug line (visible here with --log-level debug).
    const big = await TestClient.connect(sys.gateway.url);
    big.send('x'.repeat(70_000));
    assert.equal(await big.closed, 1009);
    const line = await sys.gateway.waitForLog((l) => l.msg === 'client protocol error');
    assert.equal(line.level, 20);
    assert.equal(line.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
  });

  test('--worker-young-mb holds each worker\'s young generation (V8 grows it to 8-32 MB and keeps it: ≈ 4 KB per idle connection)', async () => {
    const young = async (extra: string[]) => {
      const gateway = await startGatewayProcess(sys.mpc.gatewayPort, extra);
      try {
        // A burst of connections and subscriptions, the allocation that grows V8's default young generation.
        const clients = await Promise.all(Array.from({ length: 100 }, () => TestClient.connect(gateway.url)));
        await Promise.all(clients.map((c, i) => c.subscribe(`young:${i}`)));
        await Promise.all(clients.map((c) => c.close()));
        // The gauges are sampled once a second, with the heartbeat.
        const heartbeats = (await gateway.stats()).workers.map((w) => w.heartbeats);
        let stats = await gateway.stats();
        while (stats.workers.some((w, i) => w.heartbeats < heartbeats[i]! + 2)) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          stats = await gateway.stats();
        }
        for (const w of stats.workers) {
          assert.ok(w.heapUsedBytes > 1e6 && w.heapCommittedBytes >= w.heapUsedBytes, JSON.stringify(w));
          assert.ok(w.youngGenerationBytes > 0 && w.youngGenerationBytes < w.heapCommittedBytes, JSON.stringify(w));
        }
        return stats.workers.map((w) => w.youngGenerationBytes);
      } finally {
        await gateway.stop();
      }
    };
    for (const bytes of await young(['--worker-young-mb', '2'])) assert.ok(bytes <= 2 * 2 ** 20, `young generation ${bytes} B at --worker-young-mb 2`);
    for (const bytes of await young(['--worker-young-mb', '0'])) assert.ok(bytes > 2 * 2 ** 20, `young generation ${bytes} B with V8's default`);
  });

  test('a bad --log-level or limit flag exits 2 with a clear message', async () => {
    for (const [flag, value, message] of [
      ['--log-level', 'loud', '--log-level must be one of'],
 ['--client-rate-limit=-1', '', '--client-rate-limit must be an integer from 0'],
      ['--client-rate-burst', '0', '--client-rate-burst must be an integer from 1'],
      ['--slow-client-policy', 'ignore', '--slow-client-policy must be one of close, drop'],
      ['--heartbeat-ms', '5', '--heartbeat-ms must be 0 (off) or an integer of at least 100'],
    ] as const) {
      const run = startCli('gateway', ['-p', '0', '--admin-port', '0', flag, ...(value ? [value] : [])]);
      assert.equal(await run.exited, 2, `${flag} ${value}`);
      assert.ok(run.stderr.join('\n').includes(message), `${flag} ${value}: ${run.stderr.join('\n')}`);
    }
  });
});
