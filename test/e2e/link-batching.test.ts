/**
 * The MPC → gateway link's batch frames (src/mpc/link-batcher.ts): a burst below one root reaches a
 * tormq gateway in fewer frames than messages, every message delivered in order; a gateway older than
 * batches (a raw XSUB subscribing as the previous release did, without the batch capability) gets one
 * frame per message while it is linked, and batching comes back once it has gone. With
 * `--coalesce-ms` (messages held for gateways up to that long) paced messages travel in a few frames,
 * and nothing is lost or reordered; what the hold has when the MPC stops still reaches the gateway.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { XSubscriber } from 'zeromq';
import { Publisher } from '../../src/sdk/publisher.js';
import { LinkKind, parseStreamFrame, privateSubscription, subtreeSubscription, topicSubscription, type StreamFrameView } from '../../src/zmq/gateway-link.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { until } from '../helpers/probes.js';
import { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const BURST = 300;

interface Link {
  mpc: MpcProcess;
  gateway: GatewayProcess;
  client: TestClient;
  publisher: Publisher;
  stop(): Promise<void>;
}

/** An MPC (with `mpcArgs`), a gateway, a client subscribed to `prefix`:0..9, and an SDK publisher. */
async function startLink(mpcArgs: string[], prefix: string): Promise<Link> {
  const mpc = await startMpcProcess(undefined, mpcArgs);
  const gateway = await startGatewayProcess(mpc.gatewayPort);
  const client = await TestClient.connect(gateway.url);
  for (let i = 0; i < 10; i++) await client.subscribe(`${prefix}:${i}`);
  const publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  await publisher.ready({ timeoutMs: 10_000 });
  return {
    mpc, gateway, client, publisher,
    async stop() {
      await publisher.close();
      await client.close();
      await gateway.stop();
      await mpc.stop();
    },
  };
}

