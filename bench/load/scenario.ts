/**
 * One load scenario against one server (tormq or the baseline): start the MPC and the server pinned
 * to the server core, open the client fleet (piscina threads, pinned with this process to the load
 * core), publish at a fixed offered rate with send-time stamps, and measure what was delivered, how
 * fast, at what latency, and at what CPU cost to the server process.
 */
import { MessageChannel } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import { Publisher, encodeBody } from '../../src/sdk/publisher.js';
import { calibrate, type Calibration } from './calibrate.js';
import type { ClientProgress, ClientResult, ClientTask } from './client-worker.js';
import { monotonicUs } from './clock.js';
import { Histogram } from './histogram.js';
import { NatsPublisher } from './nats-publisher.js';
import { PythonPublisher } from './python-publisher.js';
import { startBaseline, startGateway, startMpc, startNats, type Server } from './processes.js';
import { coreBusy, coreTimes, gatewayQuantiles, latencyBuckets, type CoreTimes, type LatencyBuckets } from './window-probes.js';

export const SCENARIO_KINDS = ['broadcast', 'unicast', 'prefix', 'idle'] as const;
export type ScenarioKind = (typeof SCENARIO_KINDS)[number];

export interface ScenarioConfig {
  kind: ScenarioKind;
  /** tormq (MPC + gateway), the single-thread ws baseline (+ MPC), or nats-server alone (WebSocket listener). */
  target: 'tormq' | 'baseline' | 'nats';
  /** The nats-server binary (target nats). */
  natsPath?: string;
  /** Free-form label of a variant (e.g. a gateway flag being compared). */
  variant: string;
  connections: number;
  /** Messages per second offered by the publisher. */
  rate: number;
  /** Approximate body size in bytes. */
  payloadBytes: number;
  /** Measured publishing time (after a warm-up of `warmupMs`). */
  durationMs: number;
  warmupMs: number;
  /** After publishing, wait at most this long for the last deliveries (a saturated server lags). */
  settleCapMs: number;
  /** idle: how long after the 1 s sample RSS is sampled again (GC gives back what the burst took). */
  idleSettleMs: number;
  /** Gateway worker threads. */
  workers: number;
  /** Extra tormq-gateway flags (the variant). */
  gatewayFlags: string[];
  clientThreads: number;
  /** Core for MPC + server, core for this process (publisher + fleet); null = not pinned. */
  serverCore: number | null;
  /** The core of the client fleet and publisher (null: not pinned). */
  loadCore: number | null;
  /**
   * tormq's publisher: the tormq SDK in this process (node), or the original SDK's wire shape from
   * Debian's python3-zmq in a child process (python; broadcast and unicast only).
   */
  publisher?: 'node' | 'python';
  /** Write a V8 CPU profile of the gateway into this directory. */
  profileDir?: string;
}

export interface ScenarioResult {
  config: Omit<ScenarioConfig, 'profileDir'>;
  connectionsOpened: number;
  connectionsFailed: number;
  connectMs: number;
  connectionsPerSecond: number;
  serverRssIdleMB: number;
  /** The MPC's RSS before any connection (0 for nats: it has none). */
  mpcRssIdleMB: number;
  serverRssConnectedMB: number;
  /** RSS per connection 1 s after the connect burst. */
  kbPerConnection: number;
  /** idle: RSS per connection `idleSettleMs` later (the steady state; null for other kinds). */
  kbPerConnectionSettled: number | null;
  published: number;
  publishErrors: number;
  expectedDeliveries: number;
  delivered: number;
  lost: number;
  measuredSeconds: number;
  deliveredPerSecond: number;
  offeredDeliveriesPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number };
  /**
   * The same window inside the gateway (its tormq_delivery_latency_seconds: received from the MPC ->
   * written to the socket), from the histogram's buckets; Infinity: over its last bound (1 s), which
   * JSON writes as null. null: not a tormq gateway, or nothing recorded.
   */
  gatewayLatencyMs: { p50: number; p99: number } | null;
  /** How busy the servers' core and the load's core were over the window, 0..1 (null: not pinned, no /proc). */
  coreBusy: { server: number | null; load: number | null };
  /** The machine's speed just before the scenario, on the servers' core (calibrate.ts); null when it failed. */
  calibration: Calibration | null;
  serverCpuSeconds: number;
  /** Kernel share (stime) of serverCpuSeconds, 0..1. */
  serverSystemShare: number;
  serverCpuUsPerDelivery: number | null;
  /** User-space part only (utime): the JS and libuv work, without the kernel's TCP path. */
  serverUserUsPerDelivery: number | null;
  /** Server CPU time / wall time over the window: 1.0 = one core saturated. */
  serverCpuUtilisation: number;
  serverRssLoadedMB: number;
  mpcCpuSeconds: number;
  /** (MPC + server) CPU / deliveries: what the issue's per-message targets count (the server alone for nats). */
  serversCpuUsPerDelivery: number | null;
  drops: { ring: number; slowClientDrops: number; slowClientDisconnects: number; publish: Record<string, number> } | null;
  /** The gateway's own counters at the end (messages in from the MPC, deliveries written). */
  gatewayCounters: { messagesIn: number; ringRecordsRead: number; ringUsedBytes: number; deliveries: number } | null;
  closedByServer: number;
  unstamped: number;
  notes: string[];
}

