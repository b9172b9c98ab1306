#!/usr/bin/env node
/**
 * Worst-case memory one connection can make a gateway hold through its subscriptions, measured on the
 * real processes: `node dist/bench/subscription-memory.js [--connections N] [--workers N] [-- gateway flags]`.
 *
 * Starts tormq-mpc and tormq-gateway, opens N idle connections, then has each subscribe to the most the
 * First every connection sends the frame of issue 10 (256 topics of 125 one-character segments:
 * refused with the limits, ≈ 7 MB each without them); then each subscribes to the most the limits let
 * one connection hold — `--max-subscriptions` topics whose segments add up to
 * `--max-subscription-segments`, each segment random (no trie node shared with anyone), as long as
 * `--max-topic-length` and `--max-frame-bytes` allow, under 16 shared roots. The gateway's RSS is read
 * from /proc after each step. Prints the figures and one JSON line.
 */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { startGateway, startMpc, stopAll, killAllSync, type GatewayHandle, type Server } from './load/processes.js';

const { values, positionals } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '1' },
    'max-subscriptions': { type: 'string', default: '256' },
    'max-subscription-segments': { type: 'string', default: '1024' },
    'max-topic-length': { type: 'string', default: '256' },
    'max-frame-bytes': { type: 'string', default: '65536' },
    help: { type: 'boolean', short: 'h' },
  },
  allowPositionals: true,
});
if (values.help) {
  process.stdout.write('Usage: node dist/bench/subscription-memory.js [--connections N] [--workers N] [--max-subscriptions N] [--max-subscription-segments N] [--max-topic-length N] [--max-frame-bytes N] [-- gateway flags]\n');
  process.exit(0);
}
const connections = Number(values.connections);
const maxSubscriptions = Number(values['max-subscriptions']);
const maxSegments = Number(values['max-subscription-segments']);
const maxFrameBytes = Number(values['max-frame-bytes']);
const topics = Math.min(maxSubscriptions, maxSegments);
// As long as --max-topic-length allows and all of them fit in one frame (quotes and comma: 3 bytes each).
const topicLength = Math.min(Number(values['max-topic-length']), Math.floor((maxFrameBytes - 64) / topics) - 3);

// Random text to cut segments from (base64url: never `:`); one randomBytes call per segment kept this
// process too busy to answer the gateway's heartbeat pings.
const POOL = randomBytes(3 << 20).toString('base64url');
/** A random segment of `length` characters. */
const segment = (length: number) => {
  const at = Math.floor(Math.random() * (POOL.length - length));
  return POOL.slice(at, at + length);
};

/** The costliest frame the limits allow one connection: every topic as deep and as long as its share allows. */
function worstFrame(): string[] {
  const depth = Math.max(1, Math.floor(maxSegments / topics));
  const frame: string[] = [];
  for (let t = 0; t < topics; t++) {
    const root = `r${t % 16}`;
    const each = Math.max(1, Math.floor((topicLength - root.length - (depth - 1)) / Math.max(1, depth - 1)));
    const rest = Array.from({ length: depth - 1 }, () => segment(each));
    frame.push([root, ...rest].join(':'));
  }
  return frame;
}

/** Issue 10's frame: 256 distinct topics of 125 one-character segments. */
function attackFrame(): string[] {
  return Array.from({ length: 256 }, () => Array.from({ length: 125 }, () => segment(1)).join(':'));
}

function request(ws: WebSocket, frame: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer) => {
      const reply = JSON.parse(data.toString()) as Record<string, unknown>;
      if (reply.id !== frame.id) return;
      ws.off('message', onMessage);
      resolve(reply);
    };
    ws.on('message', onMessage);
    ws.once('close', (code) => reject(new Error(`closed with ${code} before answering ${String(frame.id)}`)));
    ws.send(JSON.stringify(frame));
  });
}

const rssMb = (server: Server) => server.sample().rssBytes / 2 ** 20;
/** RSS after the gateway has had a moment to collect garbage (its own timers run meanwhile). */
async function settledRss(server: Server): Promise<number> {
  let last = rssMb(server);
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = rssMb(server);
    if (Math.abs(now - last) < 1) return now;
    last = now;
  }
  return last;
}