describe('link batching', () => {
  let link: Link;
  let mpc: MpcProcess;
  let client: TestClient;
  let publisher: Publisher;
  let burst = 0;

  /** Publishes BURST messages on lb:0..lb:9 in one go; resolves when the client has all of them. */
  const publishBurst = async (): Promise<string[]> => {
    const tag = `b${++burst}`;
    const from = client.messages.length;
    const sent: Array<Promise<void>> = [];
    for (let i = 0; i < BURST; i++) sent.push(publisher.send(`lb:${i % 10}`, `${tag}-${i}`));
    await Promise.all(sent);
    await client.waitFor(() => client.messages.slice(from).filter((m) => m.includes(`"${tag}-`)).length >= BURST, from);
    return client.messages.slice(from).filter((m) => m.includes(`"${tag}-`));
  };

  before(async () => {
    link = await startLink([], 'lb');
    ({ mpc, client, publisher } = link);
  });

  after(() => link?.stop());

  test('a burst below one root travels in fewer frames than messages; all delivered, in order per topic', async () => {
    const before = await mpc.stats();
    const got = await publishBurst();
    const after = await mpc.stats();
    const forwarded = after.forwarded - before.forwarded;
    const frames = after.linkFrames - before.linkFrames;
    assert.equal(forwarded, BURST);
    assert.ok(frames < forwarded, `${frames} frames for ${forwarded} messages`);
    assert.equal(got.length, BURST, 'each message once');
    for (let t = 0; t < 10; t++) {
      const seq = got.filter((m) => m.includes(`"topic":"lb:${t}"`)).map((m) => Number(/-(\d+)"/.exec(m)![1]));
      assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `lb:${t} in order`);
    }
  });

  test('a gateway older than batches gets one frame per message while it is linked; batching resumes when it leaves', async () => {
    const gatewaysBefore = (await mpc.stats()).connections.gateway.open;
    const old = new XSubscriber({ linger: 0 });
    old.connect(`tcp://127.0.0.1:${mpc.gatewayPort}`);
    // Subscribes as the previous release did: private key, then the root and its subtree; no capability.
    await old.send(privateSubscription(randomBytes(16), true));
    await old.send(topicSubscription('lb', true));
    await old.send(subtreeSubscription('lb', true));
    const view: StreamFrameView = { kind: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, offset: 0, bodyStart: 0 };
    const kinds: number[] = [];
    const reading = (async () => {
      for await (const [frame] of old) if (frame![0] !== 0 && parseStreamFrame(frame!, view)) kinds.push(view.kind);
    })().catch(() => {});
    // Its subscriptions have reached the MPC once both are confirmed (position and subtree frames); the
    // private key, sent first, is then known too.
    await until('the MPC confirmed its subscriptions', () => kinds.includes(LinkKind.POSITION) && kinds.includes(LinkKind.SUBTREE));
    const before = await mpc.stats();
    const got = await publishBurst();
    const after = await mpc.stats();
    assert.equal(got.length, BURST, 'the tormq gateway still gets everything');
    assert.equal(after.linkFrames - before.linkFrames, BURST, 'one frame per message');
    for (let i = 0; i < 100 && kinds.filter((k) => k === LinkKind.MESSAGE).length < BURST; i++) await sleep(20);
    assert.equal(kinds.filter((k) => k === LinkKind.MESSAGE).length, BURST, 'the old gateway read every message as its own frame');
    assert.equal(kinds.includes(LinkKind.BATCH), false, 'and never a batch');
    old.close();
    await reading;
    await until('its disconnection reached the MPC', async () => (await mpc.stats()).connections.gateway.open === gatewaysBefore);
    const again = await mpc.stats();
    await publishBurst();
    const last = await mpc.stats();
    assert.ok(last.linkFrames - again.linkFrames < BURST, 'batches again');
  });
});

describe('--coalesce-ms', () => {
  let link: Link;
  let mpc: MpcProcess;
  let client: TestClient;
  let publisher: Publisher;

  before(async () => {
    link = await startLink(['--coalesce-ms', '20'], 'lc');
    ({ mpc, client, publisher } = link);
  });

  after(() => link?.stop());

  test('paced bursts travel together, and nothing is lost or reordered: all arrive, once, in order per topic', async () => {
    const before = await mpc.stats();
    const from = client.messages.length;
    for (let i = 0; i < 100; i++) {
      await publisher.send(`lc:${i % 10}`, `c-${i}`);
      if (i % 10 === 9) await sleep(5); // bursts of 10, 5 ms apart: several of them in one 20 ms window
    }
    await client.waitFor(() => client.messages.slice(from).filter((m) => m.includes('"c-')).length >= 100, from);
    const got = client.messages.slice(from).filter((m) => m.includes('"c-')).map((m) => Number(/"c-(\d+)"/.exec(m)![1]));
    assert.equal(got.length, 100, 'each once');
    for (let t = 0; t < 10; t++) {
      const seq = got.filter((n) => n % 10 === t);
      assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `lc:${t} in order`);
    }
    const after = await mpc.stats();
    assert.equal(after.forwarded - before.forwarded, 100);
    // Ten bursts over ≥ 50 ms; each read would leave as its own frame without the window.
    const frames = after.linkFrames - before.linkFrames;
    assert.ok(frames > 0 && frames <= 6, `${frames} link frames for 10 bursts`);
  });
});

describe('--coalesce-ms when the MPC stops', () => {
  let link: Link;

  before(async () => {
    link = await startLink(['--coalesce-ms', '1000'], 'ls');
  });

  after(() => link?.stop());

  test('a message held when the MPC is told to stop is sent before the link closes', async () => {
    const { mpc, client, publisher } = link;
    // The first message after a quiet hold leaves at once; one within a hold of it is held.
    await publisher.send('ls:0', 'first');
    await client.waitFor((m) => m.includes('"first"'));
    const before = await mpc.stats();
    const from = client.messages.length;
    await publisher.send('ls:0', 'held');
    // Stop as soon as the MPC has taken the message, well inside the 1 s hold.
    const deadline = Date.now() + 5000;
    while ((await mpc.stats()).forwarded === before.forwarded) {
      if (Date.now() > deadline) throw new Error('the MPC did not take the message within 5 s');
    }
    const heldAtStop = !client.messages.slice(from).some((m) => m.includes('"held"'));
    await mpc.stop();
    assert.ok(heldAtStop, 'the message was still held when the MPC was stopped (else this test proves nothing)');
    await client.waitFor((m) => m.includes('"held"'), from, 5000);
  });
});
