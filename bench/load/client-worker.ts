/**
 * Piscina task: one client-fleet thread. Opens its share of WebSocket connections, subscribes each
 * (awaiting the ack), reports readiness on its MessagePort, then records every message's end-to-end
 * latency (publisher stamp -> receive, µs) until told to stop. Posts progress counts while it runs
 * and returns its histogram counts. Bounded: every wait has a deadline, every socket is closed.
 */
import type { MessagePort } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { monotonicUs } from './clock.js';
import { Histogram } from './histogram.js';

export interface ClientTask {
  url: string;
  /** One topic per connection of this thread (its length is the connection count). */
  topics: string[];
  /** Connections opening at once, per thread. */
  connectConcurrency: number;
  /** Give up on connecting and subscribing after this long. */
  connectTimeoutMs: number;
  /** Stop by itself after this long even if never told to (safety bound). */
  maxLifetimeMs: number;
  port: MessagePort;
  /**
   * What the server speaks: tormq's client protocol (subscribe with an id, the ack first), or NATS's
   * text protocol over WebSocket (CONNECT, SUB subject sid, PING; the PONG says the SUB is in place).
   */
  protocol?: 'tormq' | 'nats';
}

export interface ClientResult {
  opened: number;
  failed: number;
  /** Wall time to open and subscribe all of this thread's connections, ms. */
  connectMs: number;
  received: number;
  /** Messages without a parsable stamp (must be 0). */
  unstamped: number;
  /** NATS `-ERR` lines received (0 for tormq). */
  natsErrors: number;
  /** Connections closed by the server during the run. */
  closedByServer: number;
  counts: number[];
  max: number;
}

/** Progress posted on the task's port. */
export type ClientProgress =
  | { type: 'ready'; opened: number; failed: number; connectMs: number }
  | { type: 'progress'; received: number; closedByServer: number };

const STAMP = Buffer.from('"t":');

/** Reads the integer after `"t":` in a body without parsing the JSON (the client is the bottleneck). */
function stampOf(data: Buffer): number {
  let i = data.indexOf(STAMP);
  if (i === -1) return -1;
  i += STAMP.length;
  let value = 0;
  for (let c = data[i]!; c >= 0x30 && c <= 0x39; c = data[++i]!) value = value * 10 + (c - 0x30);
  return value;
}

const CRLF = Buffer.from('\r\n');
const NATS_PONG = Buffer.from('PONG\r\n');

/** One NATS connection's unparsed tail (a message split across WebSocket frames). */
interface NatsState {
  rest: Buffer | null;
}

/**
 * Feeds one WebSocket frame of NATS protocol: each MSG's payload goes to `onPayload`; a server PING
 * is answered; a PONG calls `onPong`; `-ERR` lines call `onError`. A frame may carry several
 * messages or part of one (the tail waits for the next frame).
 */
function natsFeed(state: NatsState, data: Buffer, ws: WebSocket, onPayload: (payload: Buffer) => void, onPong: () => void, onError: () => void): void {
  const buf = state.rest === null ? data : Buffer.concat([state.rest, data]);
  let i = 0;
  while (i < buf.length) {
    const eol = buf.indexOf(CRLF, i);
    if (eol === -1) break;
    if (buf[i] === 0x4d) {
      // MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n: the size is the line's last token.
      let j = eol - 1;
      let len = 0;
      for (let mul = 1; buf[j] !== 0x20; j--, mul *= 10) len += (buf[j]! - 0x30) * mul;
      const start = eol + 2;
      if (start + len + 2 > buf.length) break;
      onPayload(buf.subarray(start, start + len));
      i = start + len + 2;
      continue;
    }
    const line = buf.toString('latin1', i, eol);
    if (line === 'PING') ws.send(NATS_PONG);
    else if (line === 'PONG') onPong();
    else if (line.startsWith('-ERR')) onError();
    i = eol + 2;
  }
  state.rest = i < buf.length ? Buffer.from(buf.subarray(i)) : null;
}

export async function runClients(task: ClientTask): Promise<ClientResult> {
  let histogram = new Histogram();
  const sockets: WebSocket[] = [];
  let received = 0;
  let unstamped = 0;
  let closedByServer = 0;
  let stopping = false;
  let failed = 0;
  /** NATS `-ERR` lines received (e.g. a slow-consumer notice). */
  let natsErrors = 0;

  const onMessage = (data: Buffer): void => {
    received++;
    const stamp = stampOf(data);
    if (stamp <= 0) unstamped++;
    else histogram.record(monotonicUs() - stamp);
  };

  const open = (topic: string, id: number): Promise<void> =>
    new Promise((resolve) => {
      const ws = new WebSocket(task.url, { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: task.connectTimeoutMs });
      let acked = false;
      let settled = false;
      const fail = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        failed++;
        resolve();
      };
      const timer = setTimeout(() => {
        fail();
        ws.terminate();
      }, task.connectTimeoutMs);
      const ready = (): void => {
        acked = true;
        settled = true;
        clearTimeout(timer);
        sockets.push(ws);
        resolve();
      };
      if (task.protocol === 'nats') {
        const state: NatsState = { rest: null };
        const onError = (): void => {
          natsErrors++;
        };
        ws.on('open', () => ws.send(`CONNECT {"verbose":false,"pedantic":false}\r\nSUB ${topic} 1\r\nPING\r\n`));
        ws.on('message', (data: Buffer) => natsFeed(state, data, ws, onMessage, () => {
          // The first PONG: the server has processed the SUB (nothing is published before every client is ready).
          if (!acked) ready();
        }, onError));
        ws.on('error', () => {});
        ws.on('close', () => {
          if (!acked) fail();
          else if (!stopping) closedByServer++;
        });
        return;
      }
      ws.on('open', () => ws.send(JSON.stringify({ event: 'subscribe', topics: [topic], id })));
      ws.on('message', (data: Buffer) => {
        if (acked) return onMessage(data);
        // The first frame is the ack (nothing is published before every client is ready).
        acked = true;
        settled = true;
        clearTimeout(timer);
        sockets.push(ws);
        ws.removeAllListeners('message');
        ws.on('message', onMessage);
        resolve();
      });
      ws.on('error', () => {});
      ws.on('close', () => {
        if (!acked) fail();
        else if (!stopping) closedByServer++;
      });
    });

  const started = performance.now();
  let next = 0;
  const opener = async (): Promise<void> => {
    while (next < task.topics.length) {
      const i = next++;
      await open(task.topics[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(task.connectConcurrency, task.topics.length) }, opener));
  const connectMs = performance.now() - started;
  task.port.postMessage({ type: 'ready', opened: sockets.length, failed, connectMs } satisfies ClientProgress);

  const progress = setInterval(() => task.port.postMessage({ type: 'progress', received, closedByServer } satisfies ClientProgress), 100);
  await new Promise<void>((resolve) => {
    const lifetime = setTimeout(resolve, task.maxLifetimeMs);
    task.port.on('message', (m: { type: 'reset' | 'stop' }) => {
      // reset: the warm-up is over, latency from here on is the measured window's.
      if (m.type === 'reset') histogram = new Histogram();
      else {
        clearTimeout(lifetime);
        resolve();
      }
    });
  });
  clearInterval(progress);
  stopping = true;
  for (const ws of sockets) ws.terminate();
  task.port.close();
  return { opened: sockets.length, failed, connectMs, received, unstamped, natsErrors, closedByServer, counts: Array.from(histogram.counts), max: histogram.max };
}
