/**
 * The MPC's own ZMTP XPUB on the gateway port (src/zmq/zmtp-publisher.ts). Real gateways link through
 * it in every other e2e test; here it is driven with raw TCP: a
 * hand-rolled XSUB subscribes with ZMTP 3.0 messages and 3.1 commands, peers that are not SUB/XSUB or
 * speak CURVE are refused and counted, frames too large or in too many parts are skipped and counted,
 * and a gateway that never reads has its frames dropped and counted at --gateway-queue-bytes while a
 * real gateway beside it gets every message. After each, a real gateway's client is still served.
 * The libzmq XPUB (`--no-zmtp-link`, and always with CURVE) still links a gateway: every pairing of
 * the two servers with the gateway's two clients is run.
 *
 * The gateway's own ZMTP XSUB client (src/zmq/zmtp-xsub.ts) is likewise what every other e2e test links
 * with; here it faces a hostile "MPC": a frame over its 16 MB limit, a message in two parts, bytes that
 * are no link frame, and a frame size no one can send. Each is skipped and counted or ends the
 * connection, and the gateway dials again. Its libzmq XSUB (`tormq-gateway --no-zmtp-link`) still links.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { XSubscriber, curveKeyPair, type XPublisher } from 'zeromq';
import { randomBytes } from 'node:crypto';
import { encodeRequest, privateSubscription } from '../../src/zmq/gateway-link.js';
import { connectedRawPublisher, until } from '../helpers/probes.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';
import { commandFrame, cutAtEveryStage, greeting, message, parseFrames, rawConnect, readyCommand, wrongPeers, type RawPeer } from '../helpers/zmtp-raw.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** --gateway-queue-total-bytes of the first MPC below (its --gateway-queue-bytes is 1 MB). */
const TOTAL_QUEUE_BYTES = 3 * 1024 * 1024;

/** Stream frame kinds of the link (src/zmq/gateway-link.ts). */
const MESSAGE = 1;
const POSITION = 2;
const SUBTREE = 4;

/** A raw XSUB linked to the MPC's gateway port (greeting and READY exchanged). */
async function rawXsub(port: number): Promise<RawPeer> {
  const peer = await rawConnect(port);
  peer.write(Buffer.concat([greeting(), readyCommand('XSUB')]));
  await waitFor(peer, (frames) => frames.some((f) => f.command && f.data.toString('latin1').includes('XPUB')), 'no READY from the MPC');
  return peer;
}

async function waitFor(peer: RawPeer, done: (frames: ReturnType<typeof parseFrames>) => boolean, why: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (done(parseFrames(peer.received))) return;
    await sleep(10);
  }
  assert.fail(why);
}

/** Stream frames (message, position, subtree) of `topic` among the peer's received frames, by kind. */
function streamFrames(peer: RawPeer, topic: string, kind: number): Buffer[] {
  const head = Buffer.from(`${topic}\0`, 'latin1');
  return parseFrames(peer.received).filter((f) => !f.command && f.data.subarray(0, head.length).equals(head) && f.data[head.length] === kind).map((f) => f.data);
}

