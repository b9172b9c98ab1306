/**
 * Starts the servers under test as separate processes pinned to one core (`taskset -c`), reads
 * their JSON "ready" log lines for ports (port 0 everywhere), samples their CPU time and RSS from
 * /proc, and stops them by PID. Every process started is registered so `stopAll` (also run on
 * error and exit) ends it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const DIST = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = { mpc: `${DIST}src/cli/mpc.js`, gateway: `${DIST}src/cli/gateway.js`, baseline: `${DIST}bench/load/baseline-server.js` };

const started = new Set<Server>();
/** Clock ticks per second for /proc/PID/stat times (USER_HZ, 100 on Linux; asked once). */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** `taskset` exists (util-linux) and this machine has the cores asked for. */
export function canPin(cores: number[]): boolean {
  const probe = spawnSync('taskset', ['-c', cores.join(','), 'true']);
  return probe.status === 0;
}

/** Pins every thread of this process (and the threads it creates later) to `core`. */
export function pinSelf(core: number): boolean {
  return spawnSync('taskset', ['-a', '-cp', String(core), String(process.pid)], { stdio: 'ignore' }).status === 0;
}

export interface CpuSample {
  /** utime + stime of all the process's threads, seconds. */
  cpuSeconds: number;
  /** The kernel's share of cpuSeconds (stime): socket writes on loopback are mostly this. */
  systemSeconds: number;
  rssBytes: number;
  at: number;
}

export class Server {
  readonly logs: Array<Record<string, unknown>> = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly watchers = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    started.add(this);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.logs.push({ raw: line });
      }
      // Keep memory bounded on long runs: only start-up lines matter here.
      if (this.logs.length > 1000) this.logs.splice(0, 500);
      for (const w of this.watchers) w();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (this.stderr.length < 200) this.stderr.push(line);
      for (const w of this.watchers) w();
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code) => {
        started.delete(this);
        resolve(code);
        for (const w of this.watchers) w();
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.logs.find(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done();
          reject(new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}); stderr: ${this.stderr.join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no ready line within ${timeoutMs} ms; stderr: ${this.stderr.join('\n')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.watchers.delete(check);
      };
      this.watchers.add(check);
      check();
    });
  }

  /** CPU time (all threads) and RSS from /proc/PID/stat and /proc/PID/status. */
  sample(): CpuSample {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      throw new Error(`${this.name} exited during the scenario (${this.child.exitCode ?? this.child.signalCode}); stderr: ${this.stderr.slice(-20).join('\n')}`);
    }
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name (which may contain spaces): state is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { cpuSeconds: (utime + stime) / CLK_TCK, systemSeconds: stime / CLK_TCK, rssBytes: rssKb * 1024, at: performance.now() };
  }

  /** SIGTERM by PID, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Runs `node script args` pinned to `core` (taskset execs node, so the PID is node's), with the
 * open-files limit raised to its hard limit for the many sockets a load run holds.
 */
export function startPinned(name: string, core: number | null, script: string, args: string[], nodeFlags: string[] = []): Server {
  return startPinnedCommand(name, core, [process.execPath, ...nodeFlags, script, ...args]);
}

/** Runs any `command` pinned to `core`; `mergeStderr` sends its stderr into the stdout line log. */
function startPinnedCommand(name: string, core: number | null, command: string[], mergeStderr = false): Server {
  if (core !== null) command = ['taskset', '-c', String(core), ...command];
  // `ulimit -n hard` then exec: the shell is replaced, so the PID stays the server's.
  const shell = `ulimit -n "$(ulimit -Hn)" && exec "$@"${mergeStderr ? ' 2>&1' : ''}`;
  const child = spawn('sh', ['-c', shell, 'sh', ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Server(name, child);
}

/** How to get nats-server when it is missing (the bench then skips NATS and says so). */
export const NATS_INSTALL_HINT = 'install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu: 2.9), or put a release binary ' +
  'from https://github.com/nats-io/nats-server/releases on the PATH (or set NATS_SERVER=/path/to/nats-server)';

/** The nats-server binary and its version, or null when there is none. */
export function findNatsServer(): { path: string; version: string } | null {
  const path = process.env.NATS_SERVER ?? 'nats-server';
  const probe = spawnSync(path, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) return null;
  return { path, version: probe.stdout.trim() };
}

/**
 * nats-server pinned to `core`, from a generated config file: client (TCP, for the publisher) and
 * WebSocket (no TLS, for the fleet) listeners on 127.0.0.1, both on random ports read from its log.
 * Go sizes GOMAXPROCS from the CPU affinity, so pinned it runs on one core like the MPC + gateway.
 */
export async function startNats(core: number | null, path: string): Promise<{ server: Server; port: number; url: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'tormq-bench-nats-'));
  const config = join(dir, 'nats.conf');
  writeFileSync(config, [
    '# generated by tormq bench/load/processes.ts',
    'listen: "127.0.0.1:-1"',
    'websocket {',
    '  listen: "127.0.0.1:-1"',
    '  no_tls: true',
    '  compression: false',
    '}',
    '',
  ].join('\n'));
  const server = startPinnedCommand('nats-server', core, [path, '-c', config], true);
  void server.exited.then(() => rmSync(dir, { recursive: true, force: true }));
  const ws = await server.waitForLog((l) => typeof l.raw === 'string' && l.raw.includes('Listening for websocket clients on'));
  const client = await server.waitForLog((l) => typeof l.raw === 'string' && l.raw.includes('Listening for client connections on'));
  await server.waitForLog((l) => typeof l.raw === 'string' && l.raw.includes('Server is ready'));
  const wsPort = Number(/:(\d+)\s*$/.exec(ws.raw as string)?.[1]);
  const port = Number(/:(\d+)\s*$/.exec(client.raw as string)?.[1]);
  return { server, port, url: `ws://127.0.0.1:${wsPort}` };
}

