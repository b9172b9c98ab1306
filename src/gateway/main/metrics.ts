/**
 * Prometheus metrics, read at scrape time from where the numbers already live: the workers'
 * shared-memory counters (one series per entry of counters.ts), the slots, FanOut and Upstream.
 * Nothing on the hot path touches prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConnectionBudget } from '../../descriptors.js';
import { LOOP_DELAY_RESOLUTION_MS } from '../../loop-delay.js';
import { LATENCY_BOUNDS, LATENCY_METRIC, LatencyStat, WORKER_COUNTERS, WorkerStat } from '../shared/counters.js';
import { PUBLISH_DROP_REASONS, type FanOut } from './fan-out.js';
import type { HistoryClient } from './history-client.js';
import type { Routing } from './routing.js';
import type { Upstream } from './upstream.js';
import type { WorkerPool, WorkerSlot } from './worker-pool.js';

/** Per-worker gauges read from the slot itself rather than from its counters. */
export const SLOT_GAUGES = [
  // Read from the ring's shared header at scrape time: accurate exactly when a worker is stuck.
  { metric: 'tormq_ring_used_bytes', help: 'Bytes waiting in the worker ring', read: (s: WorkerSlot) => s.ring.used() },
  { metric: 'tormq_ring_capacity_bytes', help: 'Size of the worker ring', read: (s: WorkerSlot) => s.ring.capacity },
  { metric: 'tormq_worker_up', help: '1 when the worker thread is running', read: (s: WorkerSlot) => (s.up ? 1 : 0) },
  { metric: 'tormq_worker_stalled', help: '1 while the worker\'s event loop has not run for --worker-stall-ms (/healthz answers 503)', read: (s: WorkerSlot) => (s.stalled ? 1 : 0) },
] as const;

/** Gateway-wide metrics (no worker label). */
export const GATEWAY_METRICS = [
  { metric: 'tormq_gateway_connections', type: 'gauge', help: 'Sockets counted against --max-connections across all workers (open plus mid-handshake)' },
  { metric: 'tormq_gateway_sockets', type: 'gauge', help: 'Every socket held on the WebSocket port, all workers, from TCP accept (idle and mid-handshake too)' },
  { metric: 'tormq_gateway_socket_limit', type: 'gauge', help: 'The socket budget: open-files limit less descriptors in use at start less --fd-reserve (0: none, not Linux)' },
  { metric: 'tormq_messages_in_total', type: 'counter', help: 'Messages received from the MPC, valid or not' },
  { metric: 'tormq_publish_drops_total', type: 'counter', help: `Messages from the MPC not fanned out, by label reason: ${PUBLISH_DROP_REASONS.join(', ')}` },
  { metric: 'tormq_mpc_up', type: 'gauge', help: '1 when the link to the MPC is connected (label endpoint)' },
  { metric: 'tormq_upstream_topics', type: 'gauge', help: 'Topics routed to at least one worker (subscriptions and their ancestors)' },
  { metric: 'tormq_upstream_roots', type: 'gauge', help: 'Roots subscribed at the MPC (each with every topic below it; an unwanted root is unsubscribed 1 s later)' },
  { metric: 'tormq_upstream_gaps_total', type: 'counter', help: 'Upstream gaps: a stream skipped offsets (messages lost between the MPC and this gateway) or changed epoch' },
  { metric: 'tormq_upstream_gaps_repaired_total', type: 'counter', help: 'Upstream gaps repaired from the MPC\'s history before later messages went on' },
  { metric: 'tormq_upstream_gaps_unrepaired_total', type: 'counter', help: 'Upstream gaps that could not be repaired (history gone, new epoch): tormq.v2 clients got a gap' },
  { metric: 'tormq_upstream_repaired_messages_total', type: 'counter', help: 'Messages delivered from the MPC\'s history by gap repairs' },
  { metric: 'tormq_upstream_subscribe_retries_total', type: 'counter', help: 'Subscriptions sent again because the MPC did not confirm them in time' },
  { metric: 'tormq_history_requests_total', type: 'counter', help: 'History requests sent to the MPC (gap repairs and client recoveries; pages count one each)' },
  { metric: 'tormq_history_failures_total', type: 'counter', help: 'History requests no MPC answered in time' },
  { metric: 'tormq_admin_connections_refused_total', type: 'counter', help: 'Connections to the admin port closed as they were accepted: its cap was reached with every connection answered (src/admin-server.ts)' },
  { metric: 'tormq_admin_connections_shed_total', type: 'counter', help: 'Connections to the admin port not yet answered, closed at its cap to make room for a new one' },
] as const;

