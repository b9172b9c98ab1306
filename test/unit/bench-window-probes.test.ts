/**
 * The bench's in-gateway latency (bench/load/window-probes.ts): bucket counts of two /metrics
 * readings, summed over workers, give the window's quantiles; and per-core busy shares from /proc.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coreBusy, coreTimes, gatewayQuantiles, latencyBuckets, latencyQuantiles } from '../../bench/load/window-probes.js';

/** /metrics text with one worker's cumulative buckets per `le`. */
function metricsText(perWorker: Array<Record<string, number>>): string {
  const lines = ['# HELP tormq_delivery_latency_seconds In-gateway latency', '# TYPE tormq_delivery_latency_seconds histogram'];
  perWorker.forEach((buckets, worker) => {
    for (const [le, count] of Object.entries(buckets)) lines.push(`tormq_delivery_latency_seconds_bucket{worker="${worker}",le="${le}"} ${count}`);
    lines.push(`tormq_delivery_latency_seconds_count{worker="${worker}"} ${buckets['+Inf']}`);
  });
  lines.push('tormq_other_bucket{le="0.001"} 99');
  return lines.join('\n');
}

test('quantiles of the window come from the bucket deltas, summed over workers, interpolated in the bucket', () => {
  const before = latencyBuckets(metricsText([{ '0.001': 10, '0.005': 10, '0.01': 10, '+Inf': 10 }, { '0.001': 0, '0.005': 0, '0.01': 0, '+Inf': 0 }]));
  // In the window: worker 0 got 50 under 1 ms and 40 in (1, 5] ms; worker 1 got 10 in (5, 10] ms.
  const after = latencyBuckets(metricsText([{ '0.001': 60, '0.005': 100, '0.01': 100, '+Inf': 100 }, { '0.001': 0, '0.005': 0, '0.01': 10, '+Inf': 10 }]));
  assert.deepEqual([...after.keys()], [0.001, 0.005, 0.01, Infinity]);
  const [p50, p90, p99] = latencyQuantiles(before, after, [0.5, 0.9, 0.99]);
  assert.equal(p50, 1); // rank 50 of 100: the last of the first bucket
  assert.equal(p90, 5); // rank 90: the end of (1, 5]
  assert.ok(Math.abs(p99! - 9.5) < 1e-9, `p99 ${p99}`); // rank 99: 9 of the 10 in (5, 10]
});

test('a quantile past the last bound is Infinity; an empty window gives null', () => {
  const before = latencyBuckets(metricsText([{ '0.1': 0, '1': 0, '+Inf': 0 }]));
  const after = latencyBuckets(metricsText([{ '0.1': 50, '1': 90, '+Inf': 100 }]));
  assert.deepEqual(latencyQuantiles(before, after, [0.5, 0.99]), [100, Infinity]);
  assert.deepEqual(latencyQuantiles(after, after, [0.5]), [null]);
  assert.deepEqual(latencyQuantiles(latencyBuckets(''), latencyBuckets(''), [0.5]), [null]);
});

test('core busy shares are between 0 and 1, null for a core that does not exist', async () => {
  const a = coreTimes();
  if (a === null) return assert.fail('no /proc/stat on Linux');
  const end = Date.now() + 300;
  while (Date.now() < end); // keep one core busy
  const b = coreTimes();
  const shares = [...a.keys()].map((core) => coreBusy(a, b, core));
  for (const share of shares) assert.ok(share !== null && share >= 0 && share <= 1, String(share));
  assert.ok(Math.max(...(shares as number[])) > 0.5, `one core was kept busy: ${shares.join(', ')}`);
  assert.equal(coreBusy(a, b, 4096), null);
});

test('the gateway figures are null for a window in which it recorded nothing', () => {
  const buckets = latencyBuckets(metricsText([{ '0.001': 5, '+Inf': 5 }]));
  assert.equal(gatewayQuantiles(buckets, buckets), null);
  assert.deepEqual(gatewayQuantiles(latencyBuckets(metricsText([{ '0.001': 0, '+Inf': 0 }])), buckets), { p50: 0.5, p99: 0.99 });
});
