/**
 * Hardening, client side: every kind of bad input a WebSocket client can send, the inbound rate
 * limit, and the connection cap. Each case has one clear outcome, and a bystander client on the same
 * gateway keeps getting its messages throughout.
 */
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Publisher } from '../../src/index.js';
import { metricValue, metricsText, rawUpgrade, until, upgradeRequest } from '../helpers/probes.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type GatewayStats, type MpcProcess } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

const total = (stats: GatewayStats, key: string) => stats.workers.reduce((n, w) => n + (w[key] as number), 0);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client frame header, masked with the all-zero key (so the payload goes as is), text, final. */
function maskedTextHeader(length: number): Buffer {
  if (length < 126) return Buffer.from([0x81, 0x80 | length, 0, 0, 0, 0]);
  const header = Buffer.from([0x81, 0x80 | 126, 0, 0, 0, 0, 0, 0]);
  header.writeUInt16BE(length, 2);
  return header;
}

/** A whole client frame of a small payload (< 126 bytes), masked with the all-zero key. */
function maskedFrame(opcode: number, final: boolean, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(final ? 0x80 : 0) | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

/** A WebSocket over raw TCP, upgraded, writes leaving at once (no Nagle), whatever arrives collected. */
async function rawWebSocket(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  const state = { closed: false };
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.once('close', () => (state.closed = true));
  await once(socket, 'connect');
  socket.write(upgradeRequest());
  await until('the 101 response', () => Buffer.concat(chunks).includes('\r\n\r\n'));
  const all = () => Buffer.concat(chunks);
  const bodyStart = () => all().indexOf('\r\n\r\n') + 4;
  assert.match(all().toString('latin1', 0, 12), /^HTTP\/1\.1 101/);
  return {
    socket,
    get closed() {
      return state.closed;
    },
    /** The frames' bytes received, as text (enough to find a small reply). */
    text: () => all().toString('latin1', bodyStart()),
    /** The code of the close frame received (unmasked, as a server sends it), or null. */
    closeCode: () => {
      const frames = all().subarray(bodyStart());
      for (let at = 0; at + 2 <= frames.length;) {
        const length = frames[at + 1]! & 0x7f;
        if (length >= 126) return null; // only small frames are expected here
        if ((frames[at]! & 0x0f) === 0x8) return length >= 2 ? frames.readUInt16BE(at + 2) : null;
        at += 2 + length;
      }
      return null;
    },
  };
}

describe('hardening: bad input from clients', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let publisher: Publisher;
  let bystander: TestClient;
  let marker = 0;
  const clients: TestClient[] = [];

  const connect = async (g = gateway, options?: ConstructorParameters<typeof WebSocket>[2]) => {
    const client = await TestClient.connect(g.url, options);
    clients.push(client);
    return client;
  };

  /** The gateway still serves everyone else: a fresh message reaches the bystander. */
  const assertServing = async () => {
    const text = `still-serving-${++marker}`;
    const from = bystander.messages.length;
    await publisher.send('bystander', text);
    await bystander.waitFor((m) => m.includes(`"${text}"`), from);
    assert.equal(bystander.closeCode, null);
  };

  /** `client` is still open and fully working: it can subscribe and receive. */
  const assertWorks = async (client: TestClient, topic: string) => {
    await client.subscribe(topic);
    await publisher.ready({ topic, timeoutMs: 10_000 });
    const from = client.messages.length;
    await publisher.send(topic, 'works');
    await client.waitFor((m) => m.includes('"works"'), from);
  };

  const badFramesGrow = async (before: number, by: number) => {
    await until(`bad frames to reach ${before + by}`, async () => total(await gateway.stats(), 'badFrames') >= before + by);
  };

  before(async () => {
    mpc = await startMpcProcess();
    gateway = await startGatewayProcess(mpc.gatewayPort, [
      '--max-subscriptions', '4', '--max-frame-bytes', '1024', '--max-topic-length', '32',
      // A slow refill (one frame per 200 ms) after a burst of 100: the flood below is rejected in a row
      // however slowly a loaded machine processes it; every other test sends well under 100 frames.
      '--client-rate-limit', '5', '--client-rate-burst', '100',
    ]);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
    bystander = await connect();
    await bystander.subscribe('bystander');
    await publisher.ready({ topic: 'bystander', timeoutMs: 10_000 });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('malformed JSON is counted, not answered, and the connection keeps working', async () => {
    const client = await connect();
    const before = total(await gateway.stats(), 'badFrames');
    for (const text of ['{"event":"subscribe",', 'not json', '{', '']) client.send(text);
    await badFramesGrow(before, 4);
    assert.deepEqual(client.messages, [], 'id-less bad frames get no reply (original clients expect only bodies)');
    await assertWorks(client, 'mal:ok');
    await assertServing();
  });

  test('JSON that is not an object is rejected with ERR_NOT_OBJECT', async () => {
    const client = await connect();
    const before = total(await gateway.stats(), 'badFrames');
    for (const text of ['[1,2]', '"subscribe"', '42', 'null', 'true']) client.send(text);
    await badFramesGrow(before, 5);
    assert.deepEqual(client.messages, []);
    // With an id the rejection is answered; an id inside an array is not an id.
    const reply = await client.request({ event: 'subscribe', topics: 'not-an-array' });
    assert.equal(reply.code, 'ERR_BAD_REQUEST');
    await assertWorks(client, 'nonobj:ok');
    await assertServing();
  });

  test('unknown events get ERR_UNKNOWN_EVENT', async () => {
    const client = await connect();
    assert.deepEqual(
      { ...(await client.request({ event: 'dance' })), message: undefined },
      { event: 'error', id: 1, code: 'ERR_UNKNOWN_EVENT', message: undefined },
    );
    assert.equal((await client.request({ nothing: true })).code, 'ERR_UNKNOWN_EVENT');
    assert.equal((await client.request({ event: 42 })).code, 'ERR_UNKNOWN_EVENT');
    await assertWorks(client, 'unknown:ok');
    await assertServing();
  });

  test('binary frames are counted and ignored', async () => {
    const client = await connect();
    const before = total(await gateway.stats(), 'badFrames');
    client.ws.send(Buffer.from('{"event":"subscribe","topic":"bin"}'), { binary: true });
    client.ws.send(Buffer.from([0, 1, 2, 3, 255]), { binary: true });
    await badFramesGrow(before, 2);
    assert.deepEqual(client.messages, []);
    const stats = await gateway.stats();
    assert.ok(!stats.topics.includes('bin'), 'a binary frame never subscribes');
    await assertWorks(client, 'binary:ok');
    await assertServing();
  });

  test('a frame over --max-frame-bytes closes that connection with 1009, and only it', async () => {
    const client = await connect();
    const other = await connect();
    await other.subscribe('size:other');
    const before = total(await gateway.stats(), 'oversizeCloses');
    client.send({ event: 'subscribe', topic: 'x', pad: 'p'.repeat(2000) });
    assert.equal(await client.closed, 1009);
    await until('oversize close counted', async () => total(await gateway.stats(), 'oversizeCloses') === before + 1);
    // Exactly at the limit is fine.
    const exact = JSON.stringify({ event: 'ping', id: 7, pad: '' });
    const fits = JSON.stringify({ event: 'ping', id: 7, pad: 'p'.repeat(1024 - exact.length) });
    assert.equal(Buffer.byteLength(fits), 1024);
    other.send(fits);
    await other.waitFor((m) => m === '{"event":"pong","id":7}');
    assert.equal(other.closeCode, null);
    await assertServing();
  });

  test('a message in more pieces than --max-frame-bytes allows (reads of a frame, or fragments) closes that connection with 1008; in a few pieces it is answered', async () => {
    // ws holds each piece of a message still arriving as a Buffer of its own (≈ 200 bytes each): dripped
    // one byte per segment, a 64 KB frame held ≈ 13 MB. Here the cap is max(256, 1024 / 1024) = 256 pieces.
    const ping = (id: number) => {
      const text = JSON.stringify({ event: 'ping', id, pad: '' });
      return Buffer.from(JSON.stringify({ event: 'ping', id, pad: 'p'.repeat(1000 - text.length) }));
    };
    const before = total(await gateway.stats(), 'badFrames');
    const dripper = await rawWebSocket(gateway.port);
    const payload = ping(1);
    dripper.socket.write(maskedTextHeader(payload.length));
    let sent = 0;
    for (; sent < payload.length && !dripper.socket.destroyed && !dripper.closed; sent++) {
      dripper.socket.write(payload.subarray(sent, sent + 1));
      await sleep(1); // one read per byte
    }
    await until('the gateway to close the dripping connection', () => dripper.closed);
    assert.equal(dripper.closeCode(), 1008, 'closed by the gateway with 1008');
    assert.ok(sent < payload.length, `closed before the frame was whole (${sent} of ${payload.length} bytes sent)`);
    assert.equal(dripper.text().includes('pong'), false, 'the dripped frame was never answered');
    await badFramesGrow(before, 1);
    // The same frame in 16 pieces of ≈ 63 bytes, each its own read: answered, connection open.
    const patient = await rawWebSocket(gateway.port);
    const second = ping(2);
    patient.socket.write(maskedTextHeader(second.length));
    for (let at = 0; at < second.length; at += 63) {
      patient.socket.write(second.subarray(at, at + 63));
      await sleep(5);
    }
    await until('the pong to the frame sent in pieces', () => patient.text().includes('{"event":"pong","id":2}'));
    assert.equal(patient.closed, false);
    // Fragments: a message in 300 one-byte frames is closed; in 10 fragments it is answered.
    const fragmenter = await rawWebSocket(gateway.port);
    const fragments = [maskedFrame(0x1, false, Buffer.from('{'))];
    for (let i = 0; i < 300; i++) fragments.push(maskedFrame(0x0, false, Buffer.from(' ')));
    fragmenter.socket.write(Buffer.concat(fragments));
    await until('the gateway to close the fragmenting connection', () => fragmenter.closed);
    assert.equal(fragmenter.closeCode(), 1008, 'a message in 301 fragments: closed with 1008');
    await badFramesGrow(before, 2);
    const third = ping(3);
    const tenths = Array.from({ length: 10 }, (_, i) => maskedFrame(i === 0 ? 0x1 : 0x0, i === 9, third.subarray(i * 100, (i + 1) * 100)));
    patient.socket.write(Buffer.concat(tenths));
    await until('the pong to the message sent in fragments', () => patient.text().includes('{"event":"pong","id":3}'));
    assert.equal(patient.closed, false);
    patient.socket.destroy();
    await assertServing();
  });

  test('invalid topics of every kind get ERR_INVALID_TOPIC and subscribe nothing', async () => {
    const client = await connect();
    const invalid: unknown[] = ['', 'a::b', ':a', 'a:', 'x'.repeat(33), 'a\u0001b', 'tab\there', 'nl\n', 'del\u007f', '\ud800x', 'x:\udc00', 5, null, {}];
    for (const topic of invalid) {
      const reply = await client.request({ event: 'subscribe', topic });
      assert.equal(reply.event, 'error', `topic ${JSON.stringify(topic)}`);
      assert.equal(reply.code, 'ERR_INVALID_TOPIC', `topic ${JSON.stringify(topic)}: ${JSON.stringify(reply)}`);
    }
    // A lone surrogate in a gopusher join too (found by npm run fuzz: it used to stick every later reply).
    const join = await client.request({ event: 'join', data: { card_id: '\ud800x' } });
    assert.equal(join.code, 'ERR_INVALID_TOPIC', JSON.stringify(join));
    assert.equal((await client.request({ event: 'ping' })).event, 'pong');
    // One bad topic in a list rejects the whole frame: nothing half-applied.
    const reply = await client.request({ event: 'subscribe', topics: ['good:one', 'bad::one'] });
    assert.equal(reply.code, 'ERR_INVALID_TOPIC');
    assert.match(String(reply.message), /topics\[1\]/);
    assert.ok(!(await gateway.stats()).topics.includes('good'));
    // The longest allowed topic is fine.
    await assertWorks(client, `ok:${'y'.repeat(29)}`);
    await assertServing();
  });

  test('more than --max-subscriptions is refused whole, the existing ones stay', async () => {
    const client = await connect();
    await client.subscribe('cap:1', 'cap:2', 'cap:3');
    assert.equal((await client.request({ event: 'subscribe', topics: ['cap:4', 'cap:5'] })).code, 'ERR_TOO_MANY_SUBSCRIPTIONS');
    assert.equal((await client.request({ event: 'subscribe', topics: ['a', 'b', 'c', 'd', 'e'] })).code, 'ERR_TOO_MANY_SUBSCRIPTIONS');
    assert.equal((await client.request({ event: 'subscribe', topics: ['cap:4'] })).event, 'ack'); // the 4th fits
    assert.equal((await client.request({ event: 'subscribe', topics: ['cap:5'] })).code, 'ERR_TOO_MANY_SUBSCRIPTIONS');
    // Re-subscribing to a held topic adds nothing, so it is allowed at the cap.
    assert.equal((await client.request({ event: 'subscribe', topics: ['cap:1'] })).event, 'ack');
    await publisher.ready({ topic: 'cap:1', timeoutMs: 10_000 });
    for (const topic of ['cap:5', 'cap:4', 'cap:1']) await publisher.send(topic, topic);
    await client.waitFor((m) => m.includes('"data": "cap:1"'));
    assert.deepEqual(client.bodies().map((b) => (JSON.parse(b) as { data: string }).data), ['cap:4', 'cap:1']);
    await assertServing();
  });

  test('a flood of frames over the rate limit: ERR_RATE_LIMITED, then closed with 4029; others unaffected', async () => {
    const client = await connect();
    const before = await gateway.stats();
    // Far more than the burst (100) at once: the first ~100 are served, then rejections pile up.
    for (let i = 1; i <= 1000; i++) client.send({ event: i % 2 ? 'subscribe' : 'unsubscribe', topics: ['flood:a'], id: i });
    assert.equal(await client.closed, 4029);
    assert.equal(client.closeReason, 'rate limit exceeded');
    const replies = client.messages.map((m) => JSON.parse(m) as { event: string; code?: string; id: number });
    const acks = replies.filter((r) => r.event === 'ack');
    const limited = replies.filter((r) => r.code === 'ERR_RATE_LIMITED');
    assert.ok(acks.length >= 100 && acks.length < 1000, `acks: ${acks.length}`);
    assert.ok(limited.length > 0, 'rejected frames with an id are answered');
    assert.equal(acks.length + limited.length, replies.length, 'nothing but acks and rate-limit errors');
    const after = await gateway.stats();
    assert.equal(total(after, 'rateLimitDisconnects') - total(before, 'rateLimitDisconnects'), 1);
    assert.ok(total(after, 'rateLimitedFrames') - total(before, 'rateLimitedFrames') >= 100);
    const metrics = await metricsText(gateway);
    let closes = 0;
    for (const worker of ['0', '1']) closes += metricValue(metrics, 'tormq_rate_limit_disconnects_total', { worker }) ?? NaN;
    assert.equal(closes, total(after, 'rateLimitDisconnects'));
    // Its subscriptions went with it.
    await until('flood subscription removed', async () => !(await gateway.stats()).topics.includes('flood'));
    await assertServing();
  });

  test('a flood of subscribe/unsubscribe within the limit (limit off) ends in exactly the right state', async () => {
    const unlimited = await startGatewayProcess(mpc.gatewayPort, ['--client-rate-limit', '0']);
    try {
      const before = await mpc.stats();
      const client = await connect(unlimited);
      for (let i = 0; i < 2000; i++) {
        client.send({ event: 'subscribe', topics: [`fl:${i % 7}`] });
        client.send({ event: 'unsubscribe', topics: [`fl:${i % 7}`] });
      }
      client.send({ event: 'subscribe', topic: 'fl:final' }); // replace: exactly one subscription left
      assert.deepEqual(await client.request({ event: 'ping' }), { event: 'pong', id: 1 });
      const stats = await unlimited.stats();
      assert.equal(total(stats, 'subscriptions'), 1);
      assert.equal(total(stats, 'badFrames'), 0);
      assert.equal(total(stats, 'rateLimitedFrames'), 0);
      assert.equal((await client.request({ event: 'subscribe', topics: ['fl:final'] })).event, 'ack');
      await publisher.send('fl:3', 'not subscribed');
      await publisher.send('fl:final', 'final');
      await client.waitFor((m) => m.includes('"final"'));
      assert.equal(client.bodies().length, 1);
      // 4000 topic flips inside the gateway became one upstream subscription per topic (fl, fl:0..fl:6,
      // fl:final), each confirmed once by the MPC: no churn of subscription messages upstream.
      const confirmations = (await mpc.stats()).positionsSent - before.positionsSent;
      assert.ok(confirmations <= 9, `${confirmations} subscriptions reached the MPC`);
      await client.close();
    } finally {
      await unlimited.stop();
    }
    await assertServing();
  });
});

describe('hardening: connection cap', () => {
  const sys = useSystem({ gatewayArgs: ['--max-connections', '3'] });

  test('over --max-connections the upgrade gets HTTP 503 and the socket is closed, never left half-open', async () => {
    const held = [];
    for (let i = 0; i < 3; i++) {
      const c = await TestClient.connect(sys.gateway.url);
      sys.clients.push(c);
      held.push(c);
    }
    // A ws client sees the 503.
    const refused = new WebSocket(sys.gateway.url);
    const status = await new Promise<number>((resolve, reject) => {
      refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      refused.on('open', () => reject(new Error('opened over the cap')));
      refused.on('error', () => {});
    });
    assert.equal(status, 503);
    refused.terminate();
    // Raw sockets that never close their side: the server answers 503 and closes them.
    const raws = await Promise.all([rawUpgrade(sys.gateway.port), rawUpgrade(sys.gateway.port), rawUpgrade(sys.gateway.port)]);
    for (const raw of raws) {
      assert.equal(raw.status, 'HTTP/1.1 503 Service Unavailable');
      assert.equal(raw.serverEnded, true);
    }
    // None of the refused sockets holds a slot: exactly the three accepted ones are counted.
    await until('refused sockets released', async () => (await sys.gateway.stats() as unknown as { openSockets: number }).openSockets === 3);
    const metrics = await metricsText(sys.gateway);
    assert.equal(metricValue(metrics, 'tormq_gateway_connections'), 3);
    const stats = await sys.gateway.stats();
    assert.equal(stats.connections, 3);
    assert.ok(total(stats, 'connectionsRejected') >= 4);
    // One leaves, one more fits (the half-open raw sockets above would have taken its place).
    await held[0]!.close();
    await until('slot freed', async () => (await sys.gateway.stats() as unknown as { openSockets: number }).openSockets === 2);
    const next = await TestClient.connect(sys.gateway.url);
    sys.clients.push(next);
    assert.deepEqual(await next.request({ event: 'ping' }), { event: 'pong', id: 1 });
    for (const raw of raws) raw.socket.destroy();
  });
});