process.on('SIGINT', () => {
  killAllSync();
  process.exit(130);
});

let gateway: GatewayHandle | undefined;
try {
  const mpc = await startMpc(null);
  gateway = await startGateway(null, mpc.gatewayPort, Number(values.workers), [
    '--max-subscriptions', String(maxSubscriptions), '--max-subscription-segments', String(maxSegments),
    '--max-topic-length', values['max-topic-length']!, '--max-frame-bytes', String(maxFrameBytes), '--client-rate-limit', '0', ...positionals,
  ]);
  const rssStart = await settledRss(gateway.server);
  const clients: WebSocket[] = [];
  for (let i = 0; i < connections; i++) {
    const ws = new WebSocket(gateway.url);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    clients.push(ws);
  }
  const rssIdle = await settledRss(gateway.server);

  const frame = worstFrame();
  /** Sends a frame from every connection, 50 at a time; returns how many were acked. */
  const everyone = async (topics: () => string[], id: number) => {
    let acked = 0;
    for (let i = 0; i < clients.length; i += 50) {
      const replies = await Promise.all(clients.slice(i, i + 50).map((ws) => request(ws, { event: 'subscribe', topics: topics(), id })));
      acked += replies.filter((r) => r.event === 'ack').length;
    }
    return acked;
  };
  // The attack first, on connections that hold nothing yet (a build without the limits accepts it).
  const attackAcked = await everyone(attackFrame, 1);
  const rssAttacked = await settledRss(gateway.server);
  const acked = await everyone(worstFrame, 2);
  const rssSubscribed = await settledRss(gateway.server);
  const stats = await gateway.stats();
  for (const ws of clients) ws.terminate();

  const kb = (mb: number) => ((mb * 1024) / connections).toFixed(1);
  const result = {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    connections,
    workers: Number(values.workers),
    limits: { maxSubscriptions, maxSubscriptionSegments: maxSegments, maxTopicLength: Number(values['max-topic-length']), maxFrameBytes, topicsPerConnection: frame.length, segmentsPerTopic: frame[0]!.split(':').length, topicLength: frame[0]!.length },
    rssMb: { start: rssStart, idle: rssIdle, afterAttack: rssAttacked, subscribed: rssSubscribed },
    kbPerConnection: {
      idle: Number(kb(rssIdle - rssStart)),
      attack: Number(kb(rssAttacked - rssIdle)),
      subscriptions: Number(kb(rssSubscribed - rssIdle)),
      total: Number(kb(Math.max(rssSubscribed, rssAttacked) - rssStart)),
    },
    attackAcked,
    acked,
    gatewaySubscriptions: stats.workers.reduce((n, w) => n + w.subscriptions!, 0),
  };
  process.stdout.write(
    [
      `${connections} connections, ${result.limits.topicsPerConnection} topics × ${result.limits.segmentsPerTopic} segments (${result.limits.topicLength} characters) each, ${result.workers} worker(s), Node ${process.version}`,
      `gateway RSS: start ${rssStart.toFixed(1)} MB, idle connections ${rssIdle.toFixed(1)} MB, after the attack frames ${rssAttacked.toFixed(1)} MB, subscribed to the worst allowed ${rssSubscribed.toFixed(1)} MB`,
      `per connection: idle ${kb(rssIdle - rssStart)} KB, the attack frame ${kb(rssAttacked - rssIdle)} KB, the worst allowed subscriptions ${kb(rssSubscribed - rssIdle)} KB, total ${result.kbPerConnection.total} KB`,
      `attack frames acked: ${attackAcked}/${connections}; worst allowed frames acked: ${acked}/${connections}`,
      JSON.stringify(result),
      '',
    ].join('\n'),
  );
} catch (error) {
  process.stderr.write(`${(error as Error).stack}\n`);
  for (const line of gateway?.server.logs ?? []) if (Number(line.level) >= 40) process.stderr.write(`gateway: ${JSON.stringify(line)}\n`);
  if (gateway !== undefined) process.stderr.write(`gateway /stats: ${JSON.stringify(await gateway.stats().catch((e: Error) => e.message))}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
