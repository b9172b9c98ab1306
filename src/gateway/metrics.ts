/**
 * Prometheus metrics, read at scrape time from where the numbers already live: the workers'
 * shared-memory counters, FanOut's and Upstream's fields. Nothing on the hot path touches prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { FanOut } from './fan-out.js';
import { PUBLISH_DROP_REASONS } from './fan-out.js';
import { LATENCY_BOUNDS, WorkerStat } from './thread-protocol.js';
import type { Upstream } from './upstream.js';
import type { WorkerPool, WorkerSlot } from './worker-pool.js';

type StatIndex = (typeof WorkerStat)[keyof typeof WorkerStat];

export function createMetrics(pool: WorkerPool, fanOut: FanOut, upstream: Upstream): Registry {
  const registry = new Registry();
  // prom-client's names already start with process_ or nodejs_: prefixed, tormq_process_resident_memory_bytes.
  collectDefaultMetrics({ register: registry, prefix: 'tormq_' });

  const perWorker = (
    Kind: typeof Counter | typeof Gauge,
    name: string,
    help: string,
    value: (slot: WorkerSlot) => number,
  ) =>
    new Kind({
      name,
      help,
      labelNames: ['worker'],
      registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        for (const slot of pool.slots) (this as Gauge).inc({ worker: String(slot.index) }, value(slot));
      },
    });
  const stat = (index: StatIndex) => (slot: WorkerSlot) => slot.stats[index]!;

  perWorker(Gauge, 'tormq_connections', 'Open WebSocket connections', stat(WorkerStat.CONNECTIONS));
  perWorker(Gauge, 'tormq_subscriptions', 'Subscriptions held by connections', stat(WorkerStat.SUBSCRIPTIONS));
  perWorker(Counter, 'tormq_worker_messages_total', 'Messages a worker read from its ring', stat(WorkerStat.RECORDS));
  perWorker(Counter, 'tormq_deliveries_total', 'Messages written to client connections', stat(WorkerStat.DELIVERIES));
  perWorker(Counter, 'tormq_ring_drops_total', 'Messages dropped for a worker because its ring was full', (s) => s.ringDrops);
  // Read from the ring's shared header at scrape time: accurate exactly when a worker is stuck.
  perWorker(Gauge, 'tormq_ring_used_bytes', 'Bytes waiting in the worker ring', (s) => s.ring.used());
  perWorker(Gauge, 'tormq_ring_capacity_bytes', 'Size of the worker ring', (s) => s.ring.capacity);
  perWorker(Counter, 'tormq_slow_client_drops_total', 'Messages skipped for clients over the outbound limit (policy drop)', stat(WorkerStat.SLOW_DROPS));
  perWorker(Counter, 'tormq_slow_client_disconnects_total', 'Clients closed with 4008 (policy close)', stat(WorkerStat.SLOW_CLOSES));
  perWorker(Counter, 'tormq_bad_frames_total', 'Client frames rejected (bad JSON, unknown event, invalid topic, ...)', stat(WorkerStat.BAD_FRAMES));
  perWorker(Counter, 'tormq_oversize_frames_total', 'Connections closed with 1009 for a frame over maxFrameBytes', stat(WorkerStat.OVERSIZE_CLOSES));
  perWorker(Counter, 'tormq_heartbeat_terminations_total', 'Connections terminated for missing a heartbeat pong', stat(WorkerStat.HEARTBEAT_TERMINATIONS));
  perWorker(Counter, 'tormq_connections_accepted_total', 'WebSocket connections accepted', stat(WorkerStat.CONNECTIONS_ACCEPTED));
  perWorker(Counter, 'tormq_connections_rejected_total', 'Upgrades refused (connection cap, wrong path, draining, 401 token, 403 origin)', stat(WorkerStat.CONNECTIONS_REJECTED));
  perWorker(Counter, 'tormq_auth_failures_total', 'Upgrades refused with 401 (missing or invalid token)', stat(WorkerStat.AUTH_FAILURES));
  perWorker(Counter, 'tormq_origin_rejections_total', 'Upgrades refused with 403 (origin not in allowedOrigins)', stat(WorkerStat.ORIGIN_REJECTIONS));
  perWorker(Counter, 'tormq_forbidden_subscriptions_total', 'Subscribe frames refused for topics outside the token grants', stat(WorkerStat.FORBIDDEN_SUBSCRIPTIONS));
  perWorker(Counter, 'tormq_token_expired_closes_total', 'Connections closed with 1008 because their token expired', stat(WorkerStat.TOKEN_EXPIRED_CLOSES));
  perWorker(Counter, 'tormq_token_refreshes_total', 'Refresh frames accepted', stat(WorkerStat.TOKEN_REFRESHES));
  perWorker(Counter, 'tormq_token_refresh_failures_total', 'Refresh frames refused', stat(WorkerStat.TOKEN_REFRESH_FAILURES));
  perWorker(Counter, 'tormq_rate_limited_frames_total', 'Client frames rejected by the inbound rate limit', stat(WorkerStat.RATE_LIMITED_FRAMES));
  perWorker(Counter, 'tormq_rate_limit_disconnects_total', 'Clients closed with 4029 for sustained frame floods', stat(WorkerStat.RATE_LIMIT_CLOSES));
  perWorker(Gauge, 'tormq_event_loop_lag_seconds', 'Worker event-loop delay, p99 over the last second', (s) => s.stats[WorkerStat.EVENT_LOOP_LAG_MS]! / 1000);
  perWorker(Gauge, 'tormq_worker_up', '1 when the worker thread is running', (s) => (s.up ? 1 : 0));
  perWorker(Counter, 'tormq_worker_restarts_total', 'Worker threads replaced after dying', (s) => s.restarts);

  new Gauge({
    name: 'tormq_gateway_connections',
    help: 'Sockets counted against --max-connections across all workers (open plus mid-handshake)',
    registers: [registry],
    collect() {
      this.set(pool.openSockets());
    },
  });
  new Counter({
    name: 'tormq_messages_in_total',
    help: 'Messages received from the MPC, valid or not',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(fanOut.messagesIn);
    },
  });
  new Counter({
    name: 'tormq_publish_drops_total',
    help: 'Messages from the MPC not fanned out, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const reason of PUBLISH_DROP_REASONS) this.inc({ reason }, fanOut.drops[reason]);
    },
  });
  new Gauge({
    name: 'tormq_mpc_up',
    help: '1 when the link to the MPC is connected',
    labelNames: ['endpoint'],
    registers: [registry],
    collect() {
      this.reset();
      for (const link of upstream.links()) this.set({ endpoint: link.endpoint }, link.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tormq_upstream_roots',
    help: 'Roots routed to at least one worker (subscribed at the MPC; an unwanted root is unsubscribed 1 s later)',
    registers: [registry],
    collect() {
      this.set(fanOut.roots().length);
    },
  });

  // The latency histogram's buckets are filled by the workers in shared memory: expose them as-is.
  registry.registerMetric({
    name: 'tormq_delivery_latency_seconds',
    help: 'In-gateway latency: received from the MPC to written to the client socket',
    type: 'histogram',
    get() {
      const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
      for (const slot of pool.slots) {
        const worker = String(slot.index);
        let cumulative = 0;
        LATENCY_BOUNDS.forEach((le, i) => {
          cumulative += slot.stats[WorkerStat.LATENCY_BUCKETS + i]!;
          values.push({ labels: { worker, le }, value: cumulative, metricName: 'tormq_delivery_latency_seconds_bucket' });
        });
        values.push({ labels: { worker, le: '+Inf' }, value: slot.stats[WorkerStat.LATENCY_COUNT]!, metricName: 'tormq_delivery_latency_seconds_bucket' });
        values.push({ labels: { worker }, value: slot.stats[WorkerStat.LATENCY_SUM_SECONDS]!, metricName: 'tormq_delivery_latency_seconds_sum' });
        values.push({ labels: { worker }, value: slot.stats[WorkerStat.LATENCY_COUNT]!, metricName: 'tormq_delivery_latency_seconds_count' });
      }
      return { name: 'tormq_delivery_latency_seconds', help: 'In-gateway latency: received from the MPC to written to the client socket', type: 'histogram', values, aggregator: 'sum' };
    },
  } as unknown as Parameters<Registry['registerMetric']>[0]);

  return registry;
}