export function createMetrics(pool: WorkerPool, fanOut: FanOut, upstream: Upstream, routing: Routing, history: HistoryClient, admin: ConnectionBudget): Registry {
  const registry = new Registry();
  // prom-client's names already start with process_ or nodejs_: prefixed, tormq_process_resident_memory_bytes.
  collectDefaultMetrics({ register: registry, prefix: 'tormq_', eventLoopMonitoringPrecision: LOOP_DELAY_RESOLUTION_MS });

  const perWorker = (type: 'counter' | 'gauge', name: string, help: string, value: (slot: WorkerSlot) => number) => {
    const Kind = type === 'counter' ? Counter : Gauge;
    return new Kind({
      name,
      help,
      labelNames: ['worker'],
      registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        for (const slot of pool.slots) (this as Gauge).inc({ worker: String(slot.index) }, value(slot));
      },
    });
  };
  for (const counter of WORKER_COUNTERS) {
    const index = WorkerStat[counter.key];
    const scale = 'metricScale' in counter ? counter.metricScale : 1;
    perWorker(counter.type, counter.metric, counter.help, (slot) => slot.stats[index]! * scale);
  }
  for (const gauge of SLOT_GAUGES) perWorker('gauge', gauge.metric, gauge.help, gauge.read);

  const help = (metric: (typeof GATEWAY_METRICS)[number]['metric']) => GATEWAY_METRICS.find((m) => m.metric === metric)!.help;
  new Gauge({
    name: 'tormq_gateway_connections',
    help: help('tormq_gateway_connections'),
    registers: [registry],
    collect() {
      this.set(pool.openSockets());
    },
  });
  new Gauge({
    name: 'tormq_gateway_sockets',
    help: help('tormq_gateway_sockets'),
    registers: [registry],
    collect() {
      this.set(pool.sockets());
    },
  });
  new Gauge({
    name: 'tormq_gateway_socket_limit',
    help: help('tormq_gateway_socket_limit'),
    registers: [registry],
    collect() {
      this.set(pool.socketCounts.limit);
    },
  });
  new Counter({
    name: 'tormq_messages_in_total',
    help: help('tormq_messages_in_total'),
    registers: [registry],
    collect() {
      this.reset();
      this.inc(fanOut.messagesIn);
    },
  });
  new Counter({
    name: 'tormq_publish_drops_total',
    help: help('tormq_publish_drops_total'),
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const reason of PUBLISH_DROP_REASONS) this.inc({ reason }, fanOut.drops[reason]);
    },
  });
  new Gauge({
    name: 'tormq_mpc_up',
    help: help('tormq_mpc_up'),
    labelNames: ['endpoint'],
    registers: [registry],
    collect() {
      this.reset();
      for (const link of upstream.links()) this.set({ endpoint: link.endpoint }, link.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tormq_upstream_topics',
    help: help('tormq_upstream_topics'),
    registers: [registry],
    collect() {
      this.set(routing.size);
    },
  });
  new Gauge({
    name: 'tormq_upstream_roots',
    help: help('tormq_upstream_roots'),
    registers: [registry],
    collect() {
      this.set(upstream.roots());
    },
  });
  const counter = (metric: (typeof GATEWAY_METRICS)[number]['metric'], read: () => number) =>
    new Counter({
      name: metric,
      help: help(metric),
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counter('tormq_upstream_gaps_total', () => fanOut.upstreamGaps);
  counter('tormq_upstream_gaps_repaired_total', () => fanOut.repairedGaps);
  counter('tormq_upstream_gaps_unrepaired_total', () => fanOut.unrepairedGaps);
  counter('tormq_upstream_repaired_messages_total', () => fanOut.repairedMessages);
  counter('tormq_upstream_subscribe_retries_total', () => upstream.subscribeRetries);
  counter('tormq_history_requests_total', () => history.requests);
  counter('tormq_history_failures_total', () => history.failures);
  counter('tormq_admin_connections_refused_total', () => admin.refused);
  counter('tormq_admin_connections_shed_total', () => admin.shed);

  // The latency histogram's buckets are filled by the workers in shared memory: expose them as-is.
  registry.registerMetric({
    name: LATENCY_METRIC.name,
    help: LATENCY_METRIC.help,
    type: 'histogram',
    get() {
      const bucket = `${LATENCY_METRIC.name}_bucket`;
      const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
      for (const slot of pool.slots) {
        const worker = String(slot.index);
        let cumulative = 0;
        LATENCY_BOUNDS.forEach((le, i) => {
          cumulative += slot.stats[LatencyStat.BUCKETS + i]!;
          values.push({ labels: { worker, le }, value: cumulative, metricName: bucket });
        });
        values.push({ labels: { worker, le: '+Inf' }, value: slot.stats[LatencyStat.COUNT]!, metricName: bucket });
        values.push({ labels: { worker }, value: slot.stats[LatencyStat.SUM_SECONDS]!, metricName: `${LATENCY_METRIC.name}_sum` });
        values.push({ labels: { worker }, value: slot.stats[LatencyStat.COUNT]!, metricName: `${LATENCY_METRIC.name}_count` });
      }
      return { name: LATENCY_METRIC.name, help: LATENCY_METRIC.help, type: 'histogram', values, aggregator: 'sum' };
    },
  } as unknown as Parameters<Registry['registerMetric']>[0]);

  return registry;
}
