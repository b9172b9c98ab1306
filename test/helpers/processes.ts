/**
 * Starts the real `tormq-mpc` and `tormq-gateway` executables (compiled CLIs) on 127.0.0.1 with
 * port 0, and waits for their "ready" log lines: no fixed sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const CLI_DIR = fileURLToPath(new URL('../../src/cli/', import.meta.url));

export interface Started {
  child: ChildProcess;
  /** Every JSON log line printed so far. */
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  /** Resolves with the first log line matching `predicate` (past or future). */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM (or `signal`) by PID and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface CliOptions {
  /** Run under this open-files limit (`ulimit -n`, soft and hard), as a deployment with a low one would. */
  fileLimit?: number;
}

export function startCli(cli: 'mpc' | 'gateway', args: string[], options: CliOptions = {}): Started {
  const command = [process.execPath, `${CLI_DIR}${cli}.js`, ...args];
  // `exec` replaces the shell: the PID stays node's (stop() and /proc reads reach the CLI itself).
  const child = options.fileLimit === undefined
    ? spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('sh', ['-c', `ulimit -n ${options.fileLimit} && exec "$@"`, 'sh', ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const watchers = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ raw: line });
    }
    for (const w of watchers) w();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    for (const w of watchers) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    resolve(code);
    for (const w of watchers) w();
  }));
  return {
    child,
    logs,
    stderr,
    exited,
    waitForLog(predicate, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(predicate);
          if (found) {
            cleanup();
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`${cli} exited (${child.exitCode ?? child.signalCode}) before the expected log line; stderr: ${stderr.join('\n')}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${cli}: no matching log line within ${timeoutMs} ms; stderr: ${stderr.join('\n')}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          watchers.delete(check);
        };
        watchers.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

export interface MpcStats {
  presence: { gateways: number; cards: number; entries: number; expiredGateways: number; resyncs: number; snapshots: number } & Record<string, number>;
  messagesIn: number;
  forwarded: number;
  publishDrops: Record<string, number>;
  positionsSent: number;
  historyReplies: Record<string, number>;
  linkFrames: number;
  publisherHandshakeFailures: number;
  gatewayHandshakeFailures: number;
  silentPeers: { publisher: number; gateway: number };
  badGatewayFrames: number;
  sendQueueDrops: number;
  gatewayQueue: { bytes: number; cutOverTotal: number; requestsSkipped: number } | null;
  connections: Record<'publisher' | 'gateway', PortConnections> & Partial<Record<'http' | 'grpc' | 'admin', PortConnections>>;
  history: { streams: number; messages: number; bytes: number; evictedMessages: number; forgottenStreams: number };
}

/** One port's connection budget in the MPC's /stats (src/descriptors.ts). */
export interface PortConnections {
  open: number;
  handshaking: number;
  limit: number | null;
  refused: number;
  shed: number;
}

export interface MpcProcess extends Started {
  publisherPort: number;
  gatewayPort: number;
  /** The plain [root, body] port (`--plain-port`), or null when off. */
  plainPort: number | null;
  adminPort: number;
  stats(): Promise<MpcStats>;
  /** The HTTP ingress port (`--http`), or null when it is off. */
  httpPort: number | null;
  /** gopusher's gRPC port (`--grpc`), or null when it is off. */
  grpcPort: number | null;
  /** `fetch` against the HTTP ingress (throws when it is off). */
  http(path: string, init?: RequestInit): Promise<Response>;
}

/** Starts tormq-mpc on free ports; `extra` adds flags, e.g. `['--http', '0']` for the HTTP ingress. */
export async function startMpcProcess(args: string[] = ['-s', '0', '-p', '0'], extra: string[] = [], options: CliOptions = {}): Promise<MpcProcess> {
  const started = startCli('mpc', [...args, '--admin-port', '0', ...extra], options);
  const ready = await killUnlessReady(started, () => started.waitForLog((l) => l.msg === 'mpc ready'));
  const httpPort = (ready.httpPort as number | null | undefined) ?? null;
  const adminPort = ready.adminPort as number;
  return Object.assign(started, {
    publisherPort: ready.publisherPort as number,
    gatewayPort: ready.gatewayPort as number,
    plainPort: (ready.plainPort as number | null) ?? null,
    adminPort,
    stats: async () => (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as MpcStats,
    httpPort,
    grpcPort: (ready.grpcPort as number | null | undefined) ?? null,
    http(path: string, init?: RequestInit) {
      if (httpPort === null) throw new Error('the MPC was started without --http');
      return fetch(`http://127.0.0.1:${httpPort}${path}`, init);
    },
  });
}

/** POSTs `body` as JSON (or a raw string) to the MPC's HTTP ingress; resolves with status and parsed reply. */
export async function postJson(mpc: MpcProcess, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await mpc.http(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Waits (server side, no polling) until a gateway subscribes to `topic`'s root, as seen by the HTTP ingress. */
export async function waitHttpReady(mpc: MpcProcess, topic: string, timeoutMs = 15_000): Promise<void> {
  const res = await mpc.http(`/ready?topic=${encodeURIComponent(topic)}&timeout_ms=${timeoutMs}`);
  if (res.status !== 200) throw new Error(`HTTP ingress: no subscriber for ${topic} within ${timeoutMs} ms (${res.status} ${await res.text()})`);
}

export interface GatewayProcess extends Started {
  port: number;
  adminPort: number;
  url: string;
  admin(path: string): Promise<Response>;
  stats(): Promise<GatewayStats>;
}

export interface GatewayStats {
  connections: number;
  messagesIn: number;
  deliveries: number;
  publishDrops: Record<string, number>;
  topics: string[];
  upstream: { topics: number; roots: number; gaps: number; repairedGaps: number; unrepairedGaps: number; repairedMessages: number } & Record<string, number>;
  workers: Array<{ index: number; up: boolean; connections: number; subscriptions: number; deliveries: number; ringDrops: number; restarts: number; topics: string[] } & Record<string, number>>;
}

export async function startGatewayProcess(mpcPort: number, extra: string[] = [], options: CliOptions = {}): Promise<GatewayProcess> {
  const started = startCli('gateway', ['-r', `127.0.0.1:${mpcPort}`, '-p', '0', '--admin-port', '0', '--workers', '2', '--log-level', 'info', ...extra], options);
  const ready = await killUnlessReady(started, async () => {
    const line = await started.waitForLog((l) => l.msg === 'gateway ready');
    // Ready means listening; the MPC link comes up asynchronously.
    await started.waitForLog((l) => l.msg === 'MPC link up');
    return line;
  });
  const port = ready.port as number;
  const adminPort = ready.adminPort as number;
  // Bounded: a gateway whose admin port cannot accept must fail the test, not hang it.
  const admin = (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`, { signal: AbortSignal.timeout(15_000) });
  return Object.assign(started, {
    port,
    adminPort,
    url: `ws://127.0.0.1:${port}/ws`,
    admin,
    stats: async () => (await (await admin('/stats')).json()) as GatewayStats,
  });
}

/**
 * A process that never became ready is killed before the error goes on: the test cannot stop what it
 * never got, and a leftover process would load the machine for every later test.
 */
async function killUnlessReady<T>(started: Started, ready: () => Promise<T>): Promise<T> {
  try {
    return await ready();
  } catch (error) {
    started.child.kill('SIGKILL');
    throw error;
  }
}

/** Stops every started process, clients first is the caller's job. */
export async function stopAll(...processes: Array<Started | undefined>): Promise<void> {
  for (const p of processes) if (p) await p.stop();
}

export { once };
