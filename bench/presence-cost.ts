#!/usr/bin/env node
/**
 * `npm run bench:presence [-- --connections 100000 --gateways 2 --churn 1000]`: what gopusher's
 * cluster-wide presence costs, with `--connections` joined connections' worth of reports (one card
 * each, spread over `--gateways` simulated gateways) against a real tormq-mpc.
 *
 * Each simulated gateway is the real gateway-side code (gateway/main/presence.ts: the per-worker sums,
 * deltas, heartbeats, snapshots in parts) on its own ZeroMQ XSUB linked to the MPC's gateway port, as a
 * tormq-gateway's link is; only the WebSocket connections are not there (their joins arrive as worker
 * reports of 1,000 cards, what a worker posts after a burst of joins). The MPC is pinned to core 0,
 * this process to core 1. Correctness is checked before anything is timed: every card online at the
 * MPC with the right count (IsOnline, Group over its HTTP routes for a sample, and its /stats), and all
 * gone after the leaves.
 *
 * Reported: MPC CPU for the joins, per full snapshot of every gateway, for heartbeats only (idle) and
 * under churn; MPC RSS growth per (gateway, card) entry; bytes on the link; the gateway side's CPU per
 * report.
 */
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { XSubscriber } from 'zeromq';
import { GatewayPresence } from '../src/gateway/main/presence.js';
import { GATEWAY_ID_BYTES, parseReply, privateSubscription } from '../src/zmq/gateway-link.js';
import { randomBytes } from 'node:crypto';
import { SerialSender } from '../src/zmq/serial-sender.js';
import { CLI, canPin, pinSelf, startPinned, stopAll } from './load/processes.js';

const { values: o } = parseArgs({
  options: {
    connections: { type: 'string', default: '100000' },
    gateways: { type: 'string', default: '2' },
    churn: { type: 'string', default: '1000' },
    'heartbeat-ms': { type: 'string', default: '1000' },
    'window-ms': { type: 'string', default: '5000' },
  },
});
const CONNECTIONS = Number(o.connections);
const GATEWAYS = Number(o.gateways);
const CHURN = Number(o.churn);
const HEARTBEAT_MS = Number(o['heartbeat-ms']);
const WINDOW_MS = Number(o['window-ms']);
const WORKER_BATCH = 1000;
const pinned = canPin([0, 1]);
if (pinned) pinSelf(1);

interface SimGateway {
  presence: GatewayPresence;
  socket: XSubscriber;
  bytes: number;
  frames: number;
  /** Time this process spent in the presence code (report building and encoding), ms. */
  busyMs: number;
}

