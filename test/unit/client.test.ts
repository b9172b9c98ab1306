/**
 * The client against a scripted gateway (test/helpers/fake-websocket.ts): backoff and the close-code
 * policy, position tracking and dedup, recovery after jumps and gap notices, reconnects, token
 * refresh, liveness, and hostile frames that must never throw into the application.
 */
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import {
  backoffDelay,
  ClientErrorCodes,
  reconnectPolicy,
  refreshDelay,
  streamsOf,
  tokenExpiry,
  TormqClient,
  TormqClientError,
  type ClientState,
  type DisconnectContext,
  type Publication,
  type TormqClientOptions,
  type WebSocketConstructor,
} from '../../src/client/tormq-client.js';
import { FakeWebSocket } from '../helpers/fake-websocket.js';

const clients: TormqClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  FakeWebSocket.reset();
});

function makeClient(options: TormqClientOptions = {}, url: string | string[] = 'ws://gateway.test/ws'): TormqClient {
  const client = new TormqClient(url, {
    WebSocket: FakeWebSocket as unknown as WebSocketConstructor,
    minReconnectDelay: 5,
    maxReconnectDelay: 40,
    ...options,
  });
  clients.push(client);
  return client;
}

/** Connects through fake socket #n and returns it (accepted). */
async function open(client: TormqClient, n = 0): Promise<FakeWebSocket> {
  const connected = client.connect();
  const ws = await FakeWebSocket.nth(n);
  ws.accept();
  await connected;
  return ws;
}

function recordErrors(client: TormqClient): TormqClientError[] {
  const errors: TormqClientError[] = [];
  client.on('error', (e) => errors.push(e));
  return errors;
}

const pub = (topic: string, epoch: string, offset: number, data: unknown = offset) => ({ topic, data, epoch, offset });
const shown = (p: Publication) => `${p.topic}#${p.offset}`;

/** A subscription to room:1 on a new client, acked at `positions`, and the client's fake socket. */
async function roomAcked(positions: Record<string, { epoch: string; offset: number }>): Promise<{ sub: ReturnType<TormqClient['subscribe']>; ws: FakeWebSocket }> {
  const client = makeClient();
  const sub = client.subscribe('room:1');
  const ws = await open(client);
  ws.push({ event: 'ack', id: ws.frames()[0]!.id, recovered: false, positions });
  return { sub, ws };
}

function nextEvent<T>(subscribe: (listener: (value: T) => void) => void): Promise<T> {
  return new Promise((resolve) => subscribe(resolve));
}

