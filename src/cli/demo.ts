#!/usr/bin/env node
/**
 * `npm start`: the whole system on local defaults. Starts `tormq-mpc` and `tormq-gateway` as child
 * processes (the real entry points), a demo publisher on topic `demo`, and a demo WebSocket client
 * that prints what it receives. Open the printed URL to watch messages live in a browser.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { Publisher } from '../sdk/publisher.js';
import { defineOptions, int, integerFromText, isInteger, satisfies } from '../options/options.js';
import { ExitCodes, parseCommandLine } from './flags.js';

const PROGRAM = 'tormq-demo';
const flags = parseCommandLine({
  program: 'npm start --',
  synopsis: '[options]',
  table: defineOptions('a demo', {
    port: { default: 8000, check: int(0, 65535), help: 'WebSocket port of the gateway', cli: { flag: 'port', arg: 'PORT' } },
    adminPort: { default: 9100, check: int(0, 65535), help: 'admin port of the gateway', cli: { flag: 'admin-port', arg: 'PORT' } },
    mpcPorts: {
      default: [5559, 5560] as readonly number[],
      check: satisfies<readonly number[]>('two ports, publisher and gateway', (v) => Array.isArray(v) && v.length === 2 && v.every((p) => isInteger(p, 0, 65535))),
      help: "the MPC's publisher and gateway ports",
      cli: { flag: 'mpc-ports', arg: 'P,P', fromText: (t) => t.split(',').map(integerFromText) },
    },
    workers: { default: 0, defaultText: 'the gateway\'s default', check: int(0, 256), help: 'gateway worker threads', cli: { flag: 'workers', arg: 'N' } },
    duration: { default: 0, check: int(0), help: 'seconds to run; 0 runs until Ctrl-C', cli: { flag: 'duration', arg: 'SECONDS' } },
  }),
  footer: 'Starts tormq-mpc, tormq-gateway, a publisher sending on "demo" every second, and a client printing\nwhat it receives. Port 0 picks free ports.',
});
const { port: wsPort, adminPort, duration } = flags;
const [subPort, pubPort] = flags.mpcPorts;

const children: ChildProcess[] = [];
function start(cli: string, args: string[], readyMsg: string): Promise<Record<string, unknown>> {
  // Each child in its own process group: Ctrl-C in a terminal signals the whole foreground group, and
  // a child that got SIGINT from the terminal and then SIGTERM from here took the second signal as
  // "exit without draining". Only this process gets the terminal's signals; it stops the children.
  const child = spawn(process.execPath, [fileURLToPath(new URL(`./${cli}.js`, import.meta.url)), ...args], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${cli} exited with code ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      process.stdout.write(`[${cli}] ${line}\n`);
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.msg === readyMsg) resolve(parsed);
      } catch {
        // not a log line
      }
    });
  });
}

let publisher: Publisher | undefined;
let client: WebSocket | undefined;
let timer: NodeJS.Timeout | undefined;
let stopping: Promise<never> | null = null;
/** Stops the client, the publisher, then gateway and MPC (one SIGTERM each: they drain). Idempotent. */
function shutdown(code: number): Promise<never> {
  stopping ??= (async () => {
    clearInterval(timer);
    client?.close();
    await publisher?.close();
    for (const child of [...children].reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
    process.exit(code);
  })();
  return stopping;
}
// Repeated Ctrl-C (npm may forward one too) must not cut the children's drain short.
process.on('SIGINT', () => void shutdown(ExitCodes.OK));
process.on('SIGTERM', () => void shutdown(ExitCodes.OK));
// Detached children outlive a demo that dies some other way: take them along.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
});

try {
  const mpc = await start('mpc', ['-s', String(subPort), '-p', String(pubPort)], 'mpc ready');
  const gatewayArgs = ['-r', `127.0.0.1:${mpc.gatewayPort}`, '-p', String(wsPort), '--admin-port', String(adminPort), '--drain-ms', '500'];
  if (flags.workers !== 0) gatewayArgs.push('--workers', String(flags.workers));
  const gateway = await start('gateway', gatewayArgs, 'gateway ready');
  const port = gateway.port as number;

  client = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  client.on('open', () => client!.send(JSON.stringify({ event: 'subscribe', topic: 'demo' })));
  client.on('message', (data) => process.stdout.write(`[demo client] received ${data.toString()}\n`));

  publisher = new Publisher('127.0.0.1', mpc.publisherPort as number);
  await publisher.ready({ topic: 'demo', timeoutMs: 10_000 });
  let n = 0;
  timer = setInterval(() => {
    n++;
    void publisher!.send('demo', { n, time: new Date().toISOString(), text: 'héllo from tormq ✓' });
  }, 1000);
  process.stdout.write(`
tormq is running:
  browser    http://127.0.0.1:${port}/          (demo page, subscribed to "demo")
  websocket  ws://127.0.0.1:${port}/ws
  publish    new Publisher('127.0.0.1', ${mpc.publisherPort}).send('demo', {...})
  admin      http://127.0.0.1:${gateway.adminPort}/stats  /metrics  /healthz
Ctrl-C stops everything.
`);
  if (duration > 0) setTimeout(() => void shutdown(ExitCodes.OK), duration * 1000);
} catch (error) {
  process.stderr.write(`${PROGRAM}: ${(error as Error).message}\n`);
  await shutdown(ExitCodes.FAILURE);
}
