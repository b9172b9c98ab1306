/**
 * The MPC's own ZMTP reader on the publisher port (src/zmq/zmtp-subscriber.ts), attacked with raw TCP:
 * handshakes cut or reset at every stage, peers that are not ZeroMQ PUBs, a CURVE publisher on the
 * plain port, frames split byte by byte, a frame that announces a gigabyte, too many parts, a large
 * message dripped one byte per segment (what the reader holds meanwhile). Each bad
 * peer is closed or its message dropped and counted; the next publisher's message is delivered, and a
 * well-behaved hand-rolled ZMTP 3.0 PUB is accepted like libzmq's.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Publisher, curveKeyPair, type XPublisher } from 'zeromq';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { connectedRawPublisher, rssBytes } from '../helpers/probes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';
import { cutAtEveryStage, frame, greeting, message, rawConnect, readyCommand, wrongPeers } from '../helpers/zmtp-raw.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the MPC has sent its greeting, READY and, after ours, the subscription to everything. */
async function waitForSubscription(socket: { received: Buffer[] }): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const all = Buffer.concat(socket.received);
    // greeting (64) + READY command + the 3-byte subscription message [0, 1, 1]
    if (all.length >= 64 && all.subarray(all.length - 3).equals(Buffer.from([0, 1, 1]))) return;
    await sleep(10);
  }
  assert.fail('no subscription from the MPC');
}

describe('the MPC\'s ZMTP reader under hostile publishers', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let client: TestClient;
  let good: XPublisher;
  let sequence = 0;

  /** A message from a well-behaved zeromq.js publisher still arrives. */
  const stillDelivers = async () => {
    const valid = `valid-${++sequence}`;
    const from = client.messages.length;
    await good.send(['zr', `{"topic": "zr:x", "data": "${valid}"}`]);
    await client.waitFor((m) => m.includes(valid), from);
  };

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--max-message-bytes', '4096']);
    gateway = await startGatewayProcess(mpc.gatewayPort);
    client = await TestClient.connect(gateway.url);
    await client.subscribe('zr:x');
    good = await connectedRawPublisher(mpc.publisherPort);
    await stillDelivers();
  });

  after(async () => {
    await client?.close();
    good?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('a hand-rolled ZMTP 3.0 PUB is subscribed to everything, and its message split into single bytes arrives whole', async () => {
    const peer = await rawConnect(mpc.publisherPort);
    peer.write(Buffer.concat([greeting(), readyCommand('PUB')]));
    await waitForSubscription(peer);
    const bytes = message(['zr', '{"topic": "zr:x", "data": "byte-by-byte"}']);
    const from = client.messages.length;
    for (const byte of bytes) {
      peer.write(Buffer.from([byte]));
      await sleep(1);
    }
    await client.waitFor((m) => m.includes('byte-by-byte'), from);
    peer.destroy();
  });

  test('cut or reset at every stage of the handshake: nothing sticks, others are served', async () => {
    const full = Buffer.concat([greeting(), readyCommand('PUB'), message(['zr', '{"topic": "zr:x", "data": "cut'])]);
    await cutAtEveryStage(mpc.publisherPort, full, 5);
    await stillDelivers();
    assert.equal(client.messages.some((m) => m.includes('"cut')), false, 'a half-sent message reached nobody');
  });

  test('peers that are not plain ZeroMQ PUBs are closed and counted: HTTP, a SUB, a CURVE publisher', async () => {
    const before = (await mpc.stats()).publisherHandshakeFailures;
    await wrongPeers(mpc.publisherPort, 'SUB');
    // And libzmq's own CURVE client: refused at the greeting (its messages go nowhere).
    const keys = curveKeyPair();
    const server = curveKeyPair();
    const curvePublisher = new Publisher({ linger: 0, curveServerKey: server.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey });
    curvePublisher.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
    for (let i = 0; i < 100 && (await mpc.stats()).publisherHandshakeFailures < before + 4; i++) await sleep(20);
    curvePublisher.close();
    assert.ok((await mpc.stats()).publisherHandshakeFailures >= before + 4, 'HTTP, SUB and two CURVE peers refused');
    await mpc.waitForLog((l) => l.msg === 'publisher connection refused at the ZMTP handshake' && String(l.why).includes('CURVE'));
    await stillDelivers();
  });

  test('a frame over --max-message-bytes is skipped as it streams (one oversized), too many parts are one bad_frames, a 1 GB frame cut by a reset leaves nothing behind', async () => {
    const peer = await rawConnect(mpc.publisherPort);
    peer.write(Buffer.concat([greeting(), readyCommand('PUB')]));
    await waitForSubscription(peer);
    const before = (await mpc.stats()).publishDrops;
    // [root][body over --max-message-bytes, streamed in 64 KB pieces], then a valid message on the same connection.
    peer.write(frame('zr', true));
    const header = Buffer.alloc(9);
    header[0] = 2;
    header.writeBigUInt64BE(BigInt(2 * 1024 * 1024), 1);
    peer.write(header);
    const piece = Buffer.alloc(64 * 1024, 0x41);
    for (let sent = 0; sent < 2 * 1024 * 1024; sent += piece.length) peer.write(piece);
    peer.write(message(['zr', 'x', 'y', 'z', 'w'])); // five parts
    const from = client.messages.length;
    peer.write(message(['zr', '{"topic": "zr:x", "data": "after-the-big-one"}']));
    await client.waitFor((m) => m.includes('after-the-big-one'), from);
    const afterDrops = (await mpc.stats()).publishDrops;
    assert.equal(afterDrops.oversized, before.oversized + 1, 'the 2 MB body: one oversized');
    assert.equal(afterDrops.bad_frames, before.bad_frames + 1, 'five parts: one bad_frames');
    // A frame announced at 1 GB and then abandoned by a reset: nothing waits for the rest.
    header.writeBigUInt64BE(BigInt(1024 ** 3), 1);
    peer.write(frame('zr', true));
    peer.write(header);
    peer.write(piece);
    await sleep(50);
    peer.resetAndDestroy();
    await stillDelivers();
  });
});

