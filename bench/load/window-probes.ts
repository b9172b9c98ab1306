/**
 * What the bench reads at both ends of a measured window, besides CPU and RSS, to tell where latency
 * comes from:
 * - the gateway's own latency histogram (`tormq_delivery_latency_seconds`: received from the MPC ->
 *   written to the client socket), so a tail that grows inside the gateway (ring backlog, a worker
 *   waiting for the shared core) is told from one that grows in the MPC or in the client fleet;
 * - how busy each core was (/proc/stat), since the load generator shares the machine: with the load
 *   core at 100 %, the clients' own queueing is part of the end-to-end latency.
 */
import { readFileSync } from 'node:fs';

const LATENCY_BUCKET = /^tormq_delivery_latency_seconds_bucket\{([^}]*)\} (\S+)$/;

/** Cumulative bucket counts of the gateway's latency histogram, summed over its workers, by `le` (seconds; Infinity last). */
export type LatencyBuckets = Map<number, number>;

/** Parses `/metrics` text (Prometheus exposition format). */
export function latencyBuckets(metricsText: string): LatencyBuckets {
  const buckets: LatencyBuckets = new Map();
  for (const line of metricsText.split('\n')) {
    const match = LATENCY_BUCKET.exec(line);
    if (match === null) continue;
    const le = /(?:^|,)le="([^"]+)"/.exec(match[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + Number(match[2]));
  }
  return new Map([...buckets].sort((a, b) => a[0] - b[0]));
}

/**
 * Quantiles (ms) of what was recorded between two readings, interpolated linearly inside a bucket, as
 * Prometheus's histogram_quantile does. A quantile in the last (+Inf) bucket is Infinity: "over the
 * largest bound". null when nothing was recorded.
 */
export function latencyQuantiles(before: LatencyBuckets, after: LatencyBuckets, quantiles: readonly number[]): Array<number | null> {
  const bounds = [...after.keys()];
  const cumulative = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (total <= 0) return quantiles.map(() => null);
  return quantiles.map((q) => {
    const rank = q * total;
    const i = cumulative.findIndex((c) => c >= rank);
    const upper = bounds[i]!;
    if (upper === Infinity) return Infinity;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    const below = i === 0 ? 0 : cumulative[i - 1]!;
    const inBucket = cumulative[i]! - below;
    const seconds = inBucket > 0 ? lower + ((upper - lower) * (rank - below)) / inBucket : upper;
    return seconds * 1000;
  });
}

/** Jiffies per core from /proc/stat: [total, idle] (null where /proc is missing). */
export type CoreTimes = Map<number, [number, number]> | null;

export function coreTimes(): CoreTimes {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const times = new Map<number, [number, number]>();
  for (const line of text.split('\n')) {
    const match = /^cpu(\d+) (.*)$/.exec(line);
    if (match === null) continue;
    const fields = match[2]!.trim().split(/\s+/).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    times.set(Number(match[1]), [total, fields[3]! + (fields[4] ?? 0)]); // idle + iowait
  }
  return times;
}

/** Share of `core`'s time it was busy between two readings, 0..1 (null without /proc). */
export function coreBusy(before: CoreTimes, after: CoreTimes, core: number): number | null {
  const a = before?.get(core);
  const b = after?.get(core);
  if (a === undefined || b === undefined || b[0] <= a[0]) return null;
  return 1 - (b[1] - a[1]) / (b[0] - a[0]);
}

/** The gateway's p50 and p99 (ms) between two readings of its histogram; null when it recorded nothing. */
export function gatewayQuantiles(before: LatencyBuckets, after: LatencyBuckets): { p50: number; p99: number } | null {
  const [p50, p99] = latencyQuantiles(before, after, [0.5, 0.99]);
  return p50 === null || p50 === undefined || p99 === null || p99 === undefined ? null : { p50, p99 };
}