describe('the MPC\'s ZMTP link server under raw and hostile gateways', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let client: TestClient;
  let publisher: XPublisher;
  let sequence = 0;

  const publish = (topic: string, data: string) => publisher.send([topic.split(':')[0]!, JSON.stringify({ topic, data })]);

  /** A message published now still reaches the real gateway's client. */
  const stillDelivers = async () => {
    const valid = `valid-${++sequence}`;
    const from = client.messages.length;
    await publish('zl:x', valid);
    await client.waitFor((m) => m.includes(valid), from);
  };

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--gateway-queue-bytes', String(1024 * 1024), '--max-message-bytes', String(256 * 1024), '--gateway-queue-total-bytes', String(TOTAL_QUEUE_BYTES)]);
    gateway = await startGatewayProcess(mpc.gatewayPort);
    client = await TestClient.connect(gateway.url);
    await client.subscribe('zl:x');
    publisher = await connectedRawPublisher(mpc.publisherPort, { sendHighWaterMark: 100_000 });
    await stillDelivers();
  });

  after(async () => {
    await client?.close();
    publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('a hand-rolled XSUB: a root and its subtree confirmed, then their messages; a 3.1 SUBSCRIBE command works too; unsubscribed, nothing more', async () => {
    const peer = await rawXsub(mpc.gatewayPort);
    peer.write(Buffer.concat([message(['\u0001zr\u0000']), message(['\u0001zr:'])]));
    await waitFor(peer, () => streamFrames(peer, 'zr', POSITION).length === 1 && streamFrames(peer, 'zr:', SUBTREE).length === 1, 'no position and subtree confirmation');
    await publish('zr', 'own-topic');
    await publish('zr:a', 'below');
    await waitFor(peer, () => streamFrames(peer, 'zr', MESSAGE).length === 1 && streamFrames(peer, 'zr:a', MESSAGE).length === 1, 'the root\'s messages did not arrive');
    assert.ok(streamFrames(peer, 'zr:a', MESSAGE)[0]!.toString().includes('"below"'));
    // A topic of another root, the real gateway's: not for this peer.
    await stillDelivers();
    assert.equal(streamFrames(peer, 'zl:x', MESSAGE).length, 0, 'a frame of an unsubscribed root reached the raw XSUB');

    // ZMTP 3.1's form: a SUBSCRIBE command.
    peer.write(commandFrame('SUBSCRIBE', 'zq:'));
    await waitFor(peer, () => streamFrames(peer, 'zq:', SUBTREE).length === 1, 'the SUBSCRIBE command was not confirmed');
    await publish('zq:b', 'by-command');
    await waitFor(peer, () => streamFrames(peer, 'zq:b', MESSAGE).length === 1, 'no message after a SUBSCRIBE command');

    // Unsubscribed: the root's messages stop (a later position check would tell a real gateway).
    peer.write(Buffer.concat([message(['\u0000zr\u0000']), message(['\u0000zr:'])]));
    await sleep(100);
    await publish('zr:a', 'after-unsubscribe');
    await stillDelivers();
    await sleep(50);
    assert.equal(streamFrames(peer, 'zr:a', MESSAGE).length, 1, 'a message after the unsubscription arrived');
    peer.destroy();
  });

  test('cut or reset at every stage of the handshake, and peers that are not plain SUB/XSUBs (HTTP, a PUB, CURVE raw and libzmq\'s): closed and counted, others served', async () => {
    const full = Buffer.concat([greeting(), readyCommand('XSUB'), message(['\u0001zl:'])]);
    await cutAtEveryStage(mpc.gatewayPort, full, 2);
    await stillDelivers();

    const before = (await mpc.stats()).gatewayHandshakeFailures;
    await wrongPeers(mpc.gatewayPort, 'PUB');
    // A gateway configured for CURVE reaching a plain MPC: libzmq's CURVE client, refused at the greeting.
    const keys = curveKeyPair();
    const server = curveKeyPair();
    const curveGateway = new XSubscriber({ linger: 0, curveServerKey: server.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey });
    curveGateway.connect(`tcp://127.0.0.1:${mpc.gatewayPort}`);
    for (let i = 0; i < 100 && (await mpc.stats()).gatewayHandshakeFailures < before + 4; i++) await sleep(20);
    curveGateway.close();
    assert.ok((await mpc.stats()).gatewayHandshakeFailures >= before + 4, 'HTTP, PUB and two CURVE peers refused');
    await mpc.waitForLog((l) => l.msg === 'gateway connection refused at the ZMTP handshake' && String(l.why).includes('CURVE'));
    await stillDelivers();
  });

  test('a frame over 8 MB is skipped as it streams and a two-part message dropped, each one bad gateway frame; a 1 GB frame cut by a reset leaves nothing behind', async () => {
    const peer = await rawXsub(mpc.gatewayPort);
    const before = (await mpc.stats()).badGatewayFrames;
    const header = Buffer.alloc(9);
    header[0] = 2;
    header.writeBigUInt64BE(BigInt(9 * 1024 * 1024), 1);
    peer.write(header);
    const piece = Buffer.alloc(64 * 1024, 0x41);
    for (let sent = 0; sent < 9 * 1024 * 1024; sent += piece.length) peer.write(piece);
    peer.write(message(['\u0001zl:', 'second part']));
    // The same connection still subscribes.
    peer.write(message(['\u0001zl:']));
    await waitFor(peer, () => streamFrames(peer, 'zl:', SUBTREE).length === 1, 'no confirmation after the bad frames');
    assert.equal((await mpc.stats()).badGatewayFrames, before + 2, 'the 9 MB frame and the two-part message: one bad frame each');
    peer.destroy();

    const cut = await rawXsub(mpc.gatewayPort);
    header.writeBigUInt64BE(BigInt(1024 ** 3), 1);
    cut.write(header);
    cut.write(piece);
    await sleep(50);
    cut.resetAndDestroy();
    await stillDelivers();
  });

  test('a gateway that never reads: frames to it dropped and counted past --gateway-queue-bytes; the real gateway gets every message', async () => {
    const stalled = await rawXsub(mpc.gatewayPort);
    stalled.write(message(['\u0001zl:']));
    await waitFor(stalled, () => streamFrames(stalled, 'zl:', SUBTREE).length === 1, 'no confirmation');
    stalled.pause(); // never reads again: the kernel's buffers fill, then the MPC's queue
    const before = (await mpc.stats()).sendQueueDrops;
    const body = 'x'.repeat(4000);
    const count = 5000; // 20 MB: past the kernel's buffers and the 1 MB queue
    const from = client.messages.length;
    for (let i = 0; i < count; i++) {
      await publish('zl:x', `bulk-${i}-${body}`);
      if (i % 100 === 99) await sleep(15); // paced for the real gateway's rings
    }
    await client.waitFor((m) => m.includes(`bulk-${count - 1}-`), from, 60_000);
    const bulk = client.messages.slice(from).filter((m) => m.includes('"bulk-'));
    assert.equal(bulk.length, count, 'the real gateway\'s client got every message');
    const drops = (await mpc.stats()).sendQueueDrops - before;
    assert.ok(drops > 0, `frames to the stalled gateway were dropped and counted (${drops})`);
    stalled.destroy();
    await stillDelivers();
  });

  test('peers asking for history and never reading: no answers once half their queue is unread, all together held to --gateway-queue-total-bytes by closing the one holding the most; the real gateway is served', async () => {
    // Before, each connection held --gateway-queue-bytes of 4 MB history pages asked for with 100-byte
    // requests, every request was answered (and the answer dropped) however full its queue: 20
    // connections grew the MPC by 675-712 MB with the default 32 MB (/tmp historyflood.mjs).
    for (let i = 0; i < 50; i++) await publish('zl:h', `h-${i}-${'y'.repeat(10_000)}`);
    await until('the MPC holds the 50 messages', async () => (await mpc.stats()).history.messages >= 50);
    const before = (await mpc.stats()).gatewayQueue!;
    const peers: Array<{ peer: RawPeer; ask: (n: number) => Buffer }> = [];
    for (let c = 0; c < 8; c++) {
      const peer = await rawXsub(mpc.gatewayPort);
      const id = randomBytes(16);
      const request = (n: number, epoch: string, limit: number) => message([encodeRequest({ type: 'history', id: n, reply: id.toString('base64url'), topic: 'zl:h', epoch, after: 0, limit })]);
      peer.write(message([privateSubscription(id, true)]));
      await sleep(20);
      peer.write(request(0, '', 1)); // answered with the stream's epoch
      let epoch = '';
      await waitFor(peer, () => {
        epoch = /"epoch":"([^"]+)"/.exec(Buffer.concat(peer.received).toString('latin1'))?.[1] ?? '';
        return epoch !== '';
      }, 'no epoch in the first answer');
      peer.pause(); // never reads again
      peer.ended.catch(() => {}); // closed by the MPC (a reset, as it never read): expected
      peers.push({ peer, ask: (n) => request(n, epoch, 1000) });
    }
    // Pages of 500 KB, asked for a few at a time: the kernel's socket buffers fill first, then the MPC's.
    let asked = 0;
    const done = async () => {
      const queue = (await mpc.stats()).gatewayQueue!;
      return queue.requestsSkipped > before.requestsSkipped && queue.cutOverTotal > before.cutOverTotal;
    };
    for (let round = 0; round < 200 && !(round % 10 === 9 && (await done())); round++) {
      for (const { peer, ask } of peers) if (!peer.destroyed) for (let i = 0; i < 3; i++) peer.write(ask(++asked));
      await sleep(20);
    }
    assert.ok(await done(), JSON.stringify((await mpc.stats()).gatewayQueue));
    const queue = (await mpc.stats()).gatewayQueue!;
    assert.ok(queue.bytes <= TOTAL_QUEUE_BYTES, `${queue.bytes} bytes held for all gateways`);
    await mpc.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('gateway link closed: all gateways together'));
    for (const { peer } of peers) peer.destroy();
    await stillDelivers();
    assert.equal(gateway.logs.filter((l) => l.msg === 'MPC link down; reconnecting').length, 0, 'the real gateway was never the one closed');
  });
});