describe('the MPC\'s ZMTP reader under a publisher that drips', () => {
  const sys = useSystem(); // --max-message-bytes at its default, 1 MB

  test('a 300 KB message sent one byte per TCP segment costs the MPC about its size (not a Buffer per byte), others are served meanwhile, and it arrives whole', async (t) => {
    const client = await sys.connect();
    await client.subscribe('zd:x');
    await sys.publisher.ready({ topic: 'zd', timeoutMs: 10_000 });
    const mpcRss = () => rssBytes(sys.mpc.child.pid!);
    const pad = 300_000;
    const body = `{"topic": "zd:x", "data": "dripped-${'d'.repeat(pad)}"}`;
    const bytes = message(['zd', body]);
    const peer = await rawConnect(sys.mpc.publisherPort);
    peer.setNoDelay(true);
    peer.write(Buffer.concat([greeting(), readyCommand('PUB')]));
    await waitForSubscription(peer);
    const rssBefore = mpcRss();
    const from = client.messages.length;
    for (let i = 0; i < bytes.length; i++) {
      peer.write(bytes.subarray(i, i + 1));
      // Pauses let the writes leave as separate segments, read one by one by the MPC (the memory the
      // reader held per read is what this measures).
      if (i % 100 === 99) await sleep(1);
      if (i === bytes.length >> 1) {
        // Half-way: a well-behaved publisher's message is delivered as usual.
        await sys.publisher.send('zd:x', 'meanwhile');
        await client.waitFor((m) => m.includes('"meanwhile"'), from);
      }
    }
    const dripped = await client.waitFor((m) => m.includes('dripped-'), from);
    assert.equal(dripped.length > pad, true, 'the whole body arrived');
    assert.equal(JSON.parse(dripped).data, `dripped-${'d'.repeat(pad)}`);
    // Held as a list of the reads, 300 KB dripped grew the MPC's RSS by 74–76 MB (≈ 250 bytes per byte
    // sent); held in one buffer that doubles, by 6–8 MB in all.
    const grown = mpcRss() - rssBefore;
    t.diagnostic(`the MPC's RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
    assert.ok(grown < 20 * 1024 * 1024, `the MPC's RSS grew by ${(grown / 1048576).toFixed(1)} MB for a 300 KB message`);
    peer.destroy();
  });
});
