/**
 * A yardstick for the machine's speed at the time of a scenario, run on the servers' core just before
 * it. Why: these VMs change speed by the hour. On 2026-12-07 nats-server took 13.9 µs of CPU per unicast
 * message at 03:01 and 19.4 at 01:49 on the same machine, same flags, so figures from different runs
 * compare only through something measured beside them. Two fixed workloads, in a child process pinned
 * like the servers (`node calibrate.js` runs them and prints one JSON line):
 * - `jsNsPerOp`: CPU per iteration of a fixed JS loop: how fast plain code runs;
 * - `roundTripUs`: CPU (all threads) per round trip of 100 bytes between two threads over loopback TCP,
 *   each a write, a read and a thread wake-up on one core: what most of a delivery's cost is made of
 *   (the worker's socket write, the wake-ups between the MPC's and the gateway's threads).
 * Each is run three times and the fastest counts: what is left of the previous scenario (sockets
 * closing, processes exiting) slowed single runs by half (1.59 ns / 115 µs against 0.98 / 78).
 */
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export interface Calibration {
  jsNsPerOp: number;
  roundTripUs: number;
}

const JS_ITERATIONS = 10_000_000;
const ROUND_TRIPS = 1500;
const REPEATS = 3;
const MESSAGE = Buffer.alloc(100, 0x61);
const SELF = fileURLToPath(import.meta.url);

/** Runs the yardstick pinned to `core` (unpinned when null); null when it fails (it never fails the run). */
export async function calibrate(core: number | null, timeoutMs = 20_000): Promise<Calibration | null> {
  // Started like the servers (pinned, stopped with them on Ctrl-C); imported here, not at the top, so
  // the measuring child and its echo thread do not load it.
  const { startPinned } = await import('./processes.js');
  const child = startPinned('yardstick', core, SELF, []);
  const timer = setTimeout(() => void child.stop(0), timeoutMs);
  // Its one line is read once stdout has closed ('exit' may come before the last line is parsed).
  const [code] = await Promise.all([child.exited, once(child.child.stdout!, 'close')]);
  clearTimeout(timer);
  const line = child.logs.find((l) => Number.isFinite(l.jsNsPerOp) && Number.isFinite(l.roundTripUs));
  return code === 0 && line !== undefined ? { jsNsPerOp: line.jsNsPerOp as number, roundTripUs: line.roundTripUs as number } : null;
}

/** CPU seconds of this process (all threads) since `from`. */
function cpuSince(from: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1e6;
}

function jsLoop(iterations: number): number {
  const slots = new Int32Array(1024);
  for (let i = 0; i < iterations; i++) slots[i & 1023] = (slots[(i * 7) & 1023]! + i) | 0;
  return slots[0]!;
}

function measureJs(): number {
  jsLoop(JS_ITERATIONS / 10); // warm-up: optimised before it is timed
  const from = process.cpuUsage();
  jsLoop(JS_ITERATIONS);
  return (cpuSince(from) * 1e9) / JS_ITERATIONS;
}

/** Ping-pong with an echoing worker thread: one message in flight, so every message is a wake-up. */
async function measureRoundTrips(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const worker = new Worker(SELF, { workerData: { calibrateEchoPort: port } });
  const [socket] = (await once(server, 'connection')) as [Socket];
  socket.setNoDelay(true);
  const from = process.cpuUsage();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let pending = 0;
    const send = (): void => {
      sent++;
      pending = MESSAGE.length;
      socket.write(MESSAGE);
    };
    socket.on('data', (chunk: Buffer) => {
      pending -= chunk.length;
      if (pending > 0) return;
      if (sent === ROUND_TRIPS) resolve();
      else send();
    });
    send();
  });
  const perRoundTrip = (cpuSince(from) * 1e6) / ROUND_TRIPS;
  socket.destroy();
  server.close();
  await worker.terminate();
  return perRoundTrip;
}

const echoPort = isMainThread ? undefined : (workerData as { calibrateEchoPort?: number } | null)?.calibrateEchoPort;
if (echoPort !== undefined) {
  // The echoing side (a worker thread started above; other threads that import this module skip it).
  const socket = connect(echoPort, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('data', (chunk: Buffer) => socket.write(chunk));
  parentPort!.unref();
} else if (isMainThread && process.argv[1] === SELF) {
  let jsNsPerOp = Infinity;
  let roundTripUs = Infinity;
  for (let i = 0; i < REPEATS; i++) {
    jsNsPerOp = Math.min(jsNsPerOp, measureJs());
    roundTripUs = Math.min(roundTripUs, await measureRoundTrips());
  }
  process.stdout.write(`${JSON.stringify({ jsNsPerOp, roundTripUs } satisfies Calibration)}\n`);
}