describe('policies', () => {
  test('backoffDelay: full jitter between min and an exponential ceiling capped at max', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(20_000, 500 * 2 ** (attempt + 1));
      assert.equal(backoffDelay(attempt, 500, 20_000, () => 0), 500);
      const top = backoffDelay(attempt, 500, 20_000, () => 0.999999);
      assert.ok(top <= ceiling && top >= ceiling - 1, `attempt ${attempt}: ${top} vs ceiling ${ceiling}`);
    }
    assert.equal(backoffDelay(1000, 500, 20_000, () => 0.999999), 19_999); // no overflow at huge attempts
    assert.equal(backoffDelay(3, 100, 100, () => 0.5), 100); // min == max
    // The spread is real: 1,000 draws at attempt 6 fill the window.
    const draws = Array.from({ length: 1000 }, () => backoffDelay(6, 500, 20_000));
    assert.ok(Math.min(...draws) < 2000 && Math.max(...draws) > 18_000);
  });

  test('reconnectPolicy: the close-code table', () => {
    for (const code of [1000, 1001, 1006, 1008, 1011, 4008, 1002, 1003, 1007, 1009, 1010, 4000, 4999]) {
      assert.equal(reconnectPolicy(code, true).delay, 'backoff', String(code));
    }
    assert.equal(reconnectPolicy(4029, true).delay, 'max');
    // Before open (refused upgrade, unreachable): backoff, whatever the code.
    for (const code of [1006, 4029, 1008]) assert.equal(reconnectPolicy(code, false).delay, 'backoff');
    assert.match(reconnectPolicy(1001, true).meaning, /draining/);
  });

  test('tokenExpiry reads exp without verifying; refreshDelay refreshes a minute early, never before half the lifetime', async () => {
    const exp = Math.floor(Date.now() / 1000) + 900;
    const jwt = await new SignJWT({ topics: ['ünï'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime(exp).sign(new TextEncoder().encode('k'));
    assert.equal(tokenExpiry(jwt), exp * 1000);
    assert.equal(tokenExpiry('opaque-token'), null);
    assert.equal(tokenExpiry('a.%%%.c'), null);
    assert.equal(tokenExpiry(`a.${Buffer.from('{"exp":"soon"}').toString('base64url')}.c`), null);
    assert.equal(refreshDelay(15 * 60_000), 14 * 60_000);
    assert.equal(refreshDelay(4_000), 2_000);
    assert.equal(refreshDelay(0), null);
    assert.equal(refreshDelay(-5), null);
  });

  test('streamsOf: the topic and each ancestor', () => {
    assert.deepEqual(streamsOf('a:b:c'), ['a', 'a:b', 'a:b:c']);
    assert.deepEqual(streamsOf('a'), ['a']);
  });
});


describe('package', () => {
  test("import 'tormq/client' is this module (package.json exports)", async () => {
    const specifier = 'tormq/client'; // a variable: resolved by Node at run time, not by tsc at build time
    const viaPackage = (await import(specifier)) as Record<string, unknown>;
    assert.equal(viaPackage.TormqClient, TormqClient);
    assert.equal(viaPackage.backoffDelay, backoffDelay);
  });
});

describe('the surface of issue 12 (fixed: outside tests rely on it)', () => {
  test('the example compiles and runs as written', async () => {
    const fetchToken = async () => 'jwt';
    const seen: string[] = [];
    const reloadFromBackend = () => seen.push('reload');
    const client = new TormqClient('wss://push.example.com/ws', {
      getToken: async () => fetchToken(), // optional; called on connect, on reconnect, before expiry
      minReconnectDelay: 500, maxReconnectDelay: 20_000, // full-jitter exponential backoff
      WebSocket: FakeWebSocket as unknown as WebSocketConstructor,
    });
    clients.push(client);
    client.on('state', (s) => seen.push(s)); // 'connecting' | 'connected' | 'disconnected' | 'closed'
    const sub = client.subscribe('user:42', { recover: true });
    sub.on('publication', ({ topic, data, epoch, offset }) => seen.push(`${topic} ${String(data)} ${epoch} ${offset}`));
    sub.on('subscribed', ({ recovered, wasRecovering }) => seen.push(`subscribed ${recovered} ${wasRecovering}`));
    sub.on('gap', () => reloadFromBackend()); // continuity lost: reload
    const connected = client.connect();
    const ws = await FakeWebSocket.nth(0);
    assert.deepEqual(ws.protocols, ['tormq.v2', 'bearer.jwt']);
    ws.accept();
    await connected;
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, recovered: false, positions: { user: { epoch: 'a', offset: 0 }, 'user:42': { epoch: 'b', offset: 0 } } });
    ws.push({ topic: 'user:42', data: 'hi', epoch: 'b', offset: 1 });
    sub.unsubscribe();
    client.close();
    assert.deepEqual(seen, ['connecting', 'connected', 'subscribed false false', 'user:42 hi b 1', 'closed']);
  });
});

describe('options', () => {
  test('each invalid option is refused with a message naming it', () => {
    const W = FakeWebSocket as unknown as WebSocketConstructor;
    assert.throws(() => new TormqClient('http://x/ws'), /url must be a ws:\/\/ or wss:\/\/ URL/);
    assert.throws(() => new TormqClient([]), /url must be/);
    assert.throws(() => new TormqClient('ws://x', { minReconnectDelay: 0 }), /options.minReconnectDelay must be/);
    assert.throws(() => new TormqClient('ws://x', { maxReconnectDelay: Number.NaN }), /options.maxReconnectDelay must be/);
    assert.throws(() => new TormqClient('ws://x', { minReconnectDelay: 5000, maxReconnectDelay: 100 }), /maxReconnectDelay must be at least/);
    assert.throws(() => new TormqClient('ws://x', { pingInterval: -1 }), /options.pingInterval/);
    assert.throws(() => new TormqClient('ws://x', { getToken: 'x' as never }), /options.getToken must be a function/);
    assert.throws(() => new TormqClient('ws://x', { WebSocket: {} as never }), /options.WebSocket/);
    const client = makeClient({ WebSocket: W });
    assert.throws(() => client.subscribe(''), TypeError);
    assert.throws(() => client.subscribe('a::b'), /empty segments/);
    assert.throws(() => client.subscribe('a\nb'), /control characters/);
    assert.throws(() => client.subscribe('user:1', { since: { other: { epoch: 'e', offset: 1 } } }), /"other" is not "user:1" or one of its ancestors/);
    assert.throws(() => client.subscribe('user:1', { since: { user: { epoch: 'e', offset: -1 } } }), /since\["user"\]/);
    client.subscribe('user:1');
    assert.throws(() => client.subscribe('user:1'), (e: TormqClientError) => e.code === ClientErrorCodes.DUPLICATE_SUBSCRIPTION);
  });
});