/**
 * A variant's own flags among `extra`: `--cli=PATH` runs another build, `--node=FLAG` passes FLAG to
 * node itself (a V8 or Node option, e.g. `--node=--max-semi-space-size=16`); the rest go to the CLI.
 */
function splitVariantFlags(extra: string[], defaultCli: string, nodeFlags: string[]): { cli: string; args: string[]; node: string[] } {
  const cli = extra.find((a) => a.startsWith('--cli='))?.slice('--cli='.length) ?? defaultCli;
  const node = [...nodeFlags, ...extra.filter((a) => a.startsWith('--node=')).map((a) => a.slice('--node='.length))];
  return { cli, node, args: extra.filter((a) => !a.startsWith('--cli=') && !a.startsWith('--node=')) };
}

export async function startMpc(core: number | null, nodeFlags: string[] = [], extra: string[] = []): Promise<{ server: Server; publisherPort: number; gatewayPort: number; plainPort: number | null }> {
  const { cli, args, node } = splitVariantFlags(extra, CLI.mpc, nodeFlags);
  // Admin HTTP off: its default port is fixed (9101), so a second bench on the machine could not start.
  const server = startPinned('tormq-mpc', core, cli, ['-s', '0', '-p', '0', '--admin-port', 'off', '--log-level', 'info', ...args], node);
  const ready = await server.waitForLog((l) => l.msg === 'mpc ready');
  const plainPort = typeof ready.plainPort === 'number' ? ready.plainPort : null;
  return { server, publisherPort: ready.publisherPort as number, gatewayPort: ready.gatewayPort as number, plainPort };
}

export interface GatewayHandle {
  server: Server;
  port: number;
  adminPort: number;
  url: string;
  stats(): Promise<Record<string, unknown> & { deliveries: number; messagesIn: number; workers: Array<Record<string, number>> }>;
  metrics(): Promise<string>;
}

/**
 * `extra` may hold `--cli=PATH`: run another build of tormq-gateway (an A/B variant, e.g. the
 * previous commit compiled elsewhere) under the same workload in the same run; and `--node=FLAG`.
 */
export async function startGateway(core: number | null, mpcPort: number, workers: number, extra: string[], nodeFlags: string[] = []): Promise<GatewayHandle> {
  const variant = splitVariantFlags(extra, CLI.gateway, nodeFlags);
  const args = ['-r', `127.0.0.1:${mpcPort}`, '-p', '0', '--admin-port', '0', '--workers', String(workers), '--log-level', 'info', ...variant.args];
  const server = startPinned('tormq-gateway', core, variant.cli, args, variant.node);
  const ready = await server.waitForLog((l) => l.msg === 'gateway ready');
  await server.waitForLog((l) => l.msg === 'MPC link up');
  const adminPort = ready.adminPort as number;
  return {
    server,
    port: ready.port as number,
    adminPort,
    url: `ws://127.0.0.1:${ready.port as number}/ws`,
    stats: async () => (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as never,
    metrics: async () => (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text(),
  };
}

/** The baseline reads the MPC's plain port (`--plain-port`): the original `[root, body]` frames, not the tormq link. */
export async function startBaseline(core: number | null, mpcPlainPort: number): Promise<{ server: Server; port: number; url: string }> {
  const server = startPinned('baseline', core, CLI.baseline, ['--mpc', `127.0.0.1:${mpcPlainPort}`]);
  const ready = await server.waitForLog((l) => l.msg === 'baseline ready');
  return { server, port: ready.port as number, url: `ws://127.0.0.1:${ready.port as number}/ws` };
}

/** Stops every process this module started (by PID). */
export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((s) => s.stop()));
}

/** Last-resort cleanup when the runner dies: SIGKILL by PID, synchronously. */
export function killAllSync(): void {
  for (const s of started) {
    try {
      s.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
