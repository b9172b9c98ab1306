#!/usr/bin/env node
/**
 * `node dist/bench/replay-rate.js [--messages 10000]`: how fast a tormq.v2 resume replays history. A
 * real MPC (history large enough) and gateway (2 workers); N messages are published on one topic,
 * then a tormq.v2 client subscribes with `since` at the stream's start and the time from its subscribe
 * to its ack (every missed message arrives before the ack) is measured, three times.
 */
import { parseArgs } from 'node:util';
import { Publisher } from '../src/index.js';
import { startGatewayProcess, startMpcProcess } from '../test/helpers/processes.js';
import { TestClient } from '../test/helpers/ws-client.js';

const { values: o } = parseArgs({ options: { messages: { type: 'string', default: '10000' } } });
const N = Number(o.messages);
const mpc = await startMpcProcess(undefined, ['--history-size', String(N), '--history-max-bytes', String(1 << 30)]);
const gateway = await startGatewayProcess(mpc.gatewayPort, ['--max-recovery-messages', String(N), '--slow-client-bytes', String(256 << 20)]);
const publisher = new Publisher('127.0.0.1', mpc.publisherPort, { maxQueue: N + 10 });
try {
  const first = await TestClient.v2(gateway.url);
  const ack = await first.request({ event: 'subscribe', topics: ['replay'], recover: true });
  const start = (ack.positions as Record<string, { epoch: string; offset: number }>).replay!;
  await publisher.ready({ timeoutMs: 10_000 });
  await Promise.all(Array.from({ length: N }, (_, i) => publisher.send('replay', { i, pad: 'x'.repeat(100) })));
  await first.waitForCount(1 + N, 60_000);
  await first.close();
  for (let run = 1; run <= 3; run++) {
    const client = await TestClient.v2(gateway.url);
    const t0 = performance.now();
    const reply = await client.request({ event: 'subscribe', topics: ['replay'], recover: true, since: { replay: start } });
    const ms = performance.now() - t0;
    const replayed = client.publications().length;
    console.log(`run ${run}: recovered ${String(reply.recovered)}, ${replayed} messages replayed before the ack in ${ms.toFixed(0)} ms: ${Math.round(replayed / (ms / 1000))} msgs/s`);
    await client.close();
  }
} finally {
  await publisher.close();
  await gateway.stop();
  await mpc.stop();
}
