#!/usr/bin/env node
/**
 * `npm run fuzz [-- options]`: random client frames and random publisher messages against a real
 * tormq-mpc and tormq-gateway (2 workers), seeded and bounded in count and time. Not part of CI: a
 * million of each takes minutes.
 *
 * Frames come from a small grammar (valid frames with random fields, random JSON, raw bytes, byte-level
 * mutations of valid frames, invalid UTF-8, deep nesting, binary frames); publisher messages likewise
 * (random multipart, mutated bodies, bad UTF-8, wrong roots, valid messages on the fuzzed topics so that
 * the delivery path runs too). Throughout, canary clients (one original, one tormq.v2) receive a message
 * per 100 ms on their own topic. The run fails when a process exits, a worker restarts, a canary misses,
 * reorders or loses its connection, a fuzz connection is closed with 1011, or /healthz is not 200.
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { Publisher as ZmqPublisher } from 'zeromq';
import { Publisher } from '../src/index.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../test/helpers/processes.js';
import { rssBytes } from '../test/helpers/probes.js';

const { values: o } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    frames: { type: 'string', default: '1000000' },
    messages: { type: 'string', default: '1000000' },
    connections: { type: 'string', default: '32' },
    'max-seconds': { type: 'string', default: '900' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (o.help) {
  console.log('Usage: npm run fuzz -- [--seed N] [--frames N] [--messages N] [--connections N] [--max-seconds N]');
  process.exit(0);
}
const SEED = Number(o.seed);
const FRAMES = Number(o.frames);
const MESSAGES = Number(o.messages);
const CONNECTIONS = Number(o.connections);
const DEADLINE = Date.now() + Number(o['max-seconds']) * 1000;

/** mulberry32: a small seeded PRNG, so that a failing run can be replayed with its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(readonly random: () => number) {}
  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Strings that stress parsers and validators: separators, controls, surrogates, long runs. */
  text(): string {
    switch (this.int(8)) {
      case 0: return '';
      case 1: return ':'.repeat(1 + this.int(5));
      case 2: return String.fromCharCode(this.int(0x20));
      case 3: return '\ud800' + 'x'; // a lone surrogate (JSON.stringify escapes it)
      case 4: return 'a'.repeat(this.int(600));
      case 5: return Array.from({ length: 1 + this.int(40) }, () => String.fromCharCode(33 + this.int(90))).join('');
      case 6: return this.topic();
      default: return 'é€😀'.slice(0, 1 + this.int(4));
    }
  }
  topic(): string {
    const segments = 1 + this.int(this.chance(0.9) ? 3 : 30);
    return ['f', ...Array.from({ length: segments - 1 }, () => String(this.int(4)))].join(':');
  }
  json(depth = 0): unknown {
    switch (this.int(depth > 4 ? 5 : 8)) {
      case 0: return null;
      case 1: return this.chance(0.5);
      case 2: return this.pick([0, -1, 1.5, 1e308, -0, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER]);
      case 3: return this.text();
      case 4: return this.topic();
      case 5: return Array.from({ length: this.int(6) }, () => this.json(depth + 1));
      default: return Object.fromEntries(Array.from({ length: this.int(5) }, () => [this.pick(['event', 'topics', 'id', 'since', 'recover', 'data', 'token', this.text()]), this.json(depth + 1)]));
    }
  }
  deep(): string {
    const n = 1 + this.int(20_000);
    const open = this.pick(['[', '{"a":']);
    return open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(this.chance(0.5) ? n : this.int(n));
  }
  mutate(buf: Buffer): Buffer {
    const out = Buffer.from(buf);
    for (let k = 1 + this.int(4); k > 0 && out.length > 0; k--) out[this.int(out.length)] = this.int(256);
    if (this.chance(0.3)) return out.subarray(0, this.int(out.length + 1));
    return out;
  }
}