describe('positions and dedup', () => {
  test('subscribes on connect; positions advance before the handler; duplicates are dropped; a stream is shared', async () => {
    const client = makeClient();
    const a = client.subscribe('user:42');
    const b = client.subscribe('user:43');
    const ws = await open(client);
    const [fa, fb] = ws.frames();
    assert.deepEqual(fa, { event: 'subscribe', topics: ['user:42'], recover: true, id: fa!.id });
    assert.equal(fb!.topics instanceof Array && fb!.topics[0], 'user:43');
    const seenA: string[] = [];
    const seenB: string[] = [];
    a.on('publication', (p) => {
      assert.equal(a.positions[p.topic]!.offset, p.offset, 'position advanced before the handler');
      seenA.push(shown(p));
    });
    b.on('publication', (p) => seenB.push(shown(p)));
    // Before the ack: not yet subscribed, nothing delivered.
    ws.push(pub('user', 'E', 5));
    const subscribed = nextEvent<{ recovered: boolean; wasRecovering: boolean }>((l) => a.once('subscribed', l));
    ws.push({ event: 'ack', id: fa!.id, recovered: false, positions: { user: { epoch: 'E', offset: 5 }, 'user:42': { epoch: 'F', offset: 0 } } });
    ws.push({ event: 'ack', id: fb!.id, recovered: false, positions: { user: { epoch: 'E', offset: 5 }, 'user:43': { epoch: 'G', offset: 7 } } });
    assert.deepEqual(await subscribed, { recovered: false, wasRecovering: false, positions: { user: { epoch: 'E', offset: 5 }, 'user:42': { epoch: 'F', offset: 0 } } });
    assert.equal(a.state, 'subscribed');
    for (const frame of [pub('user:42', 'F', 1), pub('user', 'E', 6), pub('user:42', 'F', 1), pub('user', 'E', 6), pub('user', 'E', 5), pub('user:42', 'F', 2), pub('user:43', 'G', 8)]) ws.push(frame);
    assert.deepEqual(seenA, ['user:42#1', 'user#6', 'user:42#2']);
    assert.deepEqual(seenB, ['user#6', 'user:43#8']);
    assert.deepEqual(a.positions, { user: { epoch: 'E', offset: 6 }, 'user:42': { epoch: 'F', offset: 2 } });
  });

  test('an offset jump is not delivered: the subscription recovers from its last position first', async () => {
    const { sub, ws } = await roomAcked({ room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'E', offset: 2 } });
    const seen: string[] = [];
    const events: string[] = [];
    sub.on('publication', (p) => seen.push(shown(p)));
    sub.on('subscribed', (c) => events.push(`subscribed recovered=${c.recovered} wasRecovering=${c.wasRecovering}`));
    sub.on('gap', () => events.push('gap'));
    ws.push(pub('room:1', 'E', 5)); // 3 and 4 missing
    assert.deepEqual(seen, []);
    assert.equal(sub.state, 'subscribing');
    const recovery = ws.frames()[1]!;
    assert.deepEqual(recovery, { event: 'subscribe', topics: ['room:1'], recover: true, since: { room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'E', offset: 2 } }, id: recovery.id });
    ws.push(pub('room:1', 'E', 6)); // still a jump: dropped, no second recovery
    assert.equal(ws.frames().length, 2);
    for (const o of [3, 4, 5, 6]) ws.push(pub('room:1', 'E', o)); // the replay
    ws.push({ event: 'ack', id: recovery.id, recovered: true, positions: { room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'E', offset: 6 } } });
    ws.push(pub('room:1', 'E', 7));
    assert.deepEqual(seen, ['room:1#3', 'room:1#4', 'room:1#5', 'room:1#6', 'room:1#7']);
    assert.deepEqual(events, ['subscribed recovered=true wasRecovering=true']);
  });


  test('after a position at 0, offset 1 of another epoch is delivered (the stream began on another MPC); offset 2 is a jump', async () => {
    const { sub, ws } = await roomAcked({ room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'A', offset: 0 } });
    const seen: string[] = [];
    sub.on('publication', (p) => seen.push(shown(p)));
    ws.push(pub('room:1', 'B', 1));
    ws.push(pub('room:1', 'B', 2));
    assert.deepEqual(seen, ['room:1#1', 'room:1#2']);
    assert.equal(sub.state, 'subscribed');
    assert.equal(ws.frames().length, 1, 'no recovery');
    assert.deepEqual(sub.positions['room:1'], { epoch: 'B', offset: 2 });
    ws.push(pub('room', 'S', 2)); // the ancestor's stream: offset 1 of it never came
    assert.deepEqual(seen, ['room:1#1', 'room:1#2']);
    assert.equal(sub.state, 'subscribing');
    assert.deepEqual(ws.frames()[1]!.since, { room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'B', offset: 2 } });
  });
  test('a gap notice recovers first; only a failed recovery reaches the application as gap; a new epoch follows', async () => {
    const { sub, ws } = await roomAcked({ room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'E', offset: 2 } });
    const log: string[] = [];
    sub.on('publication', (p) => log.push(`${p.epoch}:${shown(p)}`));
    sub.on('subscribed', (c) => log.push(`subscribed recovered=${c.recovered} wasRecovering=${c.wasRecovering}`));
    sub.on('gap', (c) => log.push(`gap ${c.reason} ${JSON.stringify(c.positions)}`));
    ws.push({ event: 'gap', topics: ['room:1', 'not-mine'] });
    const recovery = ws.frames()[1]!;
    assert.deepEqual(recovery.since, { room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'E', offset: 2 } });
    ws.push(pub('room:1', 'N', 1)); // the new epoch, live before the ack: at or before the ack's position
    ws.push({ event: 'ack', id: recovery.id, recovered: false, positions: { room: { epoch: 'R', offset: 0 }, 'room:1': { epoch: 'N', offset: 1 } } });
    ws.push(pub('room:1', 'N', 2));
    assert.deepEqual(log, [
      'subscribed recovered=false wasRecovering=true',
      'gap not-recovered {"room":{"epoch":"R","offset":0},"room:1":{"epoch":"N","offset":1}}',
      'N:room:1#2',
    ]);
  });

  test('a new epoch seen live (no notice) is treated like a gap; a gap notice during a recovery recovers once more', async () => {
    const client = makeClient();
    const sub = client.subscribe('t');
    const ws = await open(client);
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: { t: { epoch: 'A', offset: 3 } } });
    const seen: string[] = [];
    sub.on('publication', (p) => seen.push(`${p.epoch}${p.offset}`));
    ws.push(pub('t', 'B', 1));
    const first = ws.frames()[1]!;
    assert.deepEqual(first.since, { t: { epoch: 'A', offset: 3 } });
    ws.push({ event: 'gap', topics: ['t'] }); // during the recovery
    assert.equal(ws.frames().length, 2);
    ws.push({ event: 'ack', id: first.id, recovered: true, positions: { t: { epoch: 'A', offset: 3 } } });
    const second = ws.frames()[2]!;
    assert.equal(second.event, 'subscribe');
    assert.deepEqual(second.since, { t: { epoch: 'A', offset: 3 } });
    ws.push({ event: 'ack', id: second.id, recovered: false, positions: { t: { epoch: 'B', offset: 1 } } });
    ws.push(pub('t', 'B', 2));
    assert.deepEqual(seen, ['B2']);
  });

  test('an ack claiming "recovered" with messages missing is reported as an error and a gap', async () => {
    const client = makeClient();
    const sub = client.subscribe('t');
    const ws = await open(client);
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: { t: { epoch: 'A', offset: 3 } } });
    const log: string[] = [];
    sub.on('gap', (c) => log.push(`gap ${c.reason}`));
    sub.on('error', (e) => log.push(e.code));
    ws.push({ event: 'gap', topics: ['t'] });
    ws.push({ event: 'ack', id: ws.frames()[1]!.id, recovered: true, positions: { t: { epoch: 'A', offset: 9 } } });
    assert.deepEqual(log, [ClientErrorCodes.INCOMPLETE_RECOVERY, 'gap not-recovered']);
    assert.deepEqual(sub.positions, { t: { epoch: 'A', offset: 9 } });
  });

  test('without recover: a reconnect starts afresh, a jump is delivered after a gap event', async () => {
    const client = makeClient();
    const sub = client.subscribe('t', { recover: false });
    const ws = await open(client);
    assert.deepEqual(ws.frames()[0], { event: 'subscribe', topics: ['t'], id: ws.frames()[0]!.id });
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: { t: { epoch: 'A', offset: 3 } } });
    const log: string[] = [];
    sub.on('publication', (p) => log.push(shown(p)));
    sub.on('gap', (c) => log.push(`gap ${c.reason}`));
    ws.push(pub('t', 'A', 6));
    ws.push({ event: 'gap', topics: ['t'] });
    assert.deepEqual(log, ['gap jump', 't#6', 'gap gap']);
    ws.drop(1001);
    const ws1 = await FakeWebSocket.nth(1);
    ws1.accept();
    assert.deepEqual(ws1.frames()[0], { event: 'subscribe', topics: ['t'], id: ws1.frames()[0]!.id });
  });

  test('since: the first subscribe resumes from saved positions', async () => {
    const client = makeClient();
    const sub = client.subscribe('a:b', { since: { 'a:b': { epoch: 'E', offset: 10 } } });
    const ws = await open(client);
    const frame = ws.frames()[0]!;
    assert.deepEqual(frame.since, { 'a:b': { epoch: 'E', offset: 10 } });
    const seen: number[] = [];
    sub.on('publication', (p) => seen.push(p.offset));
    const subscribed = nextEvent<{ recovered: boolean; wasRecovering: boolean }>((l) => sub.once('subscribed', l));
    ws.push(pub('a:b', 'E', 11));
    ws.push(pub('a:b', 'E', 12));
    ws.push({ event: 'ack', id: frame.id, recovered: true, positions: { a: { epoch: 'X', offset: 0 }, 'a:b': { epoch: 'E', offset: 12 } } });
    const context = await subscribed;
    assert.equal(context.recovered, true);
    assert.equal(context.wasRecovering, true);
    assert.deepEqual(seen, [11, 12]);
  });

  test('unsubscribe tells the gateway and stops delivery', async () => {
    const client = makeClient();
    const sub = client.subscribe('t');
    const ws = await open(client);
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: { t: { epoch: 'A', offset: 0 } } });
    const seen: number[] = [];
    const ended: string[] = [];
    sub.on('publication', (p) => seen.push(p.offset));
    sub.on('unsubscribed', (c) => ended.push(c.reason));
    sub.unsubscribe();
    sub.unsubscribe();
    assert.deepEqual({ ...ws.frames()[1], id: 0 }, { event: 'unsubscribe', topics: ['t'], id: 0 });
    ws.push(pub('t', 'A', 1));
    assert.deepEqual(seen, []);
    assert.deepEqual(ended, ['unsubscribe']);
    assert.equal(sub.state, 'unsubscribed');
    assert.equal(client.getSubscription('t'), undefined);
    client.subscribe('t'); // the topic is free again
  });

  test('refusals: ERR_FORBIDDEN ends the subscription; ERR_BAD_SINCE subscribes without since and reports the gap', async () => {
    const client = makeClient();
    const errors = recordErrors(client);
    const forbidden = client.subscribe('secret');
    const resumed = client.subscribe('t', { since: { t: { epoch: 'E', offset: 4 } } });
    const ws = await open(client);
    const ends: string[] = [];
    forbidden.on('unsubscribed', (c) => ends.push(c.reason));
    const log: string[] = [];
    resumed.on('subscribed', (c) => log.push(`subscribed recovered=${c.recovered} wasRecovering=${c.wasRecovering}`));
    resumed.on('gap', (c) => log.push(`gap ${c.reason}`));
    const [f0, f1] = ws.frames();
    ws.push({ event: 'error', id: f0!.id, code: 'ERR_FORBIDDEN', message: 'subscription outside the granted topics' });
    ws.push({ event: 'error', id: f1!.id, code: 'ERR_BAD_SINCE', message: 'since: …' });
    assert.deepEqual(ends, ['refused']);
    assert.equal(client.getSubscription('secret'), undefined);
    assert.deepEqual(errors.map((e) => [e.code, e.serverCode]), [
      [ClientErrorCodes.SUBSCRIBE_REFUSED, 'ERR_FORBIDDEN'],
      [ClientErrorCodes.SUBSCRIBE_REFUSED, 'ERR_BAD_SINCE'],
    ]);
    const retry = ws.frames()[2]!;
    assert.deepEqual(retry, { event: 'subscribe', topics: ['t'], recover: true, id: retry.id });
    ws.push({ event: 'ack', id: retry.id, recovered: false, positions: { t: { epoch: 'Z', offset: 9 } } });
    assert.deepEqual(log, ['subscribed recovered=false wasRecovering=true', 'gap not-recovered']);
  });

  test('more subscriptions than the send burst: the first 50 frames go at once, the rest paced', async () => {
    const client = makeClient();
    for (let i = 0; i < 120; i++) client.subscribe(`many:${i}`);
    const ws = await open(client);
    assert.equal(ws.sent.length, 50);
    await ws.sentFrame((f) => (f.topics as string[])[0] === 'many:119');
    assert.equal(ws.sent.length, 120);
  });
});

