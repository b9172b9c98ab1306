/**
 * The gateway process's main thread: worker pool, upstream SUB, fan-out, admin HTTP. It never
 * touches client sockets (the workers own them) and never blocks on a worker.
 *
 * @example
 * ```ts
 * const gateway = await Gateway.start({ mpc: ['127.0.0.1:5560'], port: 8000, workers: 4 });
 * console.log(gateway.port, gateway.stats());
 * await gateway.stop(); // drains: clients closed with 1001 over drainMs
 * ```
 */
import http from 'node:http';
import net from 'node:net';
import type { Registry } from 'prom-client';
import { ErrorCodes, TormqError } from '../../errors.js';
import { listenOrFail } from '../../listen.js';
import { createLogger, type Logger } from '../../log.js';
import { listenAddresses, loopbackHint, urlOf } from '../../loopback.js';
import { describeCertificate, readTlsFiles } from '../../tls-files.js';
import { validateGatewayConfig, type GatewayConfig, type GatewayOptions } from '../shared/config.js';
import { WORKER_COUNTERS, WorkerStat } from '../shared/counters.js';
import { curveKeysOf } from '../shared/security-options.js';
import { ADMIN_CAP, adminConnectionBudget, createAdminServer } from '../../admin-server.js';
import { logConnectionsClosed, socketBudget, type ConnectionBudget, type SocketBudget } from '../../descriptors.js';
import { FanOut } from './fan-out.js';
import { HistoryClient } from './history-client.js';
import { PositionCheck } from './position-check.js';
import { LinkMonitor } from './link-monitor.js';
import { createMetrics } from './metrics.js';
import { answerOnline } from './online.js';
import { GatewayPresence } from './presence.js';
import { Routing } from './routing.js';
import { StallWatch } from './stall-watch.js';
import { Upstream } from './upstream.js';
import { WorkerPool } from './worker-pool.js';

/** How long the MPC link may take at stop to send its last frames (the presence `bye`). */
const LINGER_AT_STOP_MS = 500;

export class Gateway {
  readonly config: GatewayConfig;
  readonly log: Logger;
  readonly fanOut: FanOut;
  readonly upstream: Upstream;
  private readonly linkMonitor: LinkMonitor;
  readonly routing: Routing;
  readonly history: HistoryClient;
  readonly positionCheck: PositionCheck;
  readonly pool: WorkerPool;
  readonly metrics: Registry;
  readonly stallWatch: StallWatch;
  /** gopusher presence, reported to the MPC(s). */
  readonly presence: GatewayPresence;
  /** The socket budget taken at start (null: the platform does not tell). */
  socketBudget: SocketBudget | null = null;
  private admin: http.Server | null = null;
  private adminBoundPort = -1;
  /** The admin port's connections (capped at ADMIN_MAX_CONNECTIONS; closed ones logged once a minute). */
  private readonly adminConnections: ConnectionBudget;
  private stopping: Promise<void> | null = null;

  private constructor(config: GatewayConfig) {
    this.config = config;
    this.log = createLogger('tormq-gateway', config.logLevel);
    this.adminConnections = adminConnectionBudget(logConnectionsClosed(this.log, () => ADMIN_CAP));
    const curve = curveKeysOf(config);
    this.linkMonitor = new LinkMonitor(config.mpc.map((e) => `tcp://${e}`), this.log, { curve: curve !== null, warnAfterMs: config.mpcWarnMs });
    this.upstream = new Upstream(config.mpc, this.log, curve, config.upstreamHighWaterMark, (event) => this.linkMonitor.observe(event), config.zmtpLink,
      () => this.fanOut.drops.bad_frames++, config.linkHeartbeatMs);
    this.routing = new Routing(this.upstream);
    this.history = new HistoryClient(this.upstream);
    this.fanOut = new FanOut(config, this.routing, this.history, (topic) => this.upstream.confirmed(topic), this.log);
    this.positionCheck = new PositionCheck(this.routing, this.upstream, this.fanOut, config.positionCheckMs);
    this.fanOut.positionReplies = (header) => this.positionCheck.reply(header);
    this.fanOut.linkedMpcs = () => this.upstream.upCount();
    this.routing.requestBaseline = (topic) => this.positionCheck.baseline(topic);
    this.pool = new WorkerPool(config, this.log, this.routing, this.history, config.tlsCert === '' ? null : readTlsFiles(config.tlsCert, config.tlsKey));
    this.stallWatch = new StallWatch(this.pool.slots, config.workerStallMs, this.log);
    this.routing.sizeChanged = (size) => (this.pool.socketCounts.routedTopics = size);
    this.metrics = createMetrics(this.pool, this.fanOut, this.upstream, this.routing, this.history, this.adminConnections);
    this.presence = new GatewayPresence((frame) => this.upstream.send(frame), this.upstream.idText, config.presenceHeartbeatMs, () => ({
      clients: this.pool.slots.reduce((n, slot) => n + slot.stats[WorkerStat.connections]!, 0),
      workers: this.pool.slots.filter((slot) => slot.up).length,
    }));
    this.pool.presence = this.presence;
    this.fanOut.presenceResync = () => this.presence.resync();
  }