describe('the gateway\'s ZMTP link client against a hostile MPC', () => {
  test('a 20 MB frame and a two-part message are skipped, garbage is a bad frame, an impossible size ends the connection; the gateway stays up and dials again', async () => {
    const connections: net.Socket[] = [];
    const server = net.createServer((socket) => {
      connections.push(socket);
      socket.on('error', () => {});
      socket.on('data', () => {});
      // A plain XPUB: whole greeting and READY at once.
      socket.write(Buffer.concat([greeting(), readyCommand('XPUB')]));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const gateway = await startGatewayProcess(port, ['--zmtp-link', '--mpc-warn-ms', '0']);
    try {
      await gateway.waitForLog((l) => l.msg === 'MPC link up');
      const mpcSide = connections[0]!;
      const bad = async () => (await gateway.stats()).publishDrops.bad_frames ?? 0;
      const before = await bad();
      const header = Buffer.alloc(9);
      header[0] = 2;
      header.writeBigUInt64BE(BigInt(20 * 1024 * 1024), 1);
      mpcSide.write(header);
      const piece = Buffer.alloc(256 * 1024);
      for (let sent = 0; sent < 20 * 1024 * 1024; sent += piece.length) {
        if (!mpcSide.write(piece)) await once(mpcSide, 'drain');
      }
      mpcSide.write(message(['first part', 'second part']));
      mpcSide.write(message(['no link frame']));
      for (let i = 0; i < 200 && (await bad()) < before + 3; i++) await sleep(20);
      assert.equal(await bad(), before + 3, 'the 20 MB frame, the two-part message and the garbage: one bad frame each');
      // A size past 2^53: the connection ends, the gateway dials again.
      const impossible = Buffer.alloc(9, 0xff);
      impossible[0] = 2;
      mpcSide.write(impossible);
      for (let i = 0; i < 200 && connections.length < 2; i++) await sleep(20);
      assert.ok(connections.length >= 2, 'the gateway dialled again');
      assert.equal(gateway.child.exitCode, null, 'the gateway is still running');
      assert.equal((await gateway.admin('/stats')).status, 200, 'and answers');
    } finally {
      await gateway.stop();
      for (const c of connections) c.destroy();
      server.close();
    }
  });
});

describe('the gateway\'s two link clients and the MPC\'s two link servers', () => {
  test('each pairing links, and a client gets a message through it: libzmq\'s XSUB (the default) or tormq\'s ZMTP client (--zmtp-link), to tormq\'s XPUB (the default) or libzmq\'s (--no-zmtp-link)', async () => {
    for (const gatewayFlags of [[], ['--zmtp-link']]) {
      for (const mpcFlags of [[], ['--no-zmtp-link']]) await throughPairing(mpcFlags, gatewayFlags);
    }
  });
});

async function throughPairing(mpcFlags: string[], gatewayFlags: string[]): Promise<void> {
  const mpc = await startMpcProcess(undefined, mpcFlags);
  const gateway = await startGatewayProcess(mpc.gatewayPort, gatewayFlags);
  const client = await TestClient.connect(gateway.url);
  const publisher = await connectedRawPublisher(mpc.publisherPort);
  const data = `pairing mpc[${mpcFlags.join(' ')}] gateway[${gatewayFlags.join(' ')}]`;
  try {
    await client.subscribe('ng:a');
    await publisher.send(['ng', JSON.stringify({ topic: 'ng:a', data })]);
    await client.waitFor((m) => m.includes(data));
    assert.equal((await mpc.stats()).gatewayHandshakeFailures, 0);
  } finally {
    await client.close();
    publisher.close();
    await gateway.stop();
    await mpc.stop();
  }
}
