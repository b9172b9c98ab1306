/**
 * The MPC's Prometheus metrics, read at scrape time from `Mpc.stats()`; the README's MPC metrics table
 * is generated from MPC_METRICS.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LOOP_DELAY_RESOLUTION_MS } from '../loop-delay.js';
import { PUBLISH_DROP_REASONS } from './forwarder.js';
import type { MpcStats } from './mpc.js';

type Read = (s: MpcStats) => number | Record<string, number>;

/** One figure of each port's connection budget, by port name. */
const perPort = (s: MpcStats, key: 'open' | 'refused' | 'shed'): Record<string, number> =>
  Object.fromEntries(Object.entries(s.connections).map(([port, budget]) => [port, budget[key]]));

export const MPC_METRICS: ReadonlyArray<{ metric: string; type: 'counter' | 'gauge'; help: string; label?: string; read: Read }> = [
  { metric: 'tormq_mpc_messages_in_total', type: 'counter', help: 'Publisher messages received, valid or not', read: (s) => s.messagesIn },
  { metric: 'tormq_mpc_messages_forwarded_total', type: 'counter', help: 'Messages stamped with their position and forwarded to gateways', read: (s) => s.forwarded },
  {
    metric: 'tormq_mpc_publish_drops_total',
    type: 'counter',
    help: `Publisher messages dropped, by label reason: ${PUBLISH_DROP_REASONS.join(', ')}`,
    label: 'reason',
    read: (s) => s.publishDrops,
  },
  { metric: 'tormq_mpc_link_frames_total', type: 'counter', help: 'Frames sent to gateways (a batch of messages below one root counts one)', read: (s) => s.linkFrames },
  { metric: 'tormq_mpc_positions_sent_total', type: 'counter', help: 'Gateway subscriptions confirmed with the stream position', read: (s) => s.positionsSent },
  { metric: 'tormq_mpc_history_replies_total', type: 'counter', help: 'History requests answered, by label status: ok, epoch, evicted, ahead', label: 'status', read: (s) => s.historyReplies },
  { metric: 'tormq_mpc_bad_gateway_frames_total', type: 'counter', help: 'Frames from gateways that were not a subscription or a valid request', read: (s) => s.badGatewayFrames },
  { metric: 'tormq_mpc_send_queue_drops_total', type: 'counter', help: 'Frames to gateways not sent because a queue was full (a gateway past --gateway-queue-bytes; it repairs from history)', read: (s) => s.sendQueueDrops },
  { metric: 'tormq_mpc_gateway_queued_bytes', type: 'gauge', help: 'Bytes the ZMTP link server holds for all gateways together (queued and in socket buffers; limit --gateway-queue-total-bytes)', read: (s) => s.gatewayQueue?.bytes ?? 0 },
  { metric: 'tormq_mpc_gateway_queue_cuts_total', type: 'counter', help: 'Gateway connections closed because all gateways together held more than --gateway-queue-total-bytes (the one holding the most each time)', read: (s) => s.gatewayQueue?.cutOverTotal ?? 0 },
  { metric: 'tormq_mpc_gateway_requests_skipped_total', type: 'counter', help: 'Requests (history, positions) not answered because their gateway had half of --gateway-queue-bytes unread (it asks again after its timeout)', read: (s) => s.gatewayQueue?.requestsSkipped ?? 0 },
  { metric: 'tormq_mpc_publisher_handshake_failures_total', type: 'counter', help: 'Publisher connections closed at the ZMTP handshake (not a plain ZMTP 3 PUB, e.g. CURVE on a plain port)', read: (s) => s.publisherHandshakeFailures },
  { metric: 'tormq_mpc_gateway_handshake_failures_total', type: 'counter', help: 'Gateway connections closed at the ZMTP handshake (not a plain ZMTP 3 SUB/XSUB, e.g. CURVE on a plain port)', read: (s) => s.gatewayHandshakeFailures },
  { metric: 'tormq_mpc_connections_silent_total', type: 'counter', help: 'Connections closed because the peer sent nothing for the TTL its ZMTP heartbeats asked for, or left the MPC\'s PINGs unanswered for 5 × --peer-heartbeat-ms (stopped, hung or unreachable), by label port: publisher, gateway', label: 'port', read: (s) => ({ ...s.silentPeers }) },
  { metric: 'tormq_mpc_connections', type: 'gauge', help: 'Connections by label port: publisher, gateway (tormq\'s own ZMTP endpoints), http, grpc, admin (when enabled)', label: 'port', read: (s) => perPort(s, 'open') },
  {
    metric: 'tormq_mpc_connections_refused_total',
    type: 'counter',
    help: 'Connections closed at accept by label port: the port\'s share of the connection budget (open-files limit less those in use at start less --fd-reserve; the admin port: 32, within the reserve) was spent and every connection had completed its handshake',
    label: 'port',
    read: (s) => perPort(s, 'refused'),
  },
  {
    metric: 'tormq_mpc_connections_shed_total',
    type: 'counter',
    help: 'Connections still in their handshake closed by label port to make room for a new one at the port\'s share of the connection budget',
    label: 'port',
    read: (s) => perPort(s, 'shed'),
  },
  { metric: 'tormq_mpc_streams', type: 'gauge', help: 'Topics whose position is remembered', read: (s) => s.history.streams },
  { metric: 'tormq_mpc_history_messages', type: 'gauge', help: 'Messages held in history', read: (s) => s.history.messages },
  { metric: 'tormq_mpc_history_bytes', type: 'gauge', help: 'Bytes held in history (bodies plus an estimated overhead per message)', read: (s) => s.history.bytes },
  { metric: 'tormq_mpc_history_evicted_total', type: 'counter', help: 'Messages dropped from history by its size, age or count limits', read: (s) => s.history.evictedMessages },
  { metric: 'tormq_mpc_presence_gateways', type: 'gauge', help: 'gopusher presence: gateways reporting', read: (s) => s.presence.gateways },
  { metric: 'tormq_mpc_presence_cards', type: 'gauge', help: 'gopusher presence: cards online, all gateways', read: (s) => s.presence.cards },
  { metric: 'tormq_mpc_presence_entries', type: 'gauge', help: 'gopusher presence: (gateway, card) pairs held (bounded by --presence-max-entries)', read: (s) => s.presence.entries },
  { metric: 'tormq_mpc_presence_refused_total', type: 'counter', help: 'gopusher presence: entries refused at --presence-max-entries (those cards read as offline)', read: (s) => s.presence.refusedEntries },
  { metric: 'tormq_mpc_presence_expired_gateways_total', type: 'counter', help: 'gopusher presence: gateways forgotten because their reports stopped', read: (s) => s.presence.expiredGateways },
  { metric: 'tormq_mpc_presence_resyncs_total', type: 'counter', help: 'gopusher presence: snapshots asked of gateways (a report lost, or a gateway new to this MPC)', read: (s) => s.presence.resyncs },
  { metric: 'tormq_mpc_streams_forgotten_total', type: 'counter', help: 'Topics forgotten entirely (past --history-max-streams): their next message starts a new epoch', read: (s) => s.history.forgottenStreams },
];

export function createMpcMetrics(stats: () => MpcStats): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tormq_mpc_', eventLoopMonitoringPrecision: LOOP_DELAY_RESOLUTION_MS });
  for (const m of MPC_METRICS) {
    const Kind = m.type === 'counter' ? Counter : Gauge;
    new Kind({
      name: m.metric,
      help: m.help,
      labelNames: m.label ? [m.label] : [],
      registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        const value = m.read(stats());
        if (typeof value === 'number') (this as Gauge).inc(value);
        else for (const [label, n] of Object.entries(value)) (this as Gauge).inc({ [m.label!]: label }, n);
      },
    });
  }
  return registry;
}