  /** Validates `options`, starts workers, connects to the MPC(s) and serves admin HTTP. */
  static async start(options: GatewayOptions = {}): Promise<Gateway> {
    const gateway = new Gateway(validateGatewayConfig(options));
    try {
      await gateway.startAll();
    } catch (error) {
      await gateway.stop(0).catch(() => {});
      throw error;
    }
    return gateway;
  }

  /** The WebSocket port all workers listen on. */
  get port(): number {
    return this.pool.port;
  }

  /** The admin HTTP port, or -1 when disabled. */
  get adminPort(): number {
    return this.adminBoundPort;
  }

  healthy(): { ok: boolean; detail: Record<string, unknown> } {
    const workersUp = this.pool.slots.filter((s) => s.up).length;
    const mpcUp = this.upstream.isUp();
    const stalledWorkers = this.stallWatch.stalled();
    return {
      ok: mpcUp && this.pool.allUp() && stalledWorkers.length === 0 && this.stopping === null,
      detail: { mpc: this.upstream.links(), workersUp, workers: this.pool.slots.length, stalledWorkers, draining: this.stopping !== null },
    };
  }

  /**
   * Re-reads `tlsCert`/`tlsKey` and hands them to every worker (SIGHUP): new handshakes get the new
   * certificate, open connections keep theirs. A file that is unreadable or not a matching pair is
   * logged and changes nothing. Resolves true when the new certificate is in use.
   */
  async reloadTls(): Promise<boolean> {
    const { tlsCert, tlsKey } = this.config;
    if (tlsCert === '') {
      this.log.info('TLS reload requested, but this gateway serves plain ws:// (no --tls-cert)');
      return false;
    }
    let material;
    try {
      material = readTlsFiles(tlsCert, tlsKey);
    } catch (error) {
      this.log.error({ err: (error as Error).message }, 'TLS reload failed; still serving the previous certificate');
      return false;
    }
    const workers = await this.pool.reloadTls(material);
    this.log.info({ ...describeCertificate(material), workers }, 'TLS certificate reloaded');
    return true;
  }

  /** The `/stats` JSON: every per-worker counter (counters.ts), with gateway-wide sums in `totals`. */
  stats() {
    const workers = this.pool.slots.map((slot) => {
      const entry: Record<string, unknown> = { index: slot.index, up: slot.up };
      for (const counter of WORKER_COUNTERS) entry[counter.key] = slot.stats[WorkerStat[counter.key]];
      entry.ringUsedBytes = slot.ring.used();
      entry.stalled = slot.stalled;
      entry.restartBackoffMs = this.pool.restartDelay(slot);
      entry.topics = this.routing.topicsOf(slot);
      return entry;
    });
    const totals: Record<string, number> = {};
    for (const counter of WORKER_COUNTERS) {
      if (counter.type === 'counter' || counter.key === 'connections' || counter.key === 'subscriptions') {
        totals[counter.key] = this.pool.slots.reduce((n, slot) => n + slot.stats[WorkerStat[counter.key]]!, 0);
      }
    }
    return {
      connections: totals.connections,
      openSockets: this.pool.openSockets(),
      /** Every socket held on the WebSocket port (mid-handshake too), and the budget it is held to (0: none). */
      sockets: this.pool.sockets(),
      socketLimit: this.pool.socketCounts.limit,
      messagesIn: this.fanOut.messagesIn,
      deliveries: totals.deliveries,
      /** Gateway-wide sums of the per-worker counters. */
      totals,
      publishDrops: { ...this.fanOut.drops },
      upstream: {
        topics: this.routing.size,
        roots: this.upstream.roots(),
        subscribeRetries: this.upstream.subscribeRetries,
        gaps: this.fanOut.upstreamGaps,
        repairedGaps: this.fanOut.repairedGaps,
        unrepairedGaps: this.fanOut.unrepairedGaps,
        repairedMessages: this.fanOut.repairedMessages,
        historyRequests: this.history.requests,
        positionChecks: this.positionCheck.requests,
        historyFailures: this.history.failures,
      },
      topics: this.routing.topics(),
      /** gopusher presence reported upstream: cards joined here, report frames, snapshots. */
      presence: { cards: this.presence.cards, ...this.presence.counters },
      mpc: this.upstream.links(),
      /** Connections on the admin port, capped (null when it is off). */
      adminConnections: this.admin === null ? null : this.adminConnections.stats(),
      workers,
    };
  }