const mpc = startPinned('tormq-mpc', pinned ? 0 : null, CLI.mpc, ['-s', '0', '-p', '0', '--admin-port', '0', '--http', '0', '--log-level', 'info']);
const gateways: SimGateway[] = [];
try {
  const ready = await mpc.waitForLog((l) => l.msg === 'mpc ready');
  const admin = `http://127.0.0.1:${ready.adminPort as number}`;
  const http = `http://127.0.0.1:${ready.httpPort as number}`;
  const presenceStats = async () => ((await (await fetch(`${admin}/stats`)).json()) as { presence: Record<string, number> }).presence;
  const until = async (what: string, test: (p: Record<string, number>) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = await presenceStats();
      if (test(p)) return p;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (${JSON.stringify(p)})`);
      await sleep(50);
    }
  };

  const perGateway = Math.ceil(CONNECTIONS / GATEWAYS);
  for (let g = 0; g < GATEWAYS; g++) {
    const id = randomBytes(GATEWAY_ID_BYTES);
    const socket = new XSubscriber({ linger: 0, sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 });
    const sender = new SerialSender(socket);
    const sim: SimGateway = { presence: null as unknown as GatewayPresence, socket, bytes: 0, frames: 0, busyMs: 0 };
    sim.presence = new GatewayPresence((frame) => {
      sim.bytes += frame.length;
      sim.frames++;
      sender.send(frame);
    }, id.toString('base64url'), HEARTBEAT_MS, () => ({ clients: perGateway, workers: 2 }));
    sender.send(privateSubscription(id, true));
    socket.connect(`tcp://127.0.0.1:${ready.gatewayPort as number}`);
    // The MPC's `ready` and `presence-resync` come back on the private key, as to a gateway.
    void (async () => {
      for await (const [frame] of socket) {
        const reply = frame !== undefined && frame[0] === 0 ? parseReply(frame) : null;
        if (reply?.header.type === 'ready' || reply?.header.type === 'presence-resync') sim.presence.resync();
      }
    })().catch(() => {});
    sim.presence.start();
    gateways.push(sim);
  }
  await until('gateways linked', (p) => p.gateways === GATEWAYS);
  await sleep(500);
  const timed = <T>(sim: SimGateway, f: () => T): T => {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      sim.busyMs += performance.now() - t0;
    }
  };
  const cardOf = (g: number, i: number) => `card-${g}-${i}`;

  // --- Joins: every connection joins its card, in worker reports of WORKER_BATCH -------------------
  const rssBefore = mpc.sample().rssBytes;
  const joinsStart = mpc.sample();
  const bytesBefore = gateways.reduce((n, s) => n + s.bytes, 0);
  for (let i = 0; i < perGateway; i += WORKER_BATCH) {
    for (let g = 0; g < GATEWAYS; g++) {
      const cards: Array<string | number> = [];
      for (let k = i; k < Math.min(i + WORKER_BATCH, perGateway); k++) cards.push(cardOf(g, k), 1);
      timed(gateways[g]!, () => gateways[g]!.presence.worker(k2slot(i), cards));
    }
    await sleep(1); // reports arrive over time, as from workers
  }
  await until('every card online', (p) => p.cards === perGateway * GATEWAYS);
  const joinsEnd = mpc.sample();
  const joinBytes = gateways.reduce((n, s) => n + s.bytes, 0) - bytesBefore;
  // Correctness before any figure: a sample of cards over the grpc-gateway routes.
  for (const [g, i] of [[0, 0], [GATEWAYS - 1, perGateway - 1], [0, Math.floor(perGateway / 2)]] as const) {
    const online = (await (await fetch(`${http}/isOnline?cardID=${cardOf(g, i)}`)).json()) as { result: string };
    const group = (await (await fetch(`${http}/group?cardID=${cardOf(g, i)}`)).json()) as { clientNum: string };
    if (online.result !== 'yes' || group.clientNum !== '1') throw new Error(`card ${cardOf(g, i)}: ${JSON.stringify([online, group])}`);
  }
  const offline = (await (await fetch(`${http}/isOnline?cardID=nobody`)).json()) as { result: string };
  if (offline.result !== 'no') throw new Error('nobody is online');
  await sleep(1500); // GC settles
  const rssAfter = mpc.sample().rssBytes;
  const entries = (await presenceStats()).entries!;

  // --- Idle: heartbeats only ---------------------------------------------------------------------
  await sleep(HEARTBEAT_MS);
  const idleStart = mpc.sample();
  const idleSnapshots = (await presenceStats()).snapshots!;
  await sleep(WINDOW_MS);
  const idleEnd = mpc.sample();
  const snapshotsDuringIdle = (await presenceStats()).snapshots! - idleSnapshots;

  // --- Full snapshots: every gateway sends all its cards ------------------------------------------
  const SNAPSHOT_ROUNDS = 5;
  const snapStart = mpc.sample();
  const snapsBefore = (await presenceStats()).snapshots!;
  const snapBytesBefore = gateways.reduce((n, s) => n + s.bytes, 0);
  for (let r = 0; r < SNAPSHOT_ROUNDS; r++) {
    for (const sim of gateways) timed(sim, () => (sim.presence as unknown as { snapshot(): void }).snapshot());
    await until('snapshot applied', (p) => p.snapshots! >= snapsBefore + (r + 1) * GATEWAYS);
  }
  const snapEnd = mpc.sample();
  const snapshotBytes = (gateways.reduce((n, s) => n + s.bytes, 0) - snapBytesBefore) / SNAPSHOT_ROUNDS / GATEWAYS;
  const snapCheck = await presenceStats();
  if (snapCheck.cards !== perGateway * GATEWAYS || snapCheck.entries !== entries) throw new Error(`after snapshots: ${JSON.stringify(snapCheck)}`);

  // --- Churn: CHURN joins and CHURN leaves per second ---------------------------------------------
  const churnStart = mpc.sample();
  const busyBefore = gateways.reduce((n, s) => n + s.busyMs, 0);
  const framesBefore = gateways.reduce((n, s) => n + s.frames, 0);
  const t0 = performance.now();
  let churned = 0;
  for (let tick = 1; performance.now() - t0 < WINDOW_MS; tick++) {
    const due = Math.floor((tick * CHURN) / 100);
    for (; churned < due; churned++) {
      const g = churned % GATEWAYS;
      const card = `churn-${churned}`;
      timed(gateways[g]!, () => gateways[g]!.presence.worker(0, [card, 1]));
      const leaving = churned - CHURN; // each stays about a second
      if (leaving >= 0) timed(gateways[leaving % GATEWAYS]!, () => gateways[leaving % GATEWAYS]!.presence.worker(0, [`churn-${leaving}`, 0]));
    }
    const wait = t0 + tick * 10 - performance.now();
    if (wait > 0) await sleep(wait);
  }
  const churnSeconds = (performance.now() - t0) / 1000;
  const churnEnd = mpc.sample();
  const churnFrames = gateways.reduce((n, s) => n + s.frames, 0) - framesBefore;
  const churnBusy = gateways.reduce((n, s) => n + s.busyMs, 0) - busyBefore;

  // --- Leaves: everyone goes; the MPC must end with nothing -----------------------------------------
  for (let g = 0; g < GATEWAYS; g++) {
    for (let i = 0; i < perGateway; i += WORKER_BATCH) gateways[g]!.presence.workerGone(k2slot(i));
    gateways[g]!.presence.worker(0, Array.from({ length: churned }, (_, k) => [`churn-${k}`, 0]).flat());
  }
  await until('every card offline', (p) => p.cards === 0 && p.entries === 0);

  const cpuMs = (a: { cpuSeconds: number }, b: { cpuSeconds: number }) => (b.cpuSeconds - a.cpuSeconds) * 1000;
  const result = {
    machine: { cores: cpus().length, usable: availableParallelism(), cpu: cpus()[0]?.model, node: process.version, pinned },
    connections: perGateway * GATEWAYS,
    gateways: GATEWAYS,
    heartbeatMs: HEARTBEAT_MS,
    joins: { mpcCpuMs: cpuMs(joinsStart, joinsEnd), mpcCpuUsPerJoin: (cpuMs(joinsStart, joinsEnd) * 1000) / (perGateway * GATEWAYS), linkBytes: joinBytes },
    memory: { entries, mpcRssGrowthBytes: rssAfter - rssBefore, bytesPerEntry: (rssAfter - rssBefore) / entries },
    idle: { mpcCpuPercent: (cpuMs(idleStart, idleEnd) / (idleEnd.at - idleStart.at)) * 100, snapshotsDuringWindow: snapshotsDuringIdle },
    snapshot: { cards: perGateway, mpcCpuMsPerGatewaySnapshot: cpuMs(snapStart, snapEnd) / SNAPSHOT_ROUNDS / GATEWAYS, linkBytesPerGatewaySnapshot: snapshotBytes },
    churn: {
      changesPerSecond: (2 * churned) / churnSeconds,
      mpcCpuPercent: (cpuMs(churnStart, churnEnd) / (churnEnd.at - churnStart.at)) * 100,
      reportFrames: churnFrames,
      gatewayUsPerChange: (churnBusy * 1000) / (2 * churned),
    },
  };
  console.log(`gopusher presence cost: ${result.connections} joined connections (one card each) on ${GATEWAYS} gateways, heartbeat ${HEARTBEAT_MS} ms, ${result.machine.cores} cores, Node ${process.version}${pinned ? ', MPC on core 0, gateways on core 1' : ''}`);
  console.log('| what | figure |');
  console.log('|---|---|');
  console.log(`| joins: MPC CPU for all ${result.connections} | ${result.joins.mpcCpuMs.toFixed(0)} ms (${result.joins.mpcCpuUsPerJoin.toFixed(2)} µs per join), ${(joinBytes / 1e6).toFixed(1)} MB on the links |`);
  console.log(`| MPC memory | ${(result.memory.mpcRssGrowthBytes / 1e6).toFixed(1)} MB RSS for ${entries} entries (${result.memory.bytesPerEntry.toFixed(0)} B each) |`);
  console.log(`| one gateway's full snapshot (${perGateway} cards) | ${result.snapshot.mpcCpuMsPerGatewaySnapshot.toFixed(1)} ms MPC CPU, ${(snapshotBytes / 1e6).toFixed(2)} MB |`);
  console.log(`| idle (heartbeats${snapshotsDuringIdle > 0 ? ' and a periodic snapshot' : ''}) | ${result.idle.mpcCpuPercent.toFixed(2)} % of a core |`);
  console.log(`| churn ${result.churn.changesPerSecond.toFixed(0)} joins+leaves/s | ${result.churn.mpcCpuPercent.toFixed(2)} % of a core at the MPC, ${result.churn.gatewayUsPerChange.toFixed(2)} µs per change at the gateway |`);
  console.log(JSON.stringify(result));
} finally {
  for (const sim of gateways) {
    sim.presence.stop();
    sim.socket.close();
  }
  await mpc.stop();
  await stopAll();
}

/** The worker slot a batch of joins came from (two workers, alternating). */
function k2slot(i: number): number {
  return (i / WORKER_BATCH) % 2;
}
