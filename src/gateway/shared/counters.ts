/**
 * Every per-worker figure, declared once. Each worker has a Float64Array in shared memory laid out by
 * this table (`WorkerStat.deliveries` is an index into it); the main thread derives the Prometheus
 * metrics (main/metrics.ts), the `/stats` JSON (main/gateway.ts) and the README's metrics table
 * (scripts/gen-docs.js) from the same entries. Counters only grow, across worker restarts too (the
 * array belongs to the worker's slot, not its thread); gauges are set.
 */

export interface CounterSpec {
  /** Name in `/stats` (per worker, and summed in `totals` for counters). */
  readonly key: string;
  readonly type: 'counter' | 'gauge';
  /** Prometheus metric (label `worker`). */
  readonly metric: string;
  readonly help: string;
  /** Who writes it: the worker thread, or the main thread (e.g. ring drops, restarts). */
  readonly writer: 'worker' | 'main';
  /** The stored value is multiplied by this for the metric (ms stored, seconds exposed). */
  readonly metricScale?: number;
}

export const WORKER_COUNTERS = [
  { key: 'connections', type: 'gauge', metric: 'tormq_connections', help: 'Open WebSocket connections', writer: 'worker' },
  { key: 'subscriptions', type: 'gauge', metric: 'tormq_subscriptions', help: 'Subscriptions held by connections', writer: 'worker' },
  { key: 'messages', type: 'counter', metric: 'tormq_worker_messages_total', help: 'Messages a worker read from its ring', writer: 'worker' },
  { key: 'deliveries', type: 'counter', metric: 'tormq_deliveries_total', help: 'Messages written to client connections', writer: 'worker' },
  { key: 'ringDrops', type: 'counter', metric: 'tormq_ring_drops_total', help: 'Messages dropped for a worker because its ring was full', writer: 'main' },
  { key: 'slowClientDrops', type: 'counter', metric: 'tormq_slow_client_drops_total', help: 'Messages skipped for clients over the outbound limit (policy drop)', writer: 'worker' },
  { key: 'slowClientDisconnects', type: 'counter', metric: 'tormq_slow_client_disconnects_total', help: 'Clients closed with 4008 (policy close)', writer: 'worker' },
  { key: 'badFrames', type: 'counter', metric: 'tormq_bad_frames_total', help: 'Client frames rejected (bad JSON, not an object, unknown event, invalid topic, too many subscriptions, binary, a message in too many pieces)', writer: 'worker' },
  { key: 'oversizeCloses', type: 'counter', metric: 'tormq_oversize_frames_total', help: 'Connections closed with 1009 for a frame over maxFrameBytes', writer: 'worker' },
  { key: 'heartbeatTerminations', type: 'counter', metric: 'tormq_heartbeat_terminations_total', help: 'Connections terminated for missing a heartbeat pong', writer: 'worker' },
  { key: 'connectionsAccepted', type: 'counter', metric: 'tormq_connections_accepted_total', help: 'WebSocket connections accepted', writer: 'worker' },
  { key: 'connectionsRejected', type: 'counter', metric: 'tormq_connections_rejected_total', help: 'Upgrades refused (connection cap, wrong path, draining, 401 token, 403 origin)', writer: 'worker' },
  { key: 'socketErrors', type: 'counter', metric: 'tormq_socket_errors_total', help: 'Client sockets that failed with a network error (e.g. a reset), at any stage; each is closed, nothing else happens', writer: 'worker' },
  { key: 'handshakeTimeouts', type: 'counter', metric: 'tormq_handshake_timeouts_total', help: 'Sockets closed for not completing the WebSocket handshake within --handshake-timeout-ms of accept', writer: 'worker' },
  { key: 'socketsShed', type: 'counter', metric: 'tormq_sockets_shed_total', help: 'Sockets closed at the socket budget (descriptors; tormq_gateway_socket_limit): the oldest one still in its handshake, else the one just accepted', writer: 'worker' },
  { key: 'authFailures', type: 'counter', metric: 'tormq_auth_failures_total', help: 'Upgrades refused with 401 (missing or invalid token)', writer: 'worker' },
  { key: 'originRejections', type: 'counter', metric: 'tormq_origin_rejections_total', help: 'Upgrades refused with 403 (origin not in allowedOrigins)', writer: 'worker' },
  { key: 'forbiddenSubscriptions', type: 'counter', metric: 'tormq_forbidden_subscriptions_total', help: 'Subscribe frames refused for topics outside the token grants', writer: 'worker' },
  { key: 'deepTopicRefusals', type: 'counter', metric: 'tormq_deep_topic_refusals_total', help: 'Subscribe frames refused for a topic deeper than --max-topic-depth (ERR_TOPIC_TOO_DEEP)', writer: 'worker' },
  { key: 'topicLimitRefusals', type: 'counter', metric: 'tormq_topic_limit_refusals_total', help: 'Subscribe frames refused because the gateway holds --max-topics distinct topics (ERR_TOPIC_LIMIT)', writer: 'worker' },
  { key: 'subscriptionBudgetRefusals', type: 'counter', metric: 'tormq_subscription_budget_refusals_total', help: 'Subscribe frames refused for going over --max-subscription-segments (ERR_SUBSCRIPTION_BUDGET)', writer: 'worker' },
  { key: 'tokenExpiredCloses', type: 'counter', metric: 'tormq_token_expired_closes_total', help: 'Connections closed with 1008 because their token expired', writer: 'worker' },
  { key: 'tokenRefreshes', type: 'counter', metric: 'tormq_token_refreshes_total', help: 'Refresh frames accepted', writer: 'worker' },
  { key: 'tokenRefreshFailures', type: 'counter', metric: 'tormq_token_refresh_failures_total', help: 'Refresh frames refused', writer: 'worker' },
  { key: 'rateLimitedFrames', type: 'counter', metric: 'tormq_rate_limited_frames_total', help: 'Client frames rejected by the inbound rate limit', writer: 'worker' },
  { key: 'rateLimitDisconnects', type: 'counter', metric: 'tormq_rate_limit_disconnects_total', help: 'Clients closed with 4029 for sustained frame floods', writer: 'worker' },
  { key: 'replayBytes', type: 'gauge', metric: 'tormq_replay_bytes', help: 'History the worker holds for tormq.v2 recoveries being replayed (fetched, or being fetched, and not yet written to a socket); kept near --replay-budget-bytes', writer: 'worker' },
  { key: 'replayWaits', type: 'counter', metric: 'tormq_replay_waits_total', help: 'Recovery windows that waited for --replay-budget-bytes (other connections\' replays held it)', writer: 'worker' },
  { key: 'eventLoopLagMs', type: 'gauge', metric: 'tormq_event_loop_lag_seconds', help: 'Worker event-loop delay, p99 of the samples of the last second (one per 100 ms); while the worker is stalled, the time since its last heartbeat (set by the main thread)', writer: 'worker', metricScale: 1 / 1000 },
  { key: 'heapUsedBytes', type: 'gauge', metric: 'tormq_worker_heap_used_bytes', help: 'The worker\'s V8 heap in use (live objects and garbage not yet collected), sampled once a second', writer: 'worker' },
  { key: 'heapCommittedBytes', type: 'gauge', metric: 'tormq_worker_heap_committed_bytes', help: 'The worker\'s V8 heap committed, all spaces, sampled once a second', writer: 'worker' },
  { key: 'youngGenerationBytes', type: 'gauge', metric: 'tormq_worker_young_generation_bytes', help: 'Of it, the young generation (V8 new space), held at --worker-young-mb', writer: 'worker' },
  { key: 'heartbeats', type: 'counter', metric: 'tormq_worker_heartbeats_total', help: 'Heartbeats of the worker\'s event loop, one a second; one that stops counting is stalled', writer: 'worker' },
  { key: 'stalls', type: 'counter', metric: 'tormq_worker_stalls_total', help: 'Times the worker was found stalled (no heartbeat for --worker-stall-ms)', writer: 'main' },
  { key: 'restarts', type: 'counter', metric: 'tormq_worker_restarts_total', help: 'Worker threads replaced after dying', writer: 'main' },
] as const satisfies readonly CounterSpec[];

export type CounterKey = (typeof WORKER_COUNTERS)[number]['key'];

/** Index of each counter in a worker's Float64Array: `stats[WorkerStat.deliveries]++`. */
export const WorkerStat = Object.freeze(Object.fromEntries(WORKER_COUNTERS.map((c, i) => [c.key, i]))) as { readonly [K in CounterKey]: number };

/** In-gateway latency (main thread receive -> socket write) histogram bounds, seconds. */
export const LATENCY_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] as const;

/** The latency histogram follows the counters: count, sum (seconds), then one bucket per bound plus overflow. */
export const LatencyStat = Object.freeze({
  COUNT: WORKER_COUNTERS.length,
  SUM_SECONDS: WORKER_COUNTERS.length + 1,
  BUCKETS: WORKER_COUNTERS.length + 2,
});

export const WORKER_STATS_LENGTH = LatencyStat.BUCKETS + LATENCY_BOUNDS.length + 1;
export const LATENCY_METRIC = { name: 'tormq_delivery_latency_seconds', help: 'In-gateway latency: received from the MPC to written to the client socket' } as const;
