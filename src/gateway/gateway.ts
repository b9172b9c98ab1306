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
import { ErrorCodes, TormqError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { createAdminServer } from './admin-server.js';
import { validateGatewayConfig, type GatewayConfig, type GatewayOptions } from './config.js';
import { FanOut } from './fan-out.js';
import { answerOnline } from './online.js';
import { createMetrics } from './metrics.js';
import { curveKeysOf } from './security-config.js';
import { WorkerStat } from './thread-protocol.js';
import { Upstream } from './upstream.js';
import { WorkerPool } from './worker-pool.js';

export class Gateway {
  readonly config: GatewayConfig;
  readonly log: Logger;
  readonly fanOut: FanOut;
  readonly upstream: Upstream;
  readonly pool: WorkerPool;
  readonly metrics: Registry;
  private admin: http.Server | null = null;
  private adminBoundPort = -1;
  private stopping: Promise<void> | null = null;

  private constructor(config: GatewayConfig) {
    this.config = config;
    this.log = createLogger('tormq-gateway', config.logLevel);
    this.fanOut = new FanOut(config);
    this.upstream = new Upstream(config.mpc, this.log, curveKeysOf(config), config.upstreamHighWaterMark);
    this.pool = new WorkerPool(config, this.log, {
      rootAdded: (slot, root) => {
        if (this.fanOut.addRoute(root, slot)) this.upstream.want(root);
      },
      rootRemoved: (slot, root) => {
        if (this.fanOut.removeRoute(root, slot)) this.upstream.release(root);
      },
    });
    this.metrics = createMetrics(this.pool, this.fanOut, this.upstream);
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
    return {
      ok: mpcUp && this.pool.allUp() && this.stopping === null,
      detail: { mpc: this.upstream.links(), workersUp, workers: this.pool.slots.length, draining: this.stopping !== null },
    };
  }

  stats() {
    const workers = this.pool.slots.map((slot) => ({
      index: slot.index,
      up: slot.up,
      connections: slot.stats[WorkerStat.CONNECTIONS]!,
      subscriptions: slot.stats[WorkerStat.SUBSCRIPTIONS]!,
      messages: slot.stats[WorkerStat.RECORDS]!,
      deliveries: slot.stats[WorkerStat.DELIVERIES]!,
      ringDrops: slot.ringDrops,
      ringUsedBytes: slot.ring.used(),
      slowClientDrops: slot.stats[WorkerStat.SLOW_DROPS]!,
      slowClientDisconnects: slot.stats[WorkerStat.SLOW_CLOSES]!,
      badFrames: slot.stats[WorkerStat.BAD_FRAMES]!,
      oversizeCloses: slot.stats[WorkerStat.OVERSIZE_CLOSES]!,
      rateLimitedFrames: slot.stats[WorkerStat.RATE_LIMITED_FRAMES]!,
      rateLimitDisconnects: slot.stats[WorkerStat.RATE_LIMIT_CLOSES]!,
      connectionsRejected: slot.stats[WorkerStat.CONNECTIONS_REJECTED]!,
      heartbeatTerminations: slot.stats[WorkerStat.HEARTBEAT_TERMINATIONS]!,
      eventLoopLagMs: slot.stats[WorkerStat.EVENT_LOOP_LAG_MS]!,
      authFailures: slot.stats[WorkerStat.AUTH_FAILURES]!,
      originRejections: slot.stats[WorkerStat.ORIGIN_REJECTIONS]!,
      forbiddenSubscriptions: slot.stats[WorkerStat.FORBIDDEN_SUBSCRIPTIONS]!,
      tokenExpiredCloses: slot.stats[WorkerStat.TOKEN_EXPIRED_CLOSES]!,
      tokenRefreshes: slot.stats[WorkerStat.TOKEN_REFRESHES]!,
      tokenRefreshFailures: slot.stats[WorkerStat.TOKEN_REFRESH_FAILURES]!,
      restarts: slot.restarts,
      roots: [...slot.roots],
    }));
    const sum = (key: keyof (typeof workers)[number]) => workers.reduce((n, w) => n + (w[key] as number), 0);
    return {
      connections: sum('connections'),
      openSockets: this.pool.openSockets(),
      messagesIn: this.fanOut.messagesIn,
      deliveries: sum('deliveries'),
      /** Gateway-wide sums of the per-worker counters below. */
      totals: {
        subscriptions: sum('subscriptions'),
        ringDrops: sum('ringDrops'),
        slowClientDrops: sum('slowClientDrops'),
        slowClientDisconnects: sum('slowClientDisconnects'),
        heartbeatTerminations: sum('heartbeatTerminations'),
        badFrames: sum('badFrames'),
        oversizeCloses: sum('oversizeCloses'),
        rateLimitedFrames: sum('rateLimitedFrames'),
        rateLimitDisconnects: sum('rateLimitDisconnects'),
        connectionsRejected: sum('connectionsRejected'),
        restarts: sum('restarts'),
      },
      publishDrops: { ...this.fanOut.drops },
      roots: this.fanOut.roots(),
      mpc: this.upstream.links(),
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
      timer = setTimeout(() => reject(new Error(`a worker did not answer within ${timeoutMs} ms`)), timeoutMs);
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
      await this.pool.drain(drainMs);
      this.upstream.close();
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
    const receiving = this.upstream.start((frames) => this.fanOut.ingest(frames));
    receiving.catch((error: unknown) => {
      this.log.fatal({ err: error }, 'MPC receive loop failed');
      process.exitCode = 1;
    });
    if (config.adminPort !== -1) {
      this.admin = createAdminServer({
        healthy: () => this.healthy(),
        stats: () => this.stats(),
        metrics: this.metrics,
        testHook: config.testHooks ? (worker, action) => this.pool.testHook(worker, action) : undefined,
        online: (query) => answerOnline(query, (topic) => this.reachable(topic)),
      });
      this.adminBoundPort = await listen(this.admin, config.adminHost, config.adminPort, 'admin');
    }
    this.log.info(
      { port: this.port, adminPort: this.adminBoundPort, workers: config.workers, mpc: config.mpc, path: config.path },
      'gateway ready',
    );
  }
}

function assertPortFree(host: string, port: number, role: string): Promise<void> {
  const probe = net.createServer();
  return listen(probe, host, port, role).then(() => new Promise((resolve) => probe.close(() => resolve())));
}

function listen(server: net.Server, host: string, port: number, role: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'address already in use' : error.message;
      reject(new TormqError(ErrorCodes.BIND_FAILED, `cannot bind the ${role} port ${host}:${port}: ${reason}`, { cause: error }));
    });
    server.listen({ host, port }, () => resolve((server.address() as net.AddressInfo).port));
  });
}