/** One client frame: [payload, binary]. */
function clientFrame(g: Gen): [Buffer | string, boolean] {
  const valid = (): Record<string, unknown> => {
    const event = g.pick(['subscribe', 'unsubscribe', 'ping', 'refresh', 'join', 'publish', '', 'SUBSCRIBE']);
    const frame: Record<string, unknown> = { event };
    if (g.chance(0.8)) frame.topics = g.chance(0.8) ? Array.from({ length: g.int(g.chance(0.95) ? 4 : 300) }, () => g.chance(0.9) ? g.topic() : g.json()) : g.json();
    if (g.chance(0.6)) frame.id = g.chance(0.8) ? g.int(1e6) : g.json();
    if (g.chance(0.2)) frame.recover = g.json();
    if (g.chance(0.2)) frame.since = g.chance(0.5) ? { [g.topic()]: { epoch: g.text(), offset: g.json() } } : g.json();
    if (event === 'join' || g.chance(0.1)) frame.data = g.chance(0.7) ? { app_id: g.text(), card_id: g.text() } : g.json();
    if (event === 'refresh' || g.chance(0.05)) frame.token = g.text();
    return frame;
  };
  // Frames that end the connection (not UTF-8: 1007) are rare, so that most frames reach the session code.
  const r = g.int(100);
  if (r < 1) return [g.bytes(1 + g.int(64)), false]; // raw bytes as text: mostly not UTF-8 (1007)
  if (r < 2) return [Buffer.from(JSON.stringify(valid()).replace(/"[^"]*"/, '"\xff\xfe"'), 'latin1'), false]; // JSON, not UTF-8
  if (r < 10) return [g.bytes(g.int(64)), true]; // binary frames
  if (r < 20) return [JSON.stringify(g.json()), false];
  if (r < 25) return [g.deep(), false];
  if (r < 45) return [g.mutate(Buffer.from(JSON.stringify(valid()))).toString('latin1'), false];
  return [JSON.stringify(valid()), false];
}

/** One publisher message: the frames of a multipart message. */
function publisherMessage(g: Gen): Buffer[] {
  const body = (): Record<string, unknown> => {
    const b: Record<string, unknown> = { topic: g.chance(0.85) ? g.topic() : g.json(), data: g.json() };
    if (g.chance(0.2)) b[g.text()] = g.json();
    return b;
  };
  const rootOf = (t: unknown) => (typeof t === 'string' ? t.split(':')[0]! : 'f');
  const only = process.env.FUZZ_PUBLISHER_CASE; // to bisect: one kind of message only
  switch (only === undefined ? g.int(10) : (g.int(10), Number(only))) {
    case 0: return Array.from({ length: 1 + g.int(4) }, () => g.bytes(g.int(100)));
    case 1: {
      const b = body();
      return [Buffer.from(rootOf(b.topic)), g.mutate(Buffer.from(JSON.stringify(b)))];
    }
    case 2: {
      const b = body();
      return [Buffer.from(rootOf(b.topic)), Buffer.from(JSON.stringify(b).replace(/"data":"?/, '"data":"\xe9\xff'), 'latin1')];
    }
    case 3: return [Buffer.from(g.pick(['f', 'g', '', 'f:0'])), Buffer.from(JSON.stringify(body()))]; // wrong or empty root
    case 4: return [Buffer.from('f'), Buffer.from(`{"topic": "f", "data": ${g.deep()}}`)];
    case 5: return [Buffer.from('f'), Buffer.from(`{"topic": "f", "data": "${'x'.repeat(g.int(2 << 20))}"}`)]; // up to 2 MiB: over --max-message-bytes
    default: {
      // The original SDK's format: delivered to the fuzz connections that subscribed the topic.
      const topic = g.topic();
      return [Buffer.from(rootOf(topic)), Buffer.from(`{"topic": ${JSON.stringify(topic)}, "data": ${JSON.stringify(g.json())}}`)];
    }
  }
}

const failures: string[] = [];
const fail = (why: string) => {
  if (failures.length < 20) failures.push(why);
  console.error(`FAIL: ${why}`);
};

/**
 * Fuzz connections send frames in batches, each followed by a ping with a reserved id: its pong
 * confirms that the gateway processed every frame of the batch (frames on a connection are handled in
 * order). Only confirmed frames are counted; a batch cut short by a close counts none.
 */
async function fuzzClients(gateway: GatewayProcess, g: Gen): Promise<{ confirmed: number; sent: number; closes: Map<number, number>; received: number }> {
  const closes = new Map<number, number>();
  const BATCH = 32;
  let confirmed = 0;
  let sent = 0;
  let received = 0;
  let syncId = 1e12;
  const connection = async (index: number) => {
    const protocols = index % 2 === 0 ? ['tormq.v2'] : [];
    while (confirmed < FRAMES && Date.now() < DEADLINE && failures.length === 0) {
      const ws = new WebSocket(gateway.url, protocols);
      let onPong: ((id: number) => void) | null = null;
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      ws.on('error', () => {});
      ws.on('message', (data) => {
        received++;
        const text = String(data);
        if (onPong !== null && text.startsWith('{"event":"pong"')) onPong((JSON.parse(text) as { id: number }).id);
      });
      const opened = await Promise.race([new Promise((resolve) => ws.once('open', () => resolve(true))), closed.then(() => false)]);
      if (!opened) continue;
      let open = true;
      void closed.then(() => (open = false));
      while (open && confirmed < FRAMES && Date.now() < DEADLINE) {
        const batch: string[] = [];
        for (let i = 0; i < BATCH; i++) {
          const [payload, binary] = clientFrame(g);
          if (process.env.FUZZ_DUMP) batch.push(binary ? '<binary>' : String(payload).slice(0, 300));
          ws.send(payload, { binary });
          sent++;
        }
        const id = syncId++;
        const pong = new Promise<boolean>((resolve) => {
          onPong = (got) => { if (got === id) resolve(true); };
          void closed.then(() => resolve(false));
          setTimeout(() => resolve(false), 30_000).unref();
        });
        ws.send(JSON.stringify({ event: 'ping', id }));
        if (await pong) confirmed += BATCH;
        else if (open) {
          fail(`no pong within 30 s on an open fuzz connection (protocols ${JSON.stringify(protocols)})`);
          if (process.env.FUZZ_DUMP) console.error(batch.join('\n'));
          ws.terminate();
        }
      }
      if (open) ws.close();
      const code = await closed;
      closes.set(code, (closes.get(code) ?? 0) + 1);
      if (code === 1011) fail(`a fuzz connection was closed with 1011 (a worker failed)`);
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => connection(i)));
  return { confirmed, sent, closes, received };
}

async function fuzzPublisher(mpc: MpcProcess, g: Gen): Promise<{ sent: number }> {
  const socket = new ZmqPublisher({ linger: 0, sendHighWaterMark: 0 });
  socket.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
  await sleep(300); // the MPC's subscription (to everything) reaches this PUB socket
  let sent = 0;
  try {
    while (sent < MESSAGES && Date.now() < DEADLINE && failures.length === 0) {
      await socket.send(publisherMessage(g));
      sent++;
      // Paced by what the MPC has taken in, so that nothing piles up in this process.
      if (sent % 5000 === 0) {
        for (;;) {
          const stats = await mpc.stats();
          const taken = stats.messagesIn + Object.values(stats.publishDrops).reduce((a, b) => a + b, 0);
          if (taken >= sent - 20_000 || Date.now() > DEADLINE) break;
          await sleep(5);
        }
      }
    }
  } finally {
    socket.close();
  }
  return { sent };
}

async function main(): Promise<void> {
  const g = new Gen(prng(SEED));
  const gp = new Gen(prng(SEED ^ 0x5eed));
  // Rate limits off: the fuzz is of what frames do, not of how many may be sent (the limits are tested).
  const mpc = await startMpcProcess();
  startedProcesses.push(mpc);
  const gateway = await startGatewayProcess(mpc.gatewayPort, ['--client-rate-limit', '0', '--log-level', 'info']);
  startedProcesses.push(gateway);
  const publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  let stopping = false;
  const processes = [mpc, gateway];
  for (const p of processes) void p.exited.then((code) => { if (!stopping) fail(`${p === mpc ? 'tormq-mpc' : 'tormq-gateway'} exited (${code})`); });
  const rss = () => ({ mpc: rssBytes(mpc.child.pid!) / 2 ** 20, gateway: rssBytes(gateway.child.pid!) / 2 ** 20 });
  const started = Date.now();
  const rssBefore = rss();

  // Canaries: one original, one tormq.v2 connection on their own topic, a message every 100 ms. The
  // tormq.v2 one does what the tormq client does: it takes only the next offset of its stream; on a
  // skipped offset or a gap notice it resubscribes with recover and since (a replay from history).
  // Both must end with every message, once, in order; the original one may lose only what the gateway
  // counted (a full ring, a slow-client drop): it has no positions, so it cannot be told.
  const canaries = await Promise.all([[], ['tormq.v2']].map(async (protocols) => {
    const v2 = protocols.length > 0;
    const ws = new WebSocket(gateway.url, protocols);
    const got: number[] = [];
    let recoveries = 0;
    let position: { epoch: string; offset: number } | null = null;
    let recovering: number | null = null; // the id of the recovery in flight
    let again = false;
    const recover = () => {
      if (recovering !== null) {
        again = true;
        return;
      }
      recovering = 100 + ++recoveries;
      ws.send(JSON.stringify({ event: 'subscribe', topics: ['canary'], recover: true, since: { canary: position }, id: recovering }));
    };
    let closedWith: number | null = null;
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as { event?: string; id?: number; data?: { n: number }; epoch?: string; offset?: number; positions?: Record<string, { epoch: string; offset: number }> };
      if (m.event === 'ack' && m.id === 1 && v2) position = m.positions!.canary!;
      else if (m.event === 'ack' && m.id === recovering) {
        recovering = null;
        if (again) {
          again = false;
          recover();
        }
      } else if (m.event === 'gap') recover();
      else if (m.event === undefined && m.data !== undefined) {
        if (!v2) got.push(m.data.n);
        else if (position !== null && m.epoch === position.epoch && m.offset === position.offset + 1) {
          got.push(m.data.n);
          position = { epoch: m.epoch, offset: m.offset };
        } else if (position !== null && (m.epoch !== position.epoch || m.offset! > position.offset + 1)) recover();
      }
    });
    ws.on('close', (code) => (closedWith = code));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ event: 'subscribe', topics: ['canary'], id: 1, ...(v2 ? { recover: true } : {}) }));
    return { ws, got, v2, recoveries: () => recoveries, closed: () => closedWith };
  }));
  await publisher.ready({ topic: 'canary', timeoutMs: 15_000 });
  await sleep(200);
  let canarySent = 0;
  const health: number[] = [];
  let done = false;
  const canary = (async () => {
    while (!done) {
      await publisher.send('canary', { n: ++canarySent });
      if (canarySent % 10 === 0) health.push(await gateway.admin('/healthz').then((r) => r.status, () => 0));
      await sleep(100);
    }
  })();

  const [clients, publishers] = await Promise.all([fuzzClients(gateway, g), fuzzPublisher(mpc, gp)]);
  done = true;
  await canary;
  await sleep(2000);
  const seconds = (Date.now() - started) / 1000;
  const rssAfter = rss();
  const mpcMetrics = await (await fetch(`http://127.0.0.1:${mpc.adminPort}/metrics`)).text();
  const metric = (name: string) => Number(/^(\S+) (\S+)$/m.exec(mpcMetrics.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? NaN) / 2 ** 20;

  const gstats = await gateway.stats();
  const mstats = await mpc.stats();
  const mpcMemoryMb = { heapUsed: metric('tormq_mpc_nodejs_heap_size_used_bytes'), external: metric('tormq_mpc_nodejs_external_memory_bytes'), history: mstats.history.bytes / 2 ** 20 };
  const totals = (gstats as unknown as { totals: Record<string, number> }).totals;
  const counted = totals.ringDrops! + totals.slowClientDrops!;
  for (const c of canaries) {
    const name = c.v2 ? 'tormq.v2 canary' : 'original canary';
    const missing = Array.from({ length: canarySent }, (_, k) => k + 1).filter((n) => !c.got.includes(n));
    const ordered = c.got.every((n, k) => k === 0 || n > c.got[k - 1]!);
    if (!ordered) fail(`${name}: out of order or twice`);
    if (missing.length > 0 && (c.v2 || counted === 0)) fail(`${name}: missing ${JSON.stringify(missing.slice(0, 20))} (${missing.length}) of ${canarySent}; ring drops ${totals.ringDrops}, slow-client drops ${totals.slowClientDrops}`);
    if (c.closed() !== null) fail(`${name} was closed (${c.closed()})`);
    c.ws.close();
  }
  if (gstats.workers.some((w) => !w.up || w.restarts > 0)) fail(`a worker died: ${JSON.stringify(gstats.workers.map((w) => [w.up, w.restarts]))}`);
  const unhealthy = health.filter((s) => s !== 200);
  if (unhealthy.length > 0) fail(`/healthz answered ${JSON.stringify(unhealthy)} in ${unhealthy.length} of ${health.length} samples`);
  if (clients.confirmed < FRAMES) fail(`only ${clients.confirmed} of ${FRAMES} client frames confirmed processed before the deadline`);
  if (publishers.sent < MESSAGES) fail(`only ${publishers.sent} of ${MESSAGES} publisher messages sent before the deadline`);

  const summary = {
    seed: SEED,
    seconds: Math.round(seconds),
    clientFramesSent: clients.sent,
    clientFramesConfirmedProcessed: clients.confirmed,
    fuzzConnectionsClosedWith: Object.fromEntries(clients.closes),
    framesReceivedByFuzzConnections: clients.received,
    publisherMessages: publishers.sent,
    mpc: { messagesIn: mstats.messagesIn, forwarded: mstats.forwarded, publishDrops: mstats.publishDrops },
    gateway: { totals: (gstats as unknown as { totals: Record<string, number> }).totals, upstream: gstats.upstream, deliveries: gstats.deliveries, publishDrops: gstats.publishDrops, workers: gstats.workers.map((w) => ({ up: w.up, restarts: w.restarts })) },
    canaries: canaries.map((c) => `${c.v2 ? 'tormq.v2' : 'original'}: ${c.got.length}/${canarySent} received, ${c.recoveries()} recoveries`),
    healthz: `${health.length - unhealthy.length}/${health.length} answered 200`,
    rssMb: { before: rssBefore, after: rssAfter },
    mpcMemoryMb,
  };
  stopping = true;
  await publisher.close();
  await gateway.stop();
  await mpc.stop();
  console.log(JSON.stringify(summary, (k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v) : v), 2));
  if (failures.length > 0) {
    console.error(`fuzz FAILED (seed ${SEED}):\n- ${failures.join('\n- ')}`);
    process.exit(1);
  }
  console.log(`fuzz passed (seed ${SEED}): ${clients.confirmed} client frames processed (${clients.sent} sent), ${publishers.sent} publisher messages, no crash, canaries complete`);
}

/** What this run started: ended by PID if the run fails part-way (nothing is left running). */
const startedProcesses: Array<{ child: { kill(signal?: NodeJS.Signals): boolean } }> = [];
try {
  await main();
} catch (error) {
  for (const p of startedProcesses) p.child.kill('SIGKILL');
  throw error;
}
