/**
 * The ZMTP reader's input handling (src/zmq/zmtp-peer.ts), fed directly: a real loopback socket carries
 * only what the peer writes back (greeting, READY); the bytes read are handed to `data()` in whatever
 * pieces the test chooses, as TCP may deliver them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { ZmtpPeer } from '../../src/zmq/zmtp-peer.js';
import { frame, greeting, message, readyCommand } from '../helpers/zmtp-raw.js';

describe('ZmtpPeer input', () => {
  let server: net.Server;
  const sockets: net.Socket[] = [];

  before(async () => {
    server = net.createServer((socket) => {
      socket.on('data', () => {});
      socket.on('error', () => {});
      sockets.push(socket);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A peer on a real socket whose input the test hands over itself. */
  async function peerCollecting(maxFrameBytes: number) {
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    socket.on('error', () => {});
    sockets.push(socket);
    await once(socket, 'connect');
    const messages: string[][] = [];
    const refused: string[] = [];
    const peer = new ZmtpPeer(socket, { socketType: 'SUB', peerTypes: ['PUB'], maxFrameBytes, maxParts: 2 }, {
      ready: () => {},
      // Copied at once: the parts are views of the reader's buffer.
      message: (parts) => messages.push(parts.map((p) => p.toString('latin1'))),
      unread: () => {},
      refused: (why) => refused.push(why),
    });
    return { peer, messages, refused, close: () => { peer.close(); socket.destroy(); } };
  }

  test('a frame dripped one byte per read is held in at most twice its bytes, and arrives whole', async () => {
    const { peer, messages, refused, close } = await peerCollecting(1024 * 1024);
    peer.data(Buffer.concat([greeting(), readyCommand('PUB')]));
    const body = 'b'.repeat(100_000);
    const bytes = message(['root', body]);
    let fed = 0;
    let mostHeld = 0;
    for (const byte of bytes) {
      peer.data(Buffer.from([byte]));
      fed++;
      if (fed < bytes.length) {
        // Before it completes, what is held is bounded by what arrived (or the 4 KB minimum).
        assert.ok(peer.heldBytes <= Math.max(2 * fed, 4096), `${peer.heldBytes} bytes held after ${fed} bytes`);
        mostHeld = Math.max(mostHeld, peer.heldBytes);
      }
    }
    assert.deepEqual(refused, []);
    assert.deepEqual(messages, [['root', body]]);
    assert.ok(mostHeld >= body.length, 'the frame was assembled in the held buffer (the bound above was exercised)');
    assert.equal(peer.heldBytes, 0, 'nothing held once the message is handed over');
    close();
  });

  test('a 9-byte header announcing a large frame allocates nothing ahead of the bytes', async () => {
    const { peer, close } = await peerCollecting(1024 * 1024);
    peer.data(Buffer.concat([greeting(), readyCommand('PUB'), frame('root', true)]));
    const header = Buffer.alloc(9);
    header[0] = 2;
    header.writeBigUInt64BE(BigInt(1024 * 1024), 1);
    peer.data(header);
    assert.ok(peer.heldBytes <= 9, `${peer.heldBytes} bytes held for a bare header`);
    peer.data(Buffer.from('x'));
    assert.ok(peer.heldBytes <= 4096, `${peer.heldBytes} bytes held for 10 bytes`);
    close();
  });

  test('any split of a stream of messages into reads yields the same messages', async () => {
    const sent: string[][] = [];
    for (let i = 0; i < 300; i++) sent.push(['r' + (i % 7), `{"n": ${i}, "pad": "${'p'.repeat((i * 37) % 700)}"}`]);
    const stream = Buffer.concat([greeting(), readyCommand('PUB'), ...sent.map((parts) => message(parts))]);
    // A deterministic pseudo-random walk of read sizes, from single bytes to several messages at once.
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let round = 0; round < 20; round++) {
      const { peer, messages, refused, close } = await peerCollecting(4096);
      const widest = [1, 3, 16, 300, 5000][round % 5]!;
      for (let at = 0; at < stream.length;) {
        const size = 1 + (next() % widest);
        peer.data(stream.subarray(at, at + size));
        at += size;
      }
      assert.deepEqual(refused, []);
      assert.deepEqual(messages, sent, `round ${round}, reads of 1..${widest} bytes`);
      close();
    }
  });
});
