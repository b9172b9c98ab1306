/**
 * A hostile "gateway": a raw `ws` server (and a TCP server that does not even speak HTTP) sending
 * the client every kind of wrong thing — garbage text, binary frames, invalid UTF-8 on the wire,
 * malformed acks and publications, replies to nothing, no subprotocol, odd close codes. Nothing may
 * be thrown into the application (no uncaught exception, no unhandled rejection, no throwing
 * `connect()`); each problem is an `error` event; the client keeps going and still delivers every
 * valid publication once, in order.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { WebSocketServer, type WebSocket } from 'ws';
import { ClientErrorCodes, TormqClient } from '../../src/client/tormq-client.js';
import { ClientLog } from '../helpers/client-log.js';

const thrown: unknown[] = [];
const onThrown = (error: unknown) => thrown.push(error);

describe('a hostile gateway', () => {
  before(() => {
    process.on('uncaughtException', onThrown);
    process.on('unhandledRejection', onThrown);
  });
  after(() => {
    process.off('uncaughtException', onThrown);
    process.off('unhandledRejection', onThrown);
  });

  test('garbage, broken frames, malformed replies and odd closes become error events; every valid message arrives once', async () => {
    let handshakes = 0;
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      // The second handshake selects no subprotocol (the client offered tormq.v2: it must give up on it).
      handleProtocols: (offered) => (handshakes++ === 1 ? false : offered.has('tormq.v2') ? 'tormq.v2' : false),
    });
    await once(wss, 'listening');
    const port = (wss.address() as net.AddressInfo).port;
    const pub = (offset: number) => JSON.stringify({ topic: 'hostile', data: { i: offset }, epoch: 'E', offset });
    const sinces: unknown[] = [];
    const scripts: Array<(ws: WebSocket, subscribe: Record<string, unknown>) => void> = [
      (ws, s) => {
        for (const junk of ['', 'garbage', '[1,2,3]', 'null', '{"event":"ack","id":424242}', '{"event":"error","id":"nope","code":"ERR_X"}', '{"event":"surprise"}', '{"event":"gap","topics":{"x":1}}'])
          ws.send(junk);
        ws.send(Buffer.from([0, 1, 2, 3]), { binary: true });
        ws.send(JSON.stringify({ event: 'ack', id: s.id, recovered: false, positions: { hostile: { epoch: 'E', offset: 0 } } }));
        ws.send(pub(1));
        ws.send('{"topic":"hostile","data":{"i":99},"epoch":"E","offset":"2"}');
        ws.send('{"topic":"hostile","data":{"i":99},"epoch":"E","offset":-2}');
        ws.send('{"topic":"hostile","data":{"i":99},"epoch":null,"offset":2}');
        ws.send(pub(2));
        ws.send(pub(1)); // a duplicate
        ws.send('{"topic":"hostile","data":{"i":99},"epoch":"E","offset":2,');
        ws.send(pub(3));
        // A text frame that is not UTF-8, written raw (server frames are unmasked): the client's
        // WebSocket fails the connection (1007).
        (ws as unknown as { _socket: net.Socket })._socket.write(Buffer.from([0x81, 0x02, 0xff, 0xfe]));
      },
      // The second handshake selected no subprotocol: the server side completes it, the client fails it.
      () => {},
      (ws, s) => ws.send(JSON.stringify({ event: 'ack', id: s.id, recovered: true, positions: { hostile: { epoch: 5, offset: 'x' } } })),
      (ws, s) => ws.send(JSON.stringify({ event: 'pong', id: s.id })),
      (ws, s) => {
        ws.ping();
        ws.send(pub(4));
        ws.send(pub(5));
        ws.send(pub(3)); // replayed again: a duplicate
        ws.send(JSON.stringify({ event: 'ack', id: s.id, recovered: true, positions: { hostile: { epoch: 'E', offset: 5 } } }));
        ws.send(JSON.stringify({ event: 'ack', id: s.id, recovered: true, positions: { hostile: { epoch: 'E', offset: 5 } } })); // twice
        ws.send(pub(6));
        ws.send('x'.repeat(200_000));
        ws.close(4999, 'odd');
      },
      (ws, s) => {
        ws.send(JSON.stringify({ event: 'ack', id: s.id, recovered: true, positions: { hostile: { epoch: 'E', offset: 6 } } }));
        ws.send(pub(7));
      },
    ];
    let connections = 0;
    wss.on('connection', (ws) => {
      const script = scripts[connections++];
      ws.on('error', () => {});
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data)) as Record<string, unknown>;
        if (frame.event !== 'subscribe') return;
        sinces.push(frame.since);
        script?.(ws, frame);
      });
    });

    const client = new TormqClient(`ws://127.0.0.1:${port}/ws`, { minReconnectDelay: 20, maxReconnectDelay: 200 });
    const log = new ClientLog(client, client.subscribe('hostile'));
    try {
      await client.connect();
      await log.until(() => log.publications.length === 7 && log.subscribed.length === 3, 'the seven valid messages', 20_000);
      assert.deepEqual(log.publications.map((p) => [p.data.i, p.offset]), [1, 2, 3, 4, 5, 6, 7].map((i) => [i, i]));
      assert.deepEqual(sinces, [undefined, { hostile: { epoch: 'E', offset: 3 } }, { hostile: { epoch: 'E', offset: 3 } }, { hostile: { epoch: 'E', offset: 3 } }, { hostile: { epoch: 'E', offset: 6 } }]);
      // (A handshake without a subprotocol fails inside `ws` and browsers; Node's own WebSocket opens it
      // and the client leaves it with ERR_PROTOCOL.)
      const codes = new Set(log.errors.map((e) => e.code));
      assert.ok(codes.has(ClientErrorCodes.BAD_FRAME) && codes.has(ClientErrorCodes.BAD_REPLY), [...codes].join());
      for (const code of codes) assert.ok(([ClientErrorCodes.BAD_FRAME, ClientErrorCodes.BAD_REPLY, ClientErrorCodes.PROTOCOL] as string[]).includes(code), code);
      assert.ok(log.errors.filter((e) => e.code === ClientErrorCodes.BAD_FRAME).length >= 12);
      assert.equal(client.state, 'connected');
      assert.deepEqual(thrown, []);
      // The closes: 1007 (invalid UTF-8), a failed handshake (no subprotocol), two malformed replies, 4999.
      assert.deepEqual(log.disconnects.map((d) => d.wasOpen), [true, false, true, true, true]);
      assert.equal(log.disconnects[4]!.code, 4999);
    } finally {
      client.close();
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  });

  test('a server that does not speak HTTP: attempts fail and back off, nothing is thrown, close() ends it', async () => {
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.end('SSH-2.0-not-a-websocket\r\n\r\n');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const client = new TormqClient(`ws://127.0.0.1:${port}/ws`, { minReconnectDelay: 20, maxReconnectDelay: 160 });
    const log = new ClientLog(client, client.subscribe('nothing'));
    const connecting = client.connect();
    try {
      await log.until(() => log.disconnects.length >= 6, 'six failed attempts', 20_000);
      assert.ok(log.disconnects.every((d) => !d.wasOpen && d.reconnectIn! >= 20 && d.reconnectIn! < 160));
      assert.equal(client.state === 'connected', false);
    } finally {
      client.close();
      server.close();
    }
    await assert.rejects(connecting, (e: Error & { code?: string }) => e.code === ClientErrorCodes.CLIENT_CLOSED);
    assert.deepEqual(thrown, []);
  });
});