describe('connection lifecycle', () => {
  test('reconnects after 1001 and resubscribes with recover and since; failover through the URL list', async () => {
    const client = makeClient({}, ['ws://a.test/ws', 'ws://b.test/ws']);
    const sub = client.subscribe('t');
    const states: ClientState[] = [];
    const drops: DisconnectContext[] = [];
    client.on('state', (s) => states.push(s));
    client.on('disconnected', (d) => drops.push(d));
    const ws0 = await open(client);
    assert.equal(ws0.url, 'ws://a.test/ws');
    assert.deepEqual(ws0.protocols, ['tormq.v2']);
    ws0.push({ event: 'ack', id: ws0.frames()[0]!.id, positions: { t: { epoch: 'E', offset: 3 } } });
    ws0.push(pub('t', 'E', 4));
    ws0.drop(1001, 'gateway shutting down');
    assert.equal(sub.state, 'subscribing');
    const ws1 = await FakeWebSocket.nth(1);
    assert.equal(ws1.url, 'ws://b.test/ws');
    ws1.accept();
    assert.deepEqual(ws1.frames()[0]!.since, { t: { epoch: 'E', offset: 4 } });
    assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
    assert.equal(drops.length, 1);
    assert.equal(drops[0]!.code, 1001);
    assert.equal(drops[0]!.wasOpen, true);
    assert.ok(drops[0]!.reconnectIn! >= 5 && drops[0]!.reconnectIn! < 40);
    ws1.drop(1006);
    const ws2 = await FakeWebSocket.nth(2);
    assert.equal(ws2.url, 'ws://a.test/ws');
  });

  test('failed attempts widen the backoff window; 4029 waits between half the maximum and the maximum', async () => {
    const client = makeClient({ minReconnectDelay: 10, maxReconnectDelay: 160 });
    const delays: number[] = [];
    client.on('disconnected', (d) => delays.push(d.reconnectIn!));
    void client.connect();
    for (let n = 0; n < 5; n++) (await FakeWebSocket.nth(n)).drop(1006); // refused before open
    await FakeWebSocket.nth(5);
    for (let k = 0; k < 5; k++) {
      const ceiling = Math.min(160, 10 * 2 ** (k + 1));
      assert.ok(delays[k]! >= 10 && delays[k]! < ceiling, `attempt ${k}: ${delays[k]} not in [10, ${ceiling})`);
    }
    const ws = FakeWebSocket.instances[5]!;
    ws.accept();
    ws.drop(4029, 'rate limit exceeded');
    assert.ok(delays[5]! >= 80 && delays[5]! < 160, `4029: ${delays[5]}`);
  });

  test('getToken before every attempt: after a refused upgrade and after 1008 the next socket carries a new token', async () => {
    let n = 0;
    const client = makeClient({ getToken: async () => `tok${++n}` });
    void client.connect();
    const ws0 = await FakeWebSocket.nth(0);
    assert.deepEqual(ws0.protocols, ['tormq.v2', 'bearer.tok1']);
    ws0.drop(1006); // a refused upgrade looks like this in a browser
    const ws1 = await FakeWebSocket.nth(1);
    assert.deepEqual(ws1.protocols, ['tormq.v2', 'bearer.tok2']);
    ws1.accept();
    ws1.drop(1008, 'token expired');
    const ws2 = await FakeWebSocket.nth(2);
    assert.deepEqual(ws2.protocols, ['tormq.v2', 'bearer.tok3']);
  });

  test('getToken failures are errors and retried with backoff, never thrown', async () => {
    let calls = 0;
    const client = makeClient({
      getToken: () => {
        calls++;
        if (calls < 3) throw new Error('token service down');
        return 'ok';
      },
    });
    const errors = recordErrors(client);
    void client.connect();
    const ws = await FakeWebSocket.nth(0);
    assert.deepEqual(ws.protocols, ['tormq.v2', 'bearer.ok']);
    assert.deepEqual(errors.map((e) => e.code), [ClientErrorCodes.TOKEN, ClientErrorCodes.TOKEN]);
  });

  test('close() stops for good: no reconnect, subscriptions end, connect() rejects', async () => {
    const client = makeClient();
    const sub = client.subscribe('t');
    const ended: string[] = [];
    sub.on('unsubscribed', (c) => ended.push(c.reason));
    const ws = await open(client);
    client.close();
    client.close();
    assert.equal(client.state, 'closed');
    assert.deepEqual(ws.closedByClient, { code: 1000, reason: 'client closed' });
    assert.deepEqual(ended, ['closed']);
    await assert.rejects(client.connect(), (e: TormqClientError) => e.code === ClientErrorCodes.CLIENT_CLOSED);
    assert.throws(() => client.subscribe('u'), (e: TormqClientError) => e.code === ClientErrorCodes.CLIENT_CLOSED);
    // Nothing reconnects: wait well past the longest reconnect delay (40 ms) and count sockets.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(FakeWebSocket.instances.length, 1);
  });

  test('close() while waiting to reconnect or for getToken: connect() rejects, nothing opens', async () => {
    let release!: (token: string) => void;
    const client = makeClient({ getToken: () => new Promise<string>((resolve) => (release = resolve)) });
    const connected = client.connect();
    await new Promise((resolve) => setImmediate(resolve));
    client.close();
    release('late');
    await assert.rejects(connected, (e: TormqClientError) => e.code === ClientErrorCodes.CLIENT_CLOSED);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(FakeWebSocket.instances.length, 0);
  });

  test('a gateway that does not select tormq.v2 is left with an error; the client retries with backoff', async () => {
    const client = makeClient();
    const errors = recordErrors(client);
    void client.connect();
    (await FakeWebSocket.nth(0)).accept('tormq');
    await FakeWebSocket.nth(1);
    assert.equal(errors[0]!.code, ClientErrorCodes.PROTOCOL);
    assert.equal(client.state === 'connected', false);
  });

  test("a browser's online event reconnects at once instead of waiting out the backoff; close() removes the listener", async () => {
    const listeners = new Map<string, () => void>();
    const g = globalThis as { addEventListener?: unknown; removeEventListener?: unknown };
    g.addEventListener = (type: string, listener: () => void) => listeners.set(type, listener);
    g.removeEventListener = (type: string, listener: () => void) => {
      if (listeners.get(type) === listener) listeners.delete(type);
    };
    try {
      // Delays of at least a minute: only the online event can bring the next socket within this test.
      const client = makeClient({ minReconnectDelay: 60_000, maxReconnectDelay: 120_000 });
      const ws = await open(client);
      ws.drop(1006);
      assert.equal(client.state, 'disconnected');
      listeners.get('online')!();
      const ws1 = await FakeWebSocket.nth(1, 1000);
      ws1.accept();
      assert.equal(client.state, 'connected');
      client.close();
      assert.equal(listeners.has('online'), false);
    } finally {
      delete g.addEventListener;
      delete g.removeEventListener;
    }
  });

  test('a subscription made in a connected listener is sent once', async () => {
    const client = makeClient();
    client.subscribe('a');
    client.on('connected', () => client.subscribe('b'));
    const ws = await open(client);
    assert.deepEqual(ws.frames().map((f) => (f.topics as string[])[0]), ['a', 'b']);
  });

  test('getToken returning the token in use (a cached one) sends no refresh; a newer one is sent', async () => {
    const secret = new TextEncoder().encode('k');
    const exp = Math.floor(Date.now() / 1000) + 2;
    const cached = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime(exp).sign(secret);
    const newer = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime(exp + 60).sign(secret);
    let calls = 0;
    const client = makeClient({ getToken: () => (++calls < 4 ? cached : newer) });
    const ws = await open(client);
    const refresh = await ws.sentFrame((f) => f.event === 'refresh');
    assert.equal(refresh.token, newer);
    assert.equal(calls, 4);
    assert.equal(ws.frames().filter((f) => f.event === 'refresh').length, 1);
  });

  test('a silent connection is pinged, then replaced', async () => {
    const client = makeClient({ pingInterval: 30, pongTimeout: 30 });
    const drops: DisconnectContext[] = [];
    client.on('disconnected', (d) => drops.push(d));
    const ws = await open(client);
    const ping = await ws.sentFrame((f) => f.event === 'ping');
    assert.equal(typeof ping.id, 'number');
    const ws1 = await FakeWebSocket.nth(1);
    assert.equal(drops[0]!.code, 1006);
    assert.match(drops[0]!.reason, /no traffic/);
    // Answered pings keep a connection.
    ws1.accept();
    const ping1 = await ws1.sentFrame((f) => f.event === 'ping');
    ws1.push({ event: 'pong', id: ping1.id });
    await ws1.sentFrame((f) => f.event === 'ping' && f.id !== ping1.id);
    assert.equal(FakeWebSocket.instances.length, 2);
  });

  test('an unanswered request replaces the connection (ERR_TIMEOUT)', async () => {
    const client = makeClient({ requestTimeout: 40 });
    const errors = recordErrors(client);
    client.subscribe('t');
    const ws = await open(client);
    ws.push(pub('other', 'E', 1)); // traffic, but no ack
    const ws1 = await FakeWebSocket.nth(1);
    assert.ok(ws1);
    assert.equal(errors[0]!.code, ClientErrorCodes.TIMEOUT);
  });

  test('the token is refreshed in band before exp; a refused refresh is an error and retried', async () => {
    const secret = new TextEncoder().encode('k');
    let n = 0;
    const client = makeClient({
      getToken: async () =>
        new SignJWT({ n: ++n }).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime(Math.floor(Date.now() / 1000) + 2).sign(secret),
    });
    const errors = recordErrors(client);
    const ws = await open(client);
    const first = await ws.sentFrame((f) => f.event === 'refresh');
    assert.equal(typeof first.token, 'string');
    ws.push({ event: 'error', id: first.id, code: 'ERR_UNAUTHORIZED', message: 'token refused' });
    assert.equal(errors[0]!.code, ClientErrorCodes.REFRESH_REFUSED);
    assert.equal(errors[0]!.serverCode, 'ERR_UNAUTHORIZED');
    const second = await ws.sentFrame((f) => f.event === 'refresh' && f.id !== first.id);
    ws.push({ event: 'ack', id: second.id });
    assert.notEqual(second.token, first.token);
    assert.equal(FakeWebSocket.instances.length, 1);
  });
});