  /**
   * Per worker, how many connections a publish on `topic` would reach right now (comlink RPC to each
   * worker: control plane only). A worker that is down counts 0; one that does not answer in time
   * fails the query.
   */
  reachable(topic: string, timeoutMs = 2000): Promise<number[]> {
    let timer: NodeJS.Timeout | undefined;
    // A worker that does not answer (busy or dying) fails the query instead of hanging the admin request.
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TormqError(ErrorCodes.WORKER_TIMEOUT, `a worker did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([this.pool.reachable(topic), timeout]).finally(() => clearTimeout(timer));
  }

  /**
   * Drains and stops: stop accepting, close clients with 1001 spread over `drainMs`, end the workers,
   * close the MPC link and admin server. Idempotent.
   */
  stop(drainMs = this.config.drainMs): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ drainMs }, 'draining');
      this.stallWatch.stop();
      await this.pool.drain(drainMs);
      this.positionCheck.stop();
      this.linkMonitor.stop();
      // The MPC(s) forget this gateway's presence at once (instead of after its heartbeat window).
      this.presence.stop();
      await this.upstream.close(LINGER_AT_STOP_MS);
      await new Promise<void>((resolve) => (this.admin ? this.admin.close(() => resolve()) : resolve()));
      this.log.info('stopped');
    })();
    return this.stopping;
  }

  private async startAll(): Promise<void> {
    const { config } = this;
    // SO_REUSEPORT would let a second gateway silently share a taken port: refuse that up front.
    if (config.port !== 0) await assertPortFree(config.host, config.port, 'WebSocket');
    await this.pool.start();
    this.positionCheck.start();
    this.linkMonitor.start();
    const receiving = this.upstream.start({
      frame: (frame) => this.fanOut.ingest(frame),
      dry: () => this.fanOut.flushNotifies(),
      unsubscribed: (root) => this.routing.forget(root),
      linkReconnected: () => this.routing.unconfirmAll(),
    });
    receiving.catch((error: unknown) => {
      this.log.fatal({ err: error }, 'MPC receive loop failed');
      process.exitCode = 1;
    });
    this.presence.start();
    if (config.adminPort !== -1) {
      this.admin = createAdminServer({
        healthy: () => this.healthy(),
        stats: () => this.stats(),
        metrics: this.metrics,
        testHook: config.testHooks ? (worker, action) => this.pool.testHook(worker, action) : undefined,
        online: (query) => answerOnline(query, (topic) => this.reachable(topic)),
      }, this.adminConnections);
      this.adminBoundPort = await listenOrFail(this.admin, config.adminHost, config.adminPort, 'admin');
    }
    // Taken once everything of the gateway's own is open: what is left, less the reserve, is for clients.
    this.socketBudget = socketBudget(config.fdReserve);
    if (this.socketBudget !== null) this.pool.socketCounts.limit = this.socketBudget.limit;
    this.stallWatch.start();
    const scheme = config.tlsCert === '' ? 'ws' : 'wss';
    const hint = loopbackHint(config.host, '--host');
    this.log.info(
      {
        port: this.port,
        adminPort: this.adminBoundPort,
        workers: config.workers,
        mpc: config.mpc,
        path: config.path,
        socketBudget: this.socketBudget,
        listening: listenAddresses(config.host).map((host) => urlOf(scheme, host, this.port, config.path)),
        ...(hint === null ? {} : { hint }),
      },
      'gateway ready',
    );
  }
}

function assertPortFree(host: string, port: number, role: string): Promise<void> {
  const probe = net.createServer();
  return listenOrFail(probe, host, port, role).then(() => new Promise((resolve) => probe.close(() => resolve())));
}
