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
import { die, ExitCodes, intFlag, parseFlags } from './common.js';

const PROGRAM = 'tormq-demo';
const USAGE = `Usage: npm start -- [--port 8000] [--admin-port 9100] [--mpc-ports 5559,5560] [--workers N] [--duration SECONDS]

Starts tormq-mpc, tormq-gateway, a publisher sending on "demo" every second, and a client printing
what it receives. Port 0 picks free ports. --duration 0 (default) runs until Ctrl-C.
`;
const flags = parseFlags(PROGRAM, {
  port: { type: 'string' },
  'admin-port': { type: 'string' },
  'mpc-ports': { type: 'string' },
  workers: { type: 'string' },
  duration: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
}, USAGE);
const wsPort = intFlag(flags.port) ?? 8000;
const adminPort = intFlag(flags['admin-port']) ?? 9100;
const [subPort, pubPort] = (flags['mpc-ports'] ?? '5559,5560').split(',').map((p) => intFlag(p));
const duration = intFlag(flags.duration) ?? 0;
for (const value of [wsPort, adminPort, subPort, pubPort, duration]) {
  if (!Number.isInteger(value) || (value as number) < 0) die(PROGRAM, `ports and duration must be whole numbers\n\n${USAGE}`, ExitCodes.USAGE);
}

const children: ChildProcess[] = [];
function start(cli: string, args: string[], readyMsg: string): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(`./${cli}.js`, import.meta.url)), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
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
async function shutdown(code: number): Promise<never> {
  clearInterval(timer);
  client?.close();
  await publisher?.close();
  for (const child of children.reverse()) {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(ExitCodes.OK));
process.on('SIGTERM', () => void shutdown(ExitCodes.OK));

try {
  const mpc = await start('mpc', ['-s', String(subPort), '-p', String(pubPort)], 'mpc ready');
  const gatewayArgs = ['-r', `127.0.0.1:${mpc.gatewayPort}`, '-p', String(wsPort), '--admin-port', String(adminPort), '--drain-ms', '500'];
  if (flags.workers !== undefined) gatewayArgs.push('--workers', flags.workers);
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