/** Each connection's topic, and the topic of publish number `n`. */
function workload(kind: ScenarioKind, connections: number): { topics: string[]; publishTopic(n: number): string; recipients(topic: string): number } {
  switch (kind) {
    case 'broadcast':
      return { topics: Array(connections).fill('bench:all'), publishTopic: () => 'bench:all', recipients: () => connections };
    case 'unicast':
      return {
        topics: Array.from({ length: connections }, (_, i) => `bench:u:${i}`),
        publishTopic: (n) => `bench:u:${n % connections}`,
        recipients: () => 1,
      };
    case 'prefix': {
      // 10 inner nodes x 10 leaves; connection i sits on leaf (i % 10, i / 10 % 10); publishes go to
      // inner nodes round-robin, so each reaches every connection under it (a tenth of the fleet).
      const topics = Array.from({ length: connections }, (_, i) => `bench:p${i % 10}:l${Math.floor(i / 10) % 10}`);
      const under = Array.from({ length: 10 }, (_, a) => topics.filter((_, i) => i % 10 === a).length);
      return { topics, publishTopic: (n) => `bench:p${n % 10}`, recipients: (t) => under[Number(t.slice('bench:p'.length))]! };
    }
    case 'idle':
      return { topics: Array.from({ length: connections }, (_, i) => `bench:i:${i}`), publishTopic: () => 'bench:none', recipients: () => 0 };
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runScenario(cfg: ScenarioConfig, pool: Piscina): Promise<ScenarioResult> {
  const notes: string[] = [];
  // Before any server starts, so nothing else of the bench runs on that core.
  const calibration = await calibrate(cfg.serverCore);
  if (calibration === null) notes.push('the machine-speed yardstick (bench/load/calibrate.ts) failed');
  // A variant's flags written `--mpc:FLAG` go to the MPC (`--mpc:--cli=PATH` runs another MPC build).
  const mpcFlags = cfg.gatewayFlags.filter((f) => f.startsWith('--mpc:')).map((f) => f.slice('--mpc:'.length));
  const gatewayFlags = cfg.gatewayFlags.filter((f) => !f.startsWith('--mpc:'));
  // The baseline subscribes like the original TORMQ gateway, to `[root, body]` frames: the MPC's plain port.
  if (cfg.target === 'baseline') mpcFlags.push('--plain-port', '0');
  const mpc = cfg.target === 'nats' ? null : await startMpc(cfg.serverCore, cfg.profileDir ? ['--cpu-prof', '--cpu-prof-dir', cfg.profileDir, '--cpu-prof-name', `mpc-${Date.now()}.cpuprofile`] : [], mpcFlags);
  let server: Server;
  let stats: (() => Promise<Record<string, unknown>>) | null = null;
  let metrics: (() => Promise<string>) | null = null;
  let url: string;
  let natsPort = 0;
  if (mpc === null) {
    const nats = await startNats(cfg.serverCore, cfg.natsPath ?? 'nats-server');
    server = nats.server;
    url = nats.url;
    natsPort = nats.port;
  } else if (cfg.target === 'tormq') {
    const nodeFlags = cfg.profileDir ? ['--cpu-prof', '--cpu-prof-dir', cfg.profileDir] : [];
    // Heartbeats off: pings to 10k idle clients would be load the scenario does not ask for.
    const gateway = await startGateway(cfg.serverCore, mpc.gatewayPort, cfg.workers, ['--heartbeat-ms', '0', '--no-demo-page', ...gatewayFlags], nodeFlags);
    server = gateway.server;
    stats = gateway.stats;
    metrics = gateway.metrics;
    url = gateway.url;
  } else {
    if (mpc.plainPort === null) throw new Error('the MPC did not report its plain port (--plain-port 0) for the baseline');
    const baseline = await startBaseline(cfg.serverCore, mpc.plainPort);
    server = baseline.server;
    url = baseline.url;
  }
  const fleet: Array<{ port: MessageChannel['port1']; result: Promise<ClientResult>; ready: Promise<ClientProgress & { type: 'ready' }>; received: number; closed: number }> = [];
  let publisher: Publisher | null = null;
  let natsPublisher: NatsPublisher | null = null;
  let pythonPublisher: PythonPublisher | null = null;
  try {
    await sleep(500); // let the fresh process finish start-up work before the idle RSS sample
    const rssIdle = server.sample().rssBytes;
    const mpcRssIdle = mpc?.server.sample().rssBytes ?? 0;
    const { topics, publishTopic, recipients } = workload(cfg.kind, cfg.connections);

    // --- connect the fleet ---------------------------------------------------------------------------
    const connectStarted = performance.now();
    const threads = Math.max(1, Math.min(cfg.clientThreads, cfg.connections));
    for (let t = 0; t < threads; t++) {
      const share = topics.filter((_, i) => i % threads === t);
      const { port1, port2 } = new MessageChannel();
      const member = { port: port1, received: 0, closed: 0 } as (typeof fleet)[number];
      member.ready = new Promise((resolve) => {
        port1.on('message', (m: ClientProgress) => {
          if (m.type === 'ready') resolve(m);
          else {
            member.received = m.received;
            member.closed = m.closedByServer;
          }
        });
      });
      const task: ClientTask = {
        url,
        topics: share,
        connectConcurrency: 64,
        connectTimeoutMs: 30_000,
        maxLifetimeMs: 30_000 + cfg.warmupMs + cfg.durationMs + cfg.idleSettleMs + 120_000,
        port: port2,
        protocol: cfg.target === 'nats' ? 'nats' : 'tormq',
      };
      member.result = pool.run(task, { name: 'runClients', transferList: [port2] }) as Promise<ClientResult>;
      fleet.push(member);
    }
    const readies = await Promise.race([
      Promise.all(fleet.map((m) => m.ready)),
      sleep(60_000).then(() => {
        throw new Error('client fleet not connected within 60 s');
      }),
    ]);
    const connectMs = performance.now() - connectStarted;
    const opened = readies.reduce((n, r) => n + r.opened, 0);
    const failed = readies.reduce((n, r) => n + r.failed, 0);
    if (failed > 0) notes.push(`${failed} connections failed to open or subscribe`);
    await sleep(1000); // let the server settle after the connect burst before sampling its RSS
    const rssConnected = server.sample().rssBytes;
    // V8 keeps the young generation and heap slack a burst grew to, and gives most of it back only
    // when its memory reducer runs (measured: 9.3 KB per connection at 1 s, 5.4-5.6 after 30-60 s);
    // Go's scavenger does the same for nats-server. The steady state is what capacity planning needs.
    let rssSettled: number | null = null;
    if (cfg.kind === 'idle') {
      await sleep(cfg.idleSettleMs);
      rssSettled = server.sample().rssBytes;
    }

    // --- publish: warm-up, then the measured window --------------------------------------------------
    const received = (): number => fleet.reduce((n, m) => n + m.received, 0);
    let published = 0;
    let publishErrors = 0;
    let expected = 0;
    let latency0: LatencyBuckets | null = null;
    let latency1: LatencyBuckets | null = null;
    let cores0: CoreTimes = null;
    let cores1: CoreTimes = null;
    let window = { t0: 0, t1: 0, cpu0: 0, cpu1: 0, sys0: 0, sys1: 0, mpc0: 0, mpc1: 0, base: 0, delivered: 0, published: 0, expected: 0 };
    if (cfg.kind !== 'idle') {
      const pad = 'x'.repeat(Math.max(0, cfg.payloadBytes - encodeBody(publishTopic(0), { t: 1e15, p: '' }).length));
      const onError = (): void => {
        publishErrors++;
      };
      let pub: { send(topic: string, data: unknown): void };
      if (mpc === null) {
        natsPublisher = new NatsPublisher('127.0.0.1', natsPort);
        await natsPublisher.ready();
        pub = natsPublisher;
      } else if (cfg.publisher === 'python' && (cfg.kind === 'unicast' || cfg.kind === 'broadcast')) {
        // (prefix keeps the tormq SDK: the python publisher knows the broadcast and unicast topics only)
        pythonPublisher = await PythonPublisher.start(mpc.publisherPort, cfg.kind, cfg.connections, pad);
        pub = { send: () => {} };
      } else {
        const sdk = new Publisher('127.0.0.1', mpc.publisherPort, { maxQueue: 100_000 });
        publisher = sdk;
        await sdk.ready({ topic: publishTopic(0), timeoutMs: 15_000 });
        pub = { send: (topic, data) => void sdk.send(topic, data).catch(onError) };
      }
      const publishFor = async (ms: number): Promise<void> => {
        const start = performance.now();
        const total = Math.round((cfg.rate * ms) / 1000);
        if (pythonPublisher !== null) {
          const sent = await pythonPublisher.publish(published, total, cfg.rate);
          for (let n = published; n < published + sent; n++) expected += recipients(publishTopic(n));
          published += sent;
          publishErrors += total - sent;
          return;
        }
        let sent = 0;
        while (sent < total && performance.now() - start < ms + 5000) {
          const due = Math.min(total, Math.floor(((performance.now() - start) * cfg.rate) / 1000) + 1);
          for (; sent < due; sent++) {
            const topic = publishTopic(published);
            pub.send(topic, { t: Math.round(monotonicUs()), p: pad });
            expected += recipients(topic);
            published++;
          }
          await sleep(1);
        }
      };
      /** Waits until every expected delivery arrived, or nothing arrived for `idleMs`. */
      const settle = async (idleMs: number, capMs: number): Promise<number> => {
        const deadline = performance.now() + capMs;
        let last = received();
        let lastChange = performance.now();
        while (received() < expected && performance.now() < deadline && performance.now() - lastChange < idleMs) {
          await sleep(50);
          const now = received();
          if (now !== last) {
            last = now;
            lastChange = performance.now();
          }
        }
        return lastChange;
      };

      await publishFor(cfg.warmupMs);
      await settle(2000, 10_000);
      // Read before the CPU sample and after the closing one, so that serving them is not counted.
      latency0 = metrics === null ? null : latencyBuckets(await metrics());
      const base = received();
      cores0 = coreTimes();
      const s0 = server.sample();
      const cpu0 = s0.cpuSeconds;
      const mpc0 = mpc?.server.sample().cpuSeconds ?? 0;
      const baseExpected = expected;
      const basePublished = published;
      for (const m of fleet) m.port.postMessage({ type: 'reset' });
      const t0 = performance.now();
      await publishFor(cfg.durationMs);
      const lastChange = await settle(3000, cfg.settleCapMs);
      const s1 = server.sample();
      const cpu1 = s1.cpuSeconds;
      const mpc1 = mpc?.server.sample().cpuSeconds ?? 0;
      cores1 = coreTimes();
      latency1 = metrics === null ? null : latencyBuckets(await metrics());
      await sleep(250); // one more progress round from every thread
      window = {
        t0, t1: Math.max(lastChange, t0 + cfg.durationMs), cpu0, cpu1, sys0: s0.systemSeconds, sys1: s1.systemSeconds, mpc0, mpc1, base,
        delivered: received() - base, published: published - basePublished, expected: expected - baseExpected,
      };
    }
    const rssLoaded = server.sample().rssBytes;
    // Warnings and errors the server logged during the run belong in the record.
    for (const line of server.logs) if (typeof line.level === 'number' && line.level >= 40) notes.push(`${server.name}: ${String(line.msg)}${line.err ? ` ${JSON.stringify(line.err).slice(0, 300)}` : ''}`);
    for (const line of server.stderr.slice(0, 5)) notes.push(`${server.name} stderr: ${line.slice(0, 300)}`);
    // nats-server logs plain lines: its warnings (slow consumers) and errors belong in the record too.
    for (const line of server.logs) if (typeof line.raw === 'string' && /\[(ERR|FTL)\]|[Ss]low [Cc]onsumer/.test(line.raw)) notes.push(`${server.name}: ${line.raw.slice(0, 300)}`);
    if (notes.length > 20) notes.splice(20, notes.length - 20, '(more notes left out)');
    for (const e of natsPublisher?.errors.slice(0, 5) ?? []) notes.push(`nats publisher: ${e}`);
    const gatewayStats = stats === null ? null : ((await stats()) as { workers: Array<Record<string, number>>; publishDrops: Record<string, number>; messagesIn: number; deliveries: number });

    // --- collect ----------------------------------------------------------------------------------------
    for (const m of fleet) m.port.postMessage({ type: 'stop' });
    const results = await Promise.all(fleet.map((m) => m.result));
    const histogram = new Histogram();
    for (const r of results) histogram.add(r.counts, r.max);
    const unstamped = results.reduce((n, r) => n + r.unstamped, 0);
    const closedByServer = results.reduce((n, r) => n + r.closedByServer, 0);
    const natsErrors = results.reduce((n, r) => n + r.natsErrors, 0);
    if (natsErrors > 0) notes.push(`${natsErrors} NATS -ERR lines at the clients`);
    // Clients count from process start; the warm-up part was delivered before the reset mark.
    const totalReceived = results.reduce((n, r) => n + r.received, 0);
    const delivered = cfg.kind === 'idle' ? 0 : totalReceived - window.base;
    const measuredSeconds = cfg.kind === 'idle' ? 0 : (window.t1 - window.t0) / 1000;
    const cpuSeconds = window.cpu1 - window.cpu0;
    const sum = (key: string) => (gatewayStats?.workers ?? []).reduce((n, w) => n + (w[key] ?? 0), 0);
    const q = (p: number) => histogram.quantile(p) / 1000;
    return {
      config: { ...cfg, profileDir: undefined } as ScenarioResult['config'],
      connectionsOpened: opened,
      connectionsFailed: failed,
      connectMs,
      connectionsPerSecond: opened / (connectMs / 1000),
      serverRssIdleMB: rssIdle / 2 ** 20,
      mpcRssIdleMB: mpcRssIdle / 2 ** 20,
      serverRssConnectedMB: rssConnected / 2 ** 20,
      kbPerConnection: (rssConnected - rssIdle) / 1024 / Math.max(1, opened),
      kbPerConnectionSettled: rssSettled === null ? null : (rssSettled - rssIdle) / 1024 / Math.max(1, opened),
      published: window.published,
      publishErrors,
      expectedDeliveries: window.expected,
      delivered,
      lost: Math.max(0, window.expected - delivered),
      measuredSeconds,
      deliveredPerSecond: measuredSeconds > 0 ? delivered / measuredSeconds : 0,
      offeredDeliveriesPerSecond: cfg.kind === 'idle' ? 0 : (window.expected / cfg.durationMs) * 1000,
      latencyMs: { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: histogram.max / 1000 },
      gatewayLatencyMs: latency0 === null || latency1 === null ? null : gatewayQuantiles(latency0, latency1),
      coreBusy: {
        server: cfg.serverCore === null ? null : coreBusy(cores0, cores1, cfg.serverCore),
        load: cfg.loadCore === null ? null : coreBusy(cores0, cores1, cfg.loadCore),
      },
      calibration,
      serverCpuSeconds: cpuSeconds,
      serverSystemShare: cpuSeconds > 0 ? (window.sys1 - window.sys0) / cpuSeconds : 0,
      serverCpuUsPerDelivery: delivered > 0 ? (cpuSeconds * 1e6) / delivered : null,
      serverUserUsPerDelivery: delivered > 0 ? ((cpuSeconds - (window.sys1 - window.sys0)) * 1e6) / delivered : null,
      serverCpuUtilisation: measuredSeconds > 0 ? cpuSeconds / measuredSeconds : 0,
      serverRssLoadedMB: rssLoaded / 2 ** 20,
      mpcCpuSeconds: window.mpc1 - window.mpc0,
      serversCpuUsPerDelivery: delivered > 0 ? ((cpuSeconds + window.mpc1 - window.mpc0) * 1e6) / delivered : null,
      drops: gatewayStats === null ? null : {
        ring: sum('ringDrops'),
        slowClientDrops: sum('slowClientDrops'),
        slowClientDisconnects: sum('slowClientDisconnects'),
        publish: Object.fromEntries(Object.entries(gatewayStats.publishDrops).filter(([, n]) => n > 0)),
      },
      gatewayCounters: gatewayStats === null ? null : { messagesIn: gatewayStats.messagesIn, ringRecordsRead: sum('messages'), ringUsedBytes: sum('ringUsedBytes'), deliveries: gatewayStats.deliveries },
      closedByServer,
      unstamped,
      notes,
    };
  } finally {
    for (const m of fleet) {
      try {
        m.port.postMessage({ type: 'stop' });
      } catch {
        // already closed
      }
    }
    await Promise.allSettled(fleet.map((m) => m.result));
    await publisher?.close().catch(() => {});
    await natsPublisher?.close().catch(() => {});
    await pythonPublisher?.close();
    await server.stop();
    await mpc?.server.stop();
  }
}
