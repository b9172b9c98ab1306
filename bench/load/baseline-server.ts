#!/usr/bin/env node
/**
 * The baseline tormq is measured against: a deliberately simple single-thread WebSocket server, the
 * way one would write it first. One zeromq SUB on the MPC's plain port (subscribed to everything), `JSON.parse` of
 * each body for its topic, and `ws.send(body)` to every matching client: ws frames every message
 * once per client. Same client protocol subset as tormq (subscribe with topics + id -> ack), same
 * matching rule, so the same client fleet and publisher drive both.
 *
 * `node dist/bench/load/baseline-server.js --mpc 127.0.0.1:PLAIN_PORT` (the MPC's `--plain-port`) prints
 * `{"msg":"baseline ready","port":N}` and stops on SIGTERM.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';
import { Subscriber } from 'zeromq';
import { topicMatches } from '../../src/protocol/topic.js';

const { values } = parseArgs({ options: { mpc: { type: 'string' }, port: { type: 'string', default: '0' } } });
if (values.mpc === undefined) {
  process.stderr.write('baseline-server: --mpc HOST:PORT is required\n');
  process.exit(2);
}

/** topic -> the clients subscribed to exactly that topic. */
const byTopic = new Map<string, Set<WebSocket>>();
let delivered = 0;

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ delivered, topics: byTopic.size }));
});
const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, clientTracking: false });

wss.on('connection', (ws) => {
  const mine = new Set<string>();
  ws.on('message', (data) => {
    let frame: { event?: string; topics?: string[]; id?: unknown };
    try {
      frame = JSON.parse(data.toString()) as typeof frame;
    } catch {
      return;
    }
    if (frame.event === 'subscribe' && Array.isArray(frame.topics)) {
      for (const topic of frame.topics) {
        mine.add(topic);
        let set = byTopic.get(topic);
        if (set === undefined) byTopic.set(topic, (set = new Set()));
        set.add(ws);
      }
      if (frame.id !== undefined) ws.send(JSON.stringify({ event: 'ack', id: frame.id }));
    }
  });
  ws.on('close', () => {
    for (const topic of mine) {
      const set = byTopic.get(topic);
      set?.delete(ws);
      if (set?.size === 0) byTopic.delete(topic);
    }
  });
});

const sub = new Subscriber();
sub.connect(`tcp://${values.mpc}`);
sub.subscribe();

server.listen(Number(values.port), '127.0.0.1', () => {
  const port = (server.address() as { port: number }).port;
  process.stdout.write(`${JSON.stringify({ msg: 'baseline ready', port, pid: process.pid })}\n`);
});

process.on('SIGTERM', () => {
  sub.close();
  server.close();
  process.exit(0);
});

for await (const [, body] of sub) {
  if (body === undefined) continue;
  let topic: unknown;
  try {
    topic = (JSON.parse(body.toString('utf8')) as { topic?: unknown }).topic;
  } catch {
    continue;
  }
  if (typeof topic !== 'string') continue;
  const seen = new Set<WebSocket>();
  for (const [subscribed, clients] of byTopic) {
    if (!topicMatches(topic, subscribed)) continue;
    for (const ws of clients) {
      if (seen.has(ws) || ws.readyState !== 1) continue;
      seen.add(ws);
      ws.send(body, { binary: false });
      delivered++;
    }
  }
}
