/**
 * The MPC's own ZMTP XPUB on the gateway port (src/zmq/zmtp-publisher.ts). Real gateways (libzmq XSUB
 * through zeromq.js) link through it in every other e2e test; here it is driven with raw TCP: a
 * hand-rolled XSUB subscribes with ZMTP 3.0 messages and 3.1 commands, peers that are not SUB/XSUB or
 * speak CURVE are refused and counted, frames too large or in too many parts are skipped and counted,
 * and a gateway that never reads has its frames dropped and counted at --gateway-queue-bytes while a
 * real gateway beside it gets every message. After each, a real gateway's client is still served.
 * The libzmq XPUB (`--no-zmtp-link`, and always with CURVE) still links a gateway.
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
import { Publisher, XSubscriber, curveKeyPair } from 'zeromq';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';
import { commandFrame, cutAtEveryStage, greeting, message, parseFrames, rawConnect, readyCommand, wrongPeers, type RawPeer } from '../helpers/zmtp-raw.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
  let publisher: Publisher;
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
    mpc = await startMpcProcess(undefined, ['--gateway-queue-bytes', String(1024 * 1024)]);
    gateway = await startGatewayProcess(mpc.gatewayPort);
    client = await TestClient.connect(gateway.url);
    await client.subscribe('zl:x');
    publisher = new Publisher({ linger: 0, sendHighWaterMark: 100_000 });
    publisher.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
    await sleep(300);
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
});

describe('--no-zmtp-link', () => {
  test('libzmq\'s XPUB serves the gateway port: a gateway links and its client gets a message', async () => {
    const mpc = await startMpcProcess(undefined, ['--no-zmtp-link']);
    const gateway = await startGatewayProcess(mpc.gatewayPort);
    const client = await TestClient.connect(gateway.url);
    const publisher = new Publisher({ linger: 0 });
    try {
      await client.subscribe('nz:a');
      publisher.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
      await sleep(300);
      await publisher.send(['nz', JSON.stringify({ topic: 'nz:a', data: 'through-libzmq' })]);
      await client.waitFor((m) => m.includes('through-libzmq'));
      assert.equal((await mpc.stats()).gatewayHandshakeFailures, 0);
    } finally {
      await client.close();
      publisher.close();
      await gateway.stop();
      await mpc.stop();
    }
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

describe('tormq-gateway --zmtp-link', () => {
  test('the gateway\'s own ZMTP client links to the MPC\'s own XPUB, and to libzmq\'s: its client gets a message through each', async () => {
    for (const mpcFlags of [[], ['--no-zmtp-link']]) {
      await throughZmtpClient(mpcFlags);
    }
  });
});

async function throughZmtpClient(mpcFlags: string[]): Promise<void> {
  {
    const mpc = await startMpcProcess(undefined, mpcFlags);
    const gateway = await startGatewayProcess(mpc.gatewayPort, ['--zmtp-link']);
    const client = await TestClient.connect(gateway.url);
    const publisher = new Publisher({ linger: 0 });
    try {
      await client.subscribe('ng:a');
      publisher.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
      await sleep(300);
      await publisher.send(['ng', JSON.stringify({ topic: 'ng:a', data: `gateway-zmtp-client${mpcFlags.join('')}` })]);
      await client.waitFor((m) => m.includes(`gateway-zmtp-client${mpcFlags.join('')}`));
    } finally {
      await client.close();
      publisher.close();
      await gateway.stop();
      await mpc.stop();
    }
  }
}