describe('hostile frames', () => {
  test('garbage from the gateway becomes error events; nothing is thrown; delivery goes on', async () => {
    const client = makeClient();
    const errors = recordErrors(client);
    const sub = client.subscribe('t');
    const ws = await open(client);
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: { t: { epoch: 'E', offset: 0 } } });
    const seen: number[] = [];
    sub.on('publication', (p) => seen.push(p.offset));
    const garbage: unknown[] = [
      new Uint8Array([1, 2, 3]), 'not json', '[1,2]', 'null', '42', '"str"',
      { event: 'ack', id: 999 }, { event: 'ack', id: 'x' }, { event: 'error' }, { event: 'weird' }, {},
      { topic: 't', offset: 'x', epoch: 'E' }, { topic: 't', offset: -1, epoch: 'E' }, { topic: 't', offset: 1.5, epoch: 'E' },
      { topic: 't', offset: 2 ** 60, epoch: 'E' }, { topic: 't', offset: 1, epoch: 7 }, { topic: 't', offset: 1 },
      { event: 'gap', topics: 'x' }, { event: 'gap' }, { event: 'gap', topics: [1, null, {}] }, { event: 'pong' },
      '{"topic":"t","offset":1,"epoch":"E","data":', 'x'.repeat(100_000),
    ];
    for (const frame of garbage) ws.push(frame);
    ws.push(pub('t', 'E', 1));
    assert.deepEqual(seen, [1]);
    assert.ok(errors.length >= garbage.length - 2, `${errors.length} errors for ${garbage.length} frames`);
    assert.ok(errors.every((e) => e instanceof TormqClientError && (e.code === ClientErrorCodes.BAD_FRAME || e.code === ClientErrorCodes.BAD_REPLY)));
    assert.equal(client.state, 'connected');
  });

  test('a malformed subscribe ack is an error and the connection is replaced', async () => {
    const client = makeClient();
    const errors = recordErrors(client);
    client.subscribe('t');
    const ws = await open(client);
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: [1, 2] });
    const ws1 = await FakeWebSocket.nth(1);
    ws1.accept();
    ws1.push({ event: 'ack', id: ws1.frames()[0]!.id, positions: { t: { epoch: 'E', offset: '3' } } });
    await FakeWebSocket.nth(2);
    assert.deepEqual(errors.map((e) => e.code), [ClientErrorCodes.BAD_REPLY, ClientErrorCodes.BAD_REPLY]);
  });

  test('a listener that throws becomes an error event; the client and the other listeners go on', async () => {
    const client = makeClient();
    const errors = recordErrors(client);
    const sub = client.subscribe('t');
    const ws = await open(client);
    ws.push({ event: 'ack', id: ws.frames()[0]!.id, positions: { t: { epoch: 'E', offset: 0 } } });
    const seen: number[] = [];
    sub.on('publication', () => {
      throw new Error('application bug');
    });
    sub.on('publication', (p) => seen.push(p.offset));
    ws.push(pub('t', 'E', 1));
    ws.push(pub('t', 'E', 2));
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(errors.map((e) => e.code), [ClientErrorCodes.LISTENER, ClientErrorCodes.LISTENER]);
    assert.equal((errors[0]!.cause as Error).message, 'application bug');
  });
});
