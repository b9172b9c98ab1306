/** Helpers the end-to-end tests share: Prometheus text, process RSS, raw upgrades, worker mapping, polling. */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { XPublisher } from 'zeromq';
import type { GatewayProcess } from './processes.js';
import { TestClient } from './ws-client.js';

/** The value of one sample in Prometheus text format, or undefined when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (match[2] ?? '').slice(1, -1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) found[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return undefined;
}

export async function metricsText(gateway: GatewayProcess): Promise<string> {
  const res = await gateway.admin('/metrics');
  return res.text();
}

/** Resident set size of a process, bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (kb === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(kb[1]) * 1024;
}

/** Polls `check` (e.g. a /stats read) until it returns true; fails after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Connects clients until every worker holds at least one, each subscribed to its own root `${prefix}N`.
 * The gateway's /stats lists each worker's topics, which tells which worker owns which client.
 * Returns clients grouped by worker index.
 */
export async function clientsOnEveryWorker(
  gateway: GatewayProcess,
  prefix: string,
  workers: number,
  track: TestClient[],
): Promise<Map<number, Array<{ client: TestClient; root: string }>>> {
  const byWorker = new Map<number, Array<{ client: TestClient; root: string }>>();
  const all: Array<{ client: TestClient; root: string }> = [];
  // SO_REUSEPORT spreads connections by hash; 64 tries leave both workers empty-handed with odds 2^-63.
  for (let i = 0; i < 64 && byWorker.size < workers; i++) {
    const client = await TestClient.connect(gateway.url);
    track.push(client);
    const root = `${prefix}${i}`;
    await client.subscribe(root);
    all.push({ client, root });
    // The worker reports a new root to the main thread by postMessage, which nothing orders against
    // this HTTP request: wait (bounded) until /stats shows it.
    let stats = await gateway.stats();
    await until(`root ${root} reported`, async () => (stats = await gateway.stats()).workers.some((w) => w.topics.includes(root)));
    byWorker.clear();
    for (const entry of all) {
      const owner = stats.workers.find((w) => w.topics.includes(entry.root));
      if (owner === undefined) throw new Error(`no worker holds root ${entry.root}`);
      const list = byWorker.get(owner.index) ?? [];
      list.push(entry);
      byWorker.set(owner.index, list);
    }
  }
  if (byWorker.size < workers) throw new Error('could not place a client on every worker');
  return byWorker;
}

/**
 * A raw upgrade request from a client that never closes its side (allowHalfOpen), like a careless or
 * hostile one; resolves with the status line once the server has closed the socket.
 */
export function rawUpgrade(port: number, extraHeaders = ''): Promise<{ status: string; serverEnded: boolean; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('end', () => resolve({ status: data.split('\r\n', 1)[0]!, serverEnded: true, socket }));
    socket.on('error', reject);
    socket.write(
      'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`,
    );
  });
}

/** An upgrade request for `path` with `extraHeaders` (each ending in CRLF), as raw bytes. */
export function upgradeRequest(path = '/ws', extraHeaders = ''): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`
  );
}

/**
 * Like an attacker with SO_LINGER 0: connects, sends `request`, and resets the connection (TCP RST,
 * `socket.resetAndDestroy()`) `delayMs` later (0: in the same tick). Resolves once the socket is closed.
 */
export function resetAfterRequest(port: number, request: string, delayMs = 0): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write(request);
      if (delayMs === 0) socket.resetAndDestroy();
      else setTimeout(() => socket.resetAndDestroy(), delayMs);
    });
    socket.on('error', () => {}); // our own reset, or the server's refusal closing first
    socket.once('close', () => resolve());
  });
}

/**
 * `count` tries of `resetAfterRequest`, started `1000 / perSecond` ms apart (not waiting for each
 * other), the reset coming 0–3 ms after the request so that it lands at every stage of the server's
 * answer. `request(i)` makes the i-th request. Resolves when every socket has closed.
 */
export async function resetFlood(port: number, request: (i: number) => string | Promise<string>, count: number, perSecond = 100): Promise<void> {
  const all: Array<Promise<void>> = [];
  for (let i = 0; i < count; i++) {
    all.push(resetAfterRequest(port, await request(i), i % 4));
    await new Promise((resolve) => setTimeout(resolve, 1000 / perSecond));
  }
  await Promise.all(all);
}

/**
 * A raw ZeroMQ publisher (an XPUB: a PUB on the wire, as a Python publisher's) connected to an MPC's
 * publisher port, resolved once the MPC's subscription has reached it. A PUB drops what it is given
 * until then (the slow joiner), so a fixed sleep before the first send fails on a slow machine.
 */
export async function connectedRawPublisher(port: number, options: { sendHighWaterMark?: number } = {}): Promise<XPublisher> {
  const publisher = new XPublisher({ linger: 0, ...options });
  publisher.connect(`tcp://127.0.0.1:${port}`);
  const timer = setTimeout(() => publisher.close(), 10_000);
  try {
    await publisher.receive(); // the MPC subscribes to everything it is sent (it keeps history)
  } catch (error) {
    throw new Error(`no subscription from the MPC on port ${port} within 10 s`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  return publisher;
}

/**
 * Established TCP connections whose local port is `port` (this machine's /proc/net/tcp and tcp6): how
 * many peers a server holds when it keeps no count of its own (libzmq's sockets).
 */
export function establishedOn(port: number): number {
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      const localPort = parseInt(fields[1]!.split(':')[1]!, 16);
      if (localPort === port && fields[3] === '01') count++; // 01: ESTABLISHED
    }
  }
  return count;
}
