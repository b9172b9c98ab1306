#!/usr/bin/env node
/**
 * `npm run bench:mpc [-- --rates 10000,100000 --duration-ms 5000]`: what the MPC costs per message now
 * that it checks, stamps, keeps history and forwards in code, against the original MPC (a plain zeromq
 * Proxy, bench/load/plain-proxy.ts), at fixed offered rates from the SDK publisher.
 *
 * The MPC is pinned to core 0, this process (publisher and one subscriber standing in for a gateway)
 * to core 1. Reported: messages offered and received, MPC CPU µs per message (utime + stime from /proc
 * over the measured window), and for tormq-mpc the history it holds and its RSS per stored message.
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Subscriber, XSubscriber } from 'zeromq';
import { Publisher } from '../src/sdk/publisher.js';
import { forEachInBatch, LinkKind, parseStreamFrame, subtreeSubscription, topicSubscription, type StreamFrameView } from '../src/zmq/gateway-link.js';
import { CLI, canPin, pinSelf, startPinned, stopAll, type Server } from './load/processes.js';

const { values: o } = parseArgs({
  options: {
    rates: { type: 'string', default: '10000,100000' },
    'duration-ms': { type: 'string', default: '5000' },
    topics: { type: 'string', default: '1000' },
    payload: { type: 'string', default: '100' },
    /** Extra tormq-mpc flags, space-separated (A/B runs: `--mpc-args="--history-size 0"`). */
    'mpc-args': { type: 'string' },
  },
});
const RATES = o.rates!.split(',').map(Number);
const DURATION_MS = Number(o['duration-ms']);
const TOPICS = Number(o.topics);
const PAYLOAD = 'x'.repeat(Number(o.payload));
const PLAIN_PROXY = fileURLToPath(new URL('./load/plain-proxy.js', import.meta.url));
const pinned = canPin([0, 1]);
if (pinned) pinSelf(1);

interface Row {
  target: string;
  rate: number;
  offered: number;
  received: number;
  cpuUsPerMessage: number;
  historyMessages?: number;
  historyBytesPerMessage?: number;
  rssBytesPerStoredMessage?: number;
}

async function run(target: 'tormq-mpc' | 'plain proxy', rate: number): Promise<Row> {
  const server: Server = target === 'tormq-mpc'
    ? startPinned(target, pinned ? 0 : null, CLI.mpc, ['-s', '0', '-p', '0', '--admin-port', '0', '--log-level', 'info', ...(o['mpc-args']?.split(' ').filter(Boolean) ?? [])], process.env.MPC_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.MPC_PROFILE_DIR}`] : [])
    : startPinned(target, pinned ? 0 : null, PLAIN_PROXY, []);
  try {
    const ready = await server.waitForLog((l) => l.msg === 'mpc ready');
    // A subscriber standing in for a gateway: the root `bench` as a tormq gateway subscribes it, or as
    // the original gateway does (a prefix) on the plain proxy.
    let received = 0;
    let socket: Subscriber | XSubscriber;
    if (target === 'tormq-mpc') {
      const xsub = new XSubscriber({ receiveHighWaterMark: 0 });
      xsub.connect(`tcp://127.0.0.1:${ready.gatewayPort as number}`);
      await xsub.send(topicSubscription('bench', true));
      await xsub.send(subtreeSubscription('bench', true));
      socket = xsub;
    } else {
      const sub = new Subscriber({ receiveHighWaterMark: 0 });
      sub.connect(`tcp://127.0.0.1:${ready.gatewayPort as number}`);
      sub.subscribe('bench');
      socket = sub;
    }
    // A batch frame (tormq-mpc, gateway-link.ts) counts as the messages it carries.
    const view: StreamFrameView = { kind: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, offset: 0, bodyStart: 0 };
    const countOne = () => received++;
    void (async () => {
      for await (const [frame] of socket) {
        if (target === 'tormq-mpc' && parseStreamFrame(frame!, view) && view.kind === LinkKind.BATCH) forEachInBatch(frame!, view, countOne);
        else received++;
      }
    })().catch(() => {});
    const publisher = new Publisher('127.0.0.1', ready.publisherPort as number, { maxQueue: 1_000_000 });
    await publisher.ready({ timeoutMs: 10_000 });
    await sleep(300); // the subscriber's subscription reaches the MPC (and, for the proxy, the publisher)

    // Warm-up, then the measured window at the offered rate, in 10 ms ticks.
    const send = async (ms: number): Promise<number> => {
      let sent = 0;
      const start = performance.now();
      const perTick = rate / 100;
      for (let tick = 1; performance.now() - start < ms; tick++) {
        const due = Math.floor(tick * perTick);
        const batch: Array<Promise<void>> = [];
        for (; sent < due; sent++) batch.push(publisher.send(`bench:${sent % TOPICS}`, PAYLOAD));
        await Promise.all(batch);
        const wait = start + tick * 10 - performance.now();
        if (wait > 0) await sleep(wait);
      }
      return sent;
    };
    await send(1000);
    await sleep(500);
    const receivedBefore = received;
    const rssBefore = server.sample().rssBytes;
    const before = server.sample();
    const offered = await send(DURATION_MS);
    // The MPC may lag: wait (bounded) until what was offered arrived or nothing more comes.
    for (let last = -1, i = 0; i < 50 && received - receivedBefore < offered && received !== last; i++) {
      last = received;
      await sleep(100);
    }
    const after = server.sample();
    const got = received - receivedBefore;
    const row: Row = { target, rate, offered, received: got, cpuUsPerMessage: ((after.cpuSeconds - before.cpuSeconds) * 1e6) / offered };
    if (target === 'tormq-mpc') {
      const adminPort = ready.adminPort as number;
      const stats = (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as { history: { messages: number; bytes: number } };
      row.historyMessages = stats.history.messages;
      row.historyBytesPerMessage = stats.history.bytes / stats.history.messages;
      row.rssBytesPerStoredMessage = (after.rssBytes - rssBefore) / Math.max(1, stats.history.messages);
    }
    await publisher.close();
    socket.close();
    return row;
  } finally {
    await server.stop();
  }
}

const rows: Row[] = [];
try {
  for (const rate of RATES) {
    for (const target of ['plain proxy', 'tormq-mpc'] as const) rows.push(await run(target, rate));
  }
} finally {
  await stopAll();
}
console.log(`MPC cost per message (${DURATION_MS} ms windows, ${TOPICS} topics, ${PAYLOAD.length}-byte data, ${pinned ? 'MPC on core 0, load on core 1' : 'not pinned'})`);
console.log('| target | offered msgs/s | offered | received | MPC CPU µs/msg | history msgs | history B/msg | RSS B/stored msg |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.target} | ${r.rate} | ${r.offered} | ${r.received} | ${r.cpuUsPerMessage.toFixed(2)} | ${r.historyMessages ?? ''} | ${r.historyBytesPerMessage?.toFixed(0) ?? ''} | ${r.rssBytesPerStoredMessage?.toFixed(0) ?? ''} |`);
}
