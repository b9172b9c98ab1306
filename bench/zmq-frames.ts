#!/usr/bin/env node
/**
 * `node dist/bench/zmq-frames.js [--messages N]`: what zeromq.js costs per frame, sent and received,
 * whatever the frame's size — the reason the MPC batches the messages of one root into one frame
 * (mpc/link-batcher.ts) and reads with receive-loop.ts.
 *
 * A PUB in this process (core 0) sends N 200-byte messages in bursts of 100, as one frame each or as
 * one frame per burst; a SUB in a child process (core 1) receives them. Reported: CPU µs per message
 * of each process (utime + stime of all its threads, libzmq's I/O thread included).
 */
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Publisher, Subscriber } from 'zeromq';
import { canPin, pinSelf } from './load/processes.js';

const { values: o, positionals } = parseArgs({ options: { messages: { type: 'string', default: '50000' }, port: { type: 'string', default: '0' } }, allowPositionals: true });
const MESSAGES = Number(o.messages);
const BURST = 100;
const SIZE = 200;

const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

if (positionals[0] === 'receiver') {
  // Child: counts messages (a batch frame carries BURST) until `expect` arrived, reports its CPU.
  if (canPin([1])) pinSelf(1);
  const sub = new Subscriber({ receiveHighWaterMark: 0 });
  sub.connect(`tcp://127.0.0.1:${o.port}`);
  sub.subscribe();
  process.send!('ready');
  let got = 0;
  let start = 0;
  for await (const [frame] of sub) {
    if (got === 0) start = cpu();
    got += frame!.length > SIZE ? BURST : 1;
    if (got >= MESSAGES) break;
  }
  process.send!({ usPerMessage: (cpu() - start) / MESSAGES });
  sub.close();
} else {
  if (canPin([0, 1])) pinSelf(0);
  const rows: string[] = [];
  for (const mode of ['frame per message', `frame per ${BURST} messages`] as const) {
    const pub = new Publisher({ sendHighWaterMark: 0, linger: 0 });
    await pub.bind('tcp://127.0.0.1:0');
    const port = pub.lastEndpoint!.slice(pub.lastEndpoint!.lastIndexOf(':') + 1);
    const child = fork(fileURLToPath(import.meta.url), ['receiver', '--port', port, '--messages', String(MESSAGES)]);
    const result = new Promise<{ usPerMessage: number }>((resolve) => child.on('message', (m) => typeof m === 'object' && resolve(m as never)));
    await new Promise((resolve) => child.once('message', resolve));
    await sleep(500); // the subscription reaches the PUB
    const message = Buffer.alloc(SIZE, 120);
    const batch = Buffer.alloc(SIZE * BURST, 120);
    const start = cpu();
    for (let sent = 0; sent < MESSAGES; sent += BURST) {
      if (mode === 'frame per message') for (let i = 0; i < BURST; i++) await pub.send(message);
      else await pub.send(batch);
      await sleep(1);
    }
    const sender = (cpu() - start) / MESSAGES;
    const receiver = (await result).usPerMessage;
    rows.push(`| ${mode} | ${sender.toFixed(2)} | ${receiver.toFixed(2)} |`);
    pub.close();
  }
  console.log(`zeromq.js CPU per ${SIZE}-byte message, ${MESSAGES} messages in bursts of ${BURST}, sender core 0, receiver core 1`);
  console.log('| frames | sender µs/msg | receiver µs/msg |\n|---|---|---|');
  for (const row of rows) console.log(row);
}
