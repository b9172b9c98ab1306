/**
 * Spawns the worker threads, restarts one that dies, and hands their root reports to the routing.
 * Each slot keeps its ring and counters across restarts, so counters stay monotonic for Prometheus.
 */
import { MessageChannel, Worker } from 'node:worker_threads';
import * as Comlink from 'comlink/dist/esm/comlink.mjs';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { ErrorCodes, TormqError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { TlsMaterial } from '../../tls-files.js';
import type { GatewayConfig } from '../shared/config.js';
import { WORKER_STATS_LENGTH, WorkerStat } from '../shared/counters.js';
import { RingWriter, createRingBuffer } from '../shared/ring.js';
import { SocketCounts, SocketKind, gatewaySharedBytes } from '../shared/socket-counts.js';
import {
  GatewayShared,
  TEST_HOOK_ACTIONS,
  type TestHookAction,
  type MainEvent,
  type WorkerControl,
  type WorkerData,
  type WorkerEvent,
} from '../shared/thread-protocol.js';
import type { HistoryClient } from './history-client.js';
import type { GatewayPresence } from './presence.js';
import { RingSlot } from './ring-slot.js';
import type { Routing } from './routing.js';

/** One worker: its ring and counters (kept across restarts) and its current thread. */
export class WorkerSlot extends RingSlot {
  worker: Worker | null = null;
  control: Comlink.Remote<WorkerControl> | null = null;
  /** Resolves when the current thread exits (a comlink call to a dead worker would never settle). */
  exited: Promise<void> = Promise.resolve();
  up = false;
  /** When the current thread started listening (Date.now). */
  upSince = 0;
  /** Deaths in a row, each after less than `restartBackoffResetMs` of running: picks the restart backoff. */
  failures = 0;
  /** Its event loop has not run for `workerStallMs` (stall-watch.ts). */
  stalled = false;

  constructor(
    index: number,
    readonly ringBuffer: SharedArrayBuffer,
    readonly statsBuffer: SharedArrayBuffer,
  ) {
    super(index, new RingWriter(ringBuffer), new Float64Array(statsBuffer));
  }
}

export const RESTART_BACKOFF_MS = [100, 250, 500, 1000, 2000, 5000] as const;

export class WorkerPool {
  readonly slots: WorkerSlot[] = [];
  readonly sharedBuffer: SharedArrayBuffer;
  /** Sockets and connections per worker, gateway-wide totals, the socket budget. */
  readonly socketCounts: SocketCounts;
  /** The bound WebSocket port (known after `start`). */
  port = 0;
  /** What workers serve wss:// with; a worker started (or restarted) later gets the latest. */
  private tls: TlsMaterial | null = null;
  /** Where workers' gopusher presence reports go (main/presence.ts). */
  presence: GatewayPresence | null = null;
  private stopping = false;

  constructor(
    private readonly config: GatewayConfig,
    private readonly log: Logger,
    private readonly routing: Routing,
    private readonly history: HistoryClient,
    tls: TlsMaterial | null = null,
  ) {
    this.tls = tls;
    this.sharedBuffer = new SharedArrayBuffer(gatewaySharedBytes(config.workers));
    this.socketCounts = new SocketCounts(this.sharedBuffer);
  }

  /**
   * Hands a new certificate and key to every running worker (and to workers started from now on).
   * Resolves with how many workers took it; a worker that is down gets it when it restarts.
   */
  async reloadTls(material: TlsMaterial): Promise<number> {
    this.tls = material;
    const results = await Promise.allSettled(this.slots.filter((s) => s.up).map((slot) => this.rpc(slot, (control) => control.reloadTls(material))));
    return results.filter((r) => r.status === 'fulfilled').length;
  }

  /** Starts the workers one after another: the first binds the port (maybe 0), the rest join it. */
  async start(): Promise<void> {
    for (let index = 0; index < this.config.workers; index++) {
      const slot = new WorkerSlot(index, createRingBuffer(this.config.ringBytes), new SharedArrayBuffer(WORKER_STATS_LENGTH * 8));
      this.slots.push(slot);
      const port = await this.spawn(slot, index === 0 ? this.config.port : this.port);
      if (index === 0) this.port = port;
    }
  }

  /** Sockets counted against `maxConnections` across all workers (open plus mid-handshake). */
  openSockets(): number {
    return this.socketCounts.total(SocketKind.connections);
  }

  /** Every socket the workers accepted on the WebSocket port and hold (counted against the socket budget). */
  sockets(): number {
    return this.socketCounts.total(SocketKind.sockets);
  }

  /**
   * How long a restart of `slot` would wait if its thread died now: the backoff grows with deaths in
   * a row (0.1 s to 5 s) and starts over once a thread has run `restartBackoffResetMs`.
   */
  restartDelay(slot: WorkerSlot, now = Date.now()): number {
    return RESTART_BACKOFF_MS[Math.min(this.failuresInARow(slot, now), RESTART_BACKOFF_MS.length - 1)]!;
  }

  /** Deaths in a row so far, forgetting them once the current thread has run long enough. */
  private failuresInARow(slot: WorkerSlot, now: number): number {
    return slot.up && now - slot.upSince >= this.config.restartBackoffResetMs ? 0 : slot.failures;
  }

  /**
   * Test hooks (`--enable-test-hooks` only): `crash`, `exit` or `stall` worker `index`; `release` ends
   * a stall. The worker refuses too when the hooks are off.
   */
  async testHook(index: number, action: string): Promise<void> {
    if (!this.config.testHooks) throw new TormqError(ErrorCodes.TEST_HOOK_REFUSED, 'test hooks are disabled (start with --enable-test-hooks)');
    const shared = new Int32Array(this.sharedBuffer);
    if (action === 'release') {
      Atomics.store(shared, GatewayShared.TEST_STALL, 0);
      Atomics.notify(shared, GatewayShared.TEST_STALL);
      return;
    }
    const slot = this.slots[index];
    if (!slot?.control) throw new TormqError(ErrorCodes.WORKER_UNAVAILABLE, `no running worker ${index}`);
    if (!(TEST_HOOK_ACTIONS as readonly string[]).includes(action)) throw new TormqError(ErrorCodes.TEST_HOOK_REFUSED, `unknown test hook ${action}`);
    if (action === 'stall') Atomics.store(shared, GatewayShared.TEST_STALL, 1);
    const exited = slot.exited.then(() => 'exited' as const);
    // crash/exit may end the thread before its reply is delivered: its exit answers the call then.
    const outcome = await Promise.race([slot.control.testHook(action as TestHookAction), exited]);
    if (outcome === 'exited' && action === 'stall') throw new TormqError(ErrorCodes.WORKER_UNAVAILABLE, `worker ${index} exited`);
  }

  /**
   * Per worker, connections a publish on `topic` reaches (the `/online` query). A worker that is down,
   * or exits before answering, counts 0: its connections are gone.
   */
  reachable(topic: string): Promise<number[]> {
    return Promise.all(
      this.slots.map((slot) => (slot.up ? this.rpc(slot, (control) => control.reachable(topic)).catch(() => 0) : 0)),
    );
  }

  /** Calls the worker's control RPC; rejects if the thread exits before answering. */
  private async rpc<T>(slot: WorkerSlot, call: (control: Comlink.Remote<WorkerControl>) => Promise<T>): Promise<T> {
    if (!slot.control) throw new TormqError(ErrorCodes.WORKER_UNAVAILABLE, `worker ${slot.index} is not running`);
    const exited = slot.exited.then(() => {
      throw new TormqError(ErrorCodes.WORKER_UNAVAILABLE, `worker ${slot.index} exited during a control call`);
    });
    exited.catch(() => {}); // the thread usually exits long after the call settled: not an unhandled rejection
    return Promise.race([call(slot.control), exited]);
  }

  allUp(): boolean {
    return this.slots.length > 0 && this.slots.every((s) => s.up);
  }

  /** Drains every worker (close clients with 1001 over `windowMs`), then ends the threads. */
  async drain(windowMs: number): Promise<void> {
    this.stopping = true;
    // A worker dying mid-drain must not hang the shutdown: rpc settles when it exits.
    await Promise.allSettled(this.slots.map((slot) => this.rpc(slot, (control) => control.drain(windowMs))));
    await Promise.allSettled(this.slots.map((slot) => slot.worker?.terminate()));
  }

  private spawn(slot: WorkerSlot, port: number): Promise<number> {
    const { port1, port2 } = new MessageChannel();
    const data: WorkerData = {
      index: slot.index,
      config: this.config,
      port,
      ring: slot.ringBuffer,
      stats: slot.statsBuffer,
      shared: this.sharedBuffer,
      controlPort: port2,
      tls: this.tls,
    };
    const worker = new Worker(new URL('../worker/worker.js', import.meta.url), {
      workerData: data,
      transferList: [port2],
      name: `tormq-worker-${slot.index}`,
      resourceLimits: this.config.workerYoungGenerationMb > 0 ? { maxYoungGenerationSizeMb: this.config.workerYoungGenerationMb } : {},
    });
    slot.worker = worker;
    slot.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    slot.control = Comlink.wrap<WorkerControl>(nodeEndpoint(port1 as unknown as Parameters<typeof nodeEndpoint>[0]));

    return new Promise((resolve, reject) => {
      let listening = false;
      worker.on('message', (event: WorkerEvent) => {
        switch (event.type) {
          case 'listening':
            listening = true;
            slot.up = true;
            slot.upSince = Date.now();
            this.log.info({ worker: slot.index, port: event.port, threadId: worker.threadId }, 'worker listening');
            resolve(event.port);
            break;
          case 'interest-added':
            this.routing.add(event.topic, slot, event.seq);
            // Routed (and counted there) before it stops counting as reported: never counted by neither.
            if (slot.worker === worker) this.socketCounts.add(slot.index, SocketKind.topicReports, -1);
            break;
          case 'interest-removed':
            this.routing.remove(event.topic, slot);
            break;
          case 'mark-request':
            this.routing.mark(event.topic, slot, event.seq);
            break;
          case 'presence':
            if (slot.worker === worker) this.presence?.worker(slot.index, event.cards);
            break;
          case 'history-request':
            void this.history.fetch(event.topic, event.epoch, event.after, event.limit).then((result) => {
              if (slot.worker !== worker) return; // that thread is gone
              const reply: MainEvent = { type: 'history-reply', id: event.id, ...result };
              worker.postMessage(reply);
            });
            break;
          case 'fatal':
            this.log.error({ worker: slot.index, code: event.error.code, err: event.error.message }, 'worker reported a fatal error');
            break;
        }
      });
      worker.on('error', (error) => {
        this.log.error({ worker: slot.index, err: error }, 'worker error');
        if (!listening) reject(error);
      });
      worker.on('exit', (code) => {
        port1.close();
        this.onExit(slot, worker, code);
        if (!listening) reject(new Error(`worker ${slot.index} exited with code ${code} before listening`));
      });
    });
  }

  private onExit(slot: WorkerSlot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    // Before `up` goes: a thread that ran long enough starts the backoff over.
    const now = Date.now();
    const delay = this.restartDelay(slot, now);
    slot.failures = this.failuresInARow(slot, now) + 1;
    slot.up = false;
    slot.stalled = false;
    slot.worker = null;
    slot.control = null;
    this.routing.removeSlot(slot);
    this.presence?.workerGone(slot.index);
    // Its sockets closed with the thread, without running their 'close' listeners: uncount them.
    this.socketCounts.clear(slot.index);
    // Gauges belong to the dead thread; counters carry on in the replacement.
    slot.stats[WorkerStat.connections] = 0;
    slot.stats[WorkerStat.subscriptions] = 0;
    if (this.stopping) return;
    slot.stats[WorkerStat.restarts]++;
    this.log.warn({ worker: slot.index, code, restartInMs: delay }, 'worker died; restarting');
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(slot, this.port).catch((error: unknown) => this.log.error({ worker: slot.index, err: error }, 'worker restart failed'));
    }, delay).unref();
  }
}
