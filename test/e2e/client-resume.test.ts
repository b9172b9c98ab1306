/**
 * The tormq client (src/client/) against the real tormq-mpc and tormq-gateway processes: a gateway
 * SIGKILLed while messages are published and restarted on the same port, a second gateway taking
 * over through the client's URL list, a frozen gateway (SIGSTOP) noticed by the client's pings, and a
 * history too short to replay what was missed. Each time the application must see every message
 * exactly once and in order per stream, or be told that it cannot (`recovered: false`, `gap`).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Publisher } from '../../src/index.js';
import { TormqClient, type TormqClientOptions } from '../../src/client/tormq-client.js';
import { assertExactlyOnceInOrder, ClientLog, PublishLoop } from '../helpers/client-log.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';

const FAST: TormqClientOptions = { minReconnectDelay: 100, maxReconnectDelay: 1000 };

describe('the client resumes after gateway failures (real MPC and gateways)', () => {
  let mpc: MpcProcess;
  let publisher: Publisher;
  const gateways: GatewayProcess[] = [];
  const clients: TormqClient[] = [];

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--history-size', '5000']);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    for (const client of clients) client.close();
    await publisher?.close();
    for (const gateway of gateways) {
      gateway.child.kill('SIGCONT');
      await gateway.stop();
    }
    await mpc?.stop();
  });

  async function gateway(extra: string[] = []): Promise<GatewayProcess> {
    const started = await startGatewayProcess(mpc.gatewayPort, extra);
    gateways.push(started);
    return started;
  }

  function client(url: string | string[], topic: string, options: TormqClientOptions = FAST): ClientLog {
    const c = new TormqClient(url, options);
    clients.push(c);
    return new ClientLog(c, c.subscribe(topic));
  }

  test('SIGKILL the gateway while publishing, restart it on the same port: every message once, in order', async () => {
    const g1 = await gateway();
    const log = client(g1.url, 'resume:1');
    await log.client.connect();
    await log.until(() => log.subscribed.length === 1, 'the first ack');
    await publisher.ready({ topic: 'resume:1', timeoutMs: 15_000 });
    // Two streams reach the subscription: its topic and its ancestor.
    const loop = new PublishLoop(publisher, (i) => (i % 3 === 0 ? 'resume' : 'resume:1'), 2);
    await log.until(() => log.publications.length >= 100, '100 live messages');
    await g1.stop('SIGKILL');
    const killedAt = loop.sent;
    await loop.sendMore(100); // published while no gateway runs
    const g2 = await gateway(['-p', String(g1.port)]);
    await log.until(() => log.subscribed.length === 2, 'the ack after the reconnect');
    await loop.sendMore(200);
    await loop.stop();
    await log.until(() => log.publications.length === loop.sent, `all ${loop.sent} messages`);
    assertExactlyOnceInOrder(log, loop.byTopic);
    assert.equal(g2.port, g1.port);
    assert.deepEqual(log.subscribed.map((s) => [s.wasRecovering, s.recovered]), [[false, false], [true, true]]);
    assert.deepEqual(log.gaps, []);
    assert.equal(log.disconnects[0]!.code, 1006);
    assert.equal(log.disconnects[0]!.wasOpen, true);
    console.log(`# SIGKILL/restart: ${loop.sent} published (${killedAt} before the kill), ${log.disconnects.length - 1} refused attempts while down, ` +
      `reconnected ${log.connects[1]!.at - log.disconnects[0]!.at} ms after the kill`);
  });

  test('a second gateway takes over through the URL list: every message once, in order', async () => {
    const a = await gateway();
    const b = await gateway();
    const log = client([a.url, b.url], 'failover:7');
    await log.client.connect();
    await log.until(() => log.subscribed.length === 1, 'the first ack');
    assert.equal(log.connects[0]!.url, a.url);
    await publisher.ready({ topic: 'failover:7', timeoutMs: 15_000 });
    const loop = new PublishLoop(publisher, (i) => (i % 2 === 0 ? 'failover' : 'failover:7'), 2);
    await log.until(() => log.publications.length >= 100, '100 live messages');
    await a.stop('SIGKILL');
    await log.until(() => log.subscribed.length === 2, 'the ack from the second gateway');
    await loop.sendMore(200);
    await loop.stop();
    await log.until(() => log.publications.length === loop.sent, `all ${loop.sent} messages`);
    assertExactlyOnceInOrder(log, loop.byTopic);
    assert.equal(log.connects.at(-1)!.url, b.url);
    assert.deepEqual(log.subscribed.map((s) => [s.wasRecovering, s.recovered]), [[false, false], [true, true]]);
    assert.deepEqual(log.gaps, []);
  });

  test('a frozen gateway (SIGSTOP) is noticed by pings and left for the next URL; nothing is lost', async () => {
    const a = await gateway();
    const b = await gateway();
    const log = client([a.url, b.url], 'frozen:1', { ...FAST, pingInterval: 500, pongTimeout: 1000 });
    await log.client.connect();
    await log.until(() => log.subscribed.length === 1, 'the first ack');
    await publisher.ready({ topic: 'frozen:1', timeoutMs: 15_000 });
    const loop = new PublishLoop(publisher, () => 'frozen:1', 5);
    await log.until(() => log.publications.length >= 20, '20 live messages');
    a.child.kill('SIGSTOP'); // the TCP connection stays open; nothing comes through it any more
    const stoppedAt = Date.now();
    await log.until(() => log.subscribed.length === 2, 'the ack from the second gateway');
    await loop.sendMore(50);
    await loop.stop();
    await log.until(() => log.publications.length === loop.sent, `all ${loop.sent} messages`);
    assertExactlyOnceInOrder(log, loop.byTopic);
    assert.match(log.disconnects[0]!.reason, /no traffic/);
    assert.equal(log.connects.at(-1)!.url, b.url);
    console.log(`# SIGSTOP: the dead connection was left ${log.disconnects[0]!.at - stoppedAt} ms after the gateway froze (pingInterval 500, pongTimeout 1000)`);
    a.child.kill('SIGCONT');
  });

  test('no dangling handles after close(): a Node process with a connected client exits by itself', async () => {
    const g = await gateway();
    const fixture = fileURLToPath(new URL('../fixtures/client-exit.js', import.meta.url));
    const child = spawn(process.execPath, [fixture, g.url, 'exit:1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: Array<Record<string, unknown>> = [];
    const subscribed = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        lines.push(JSON.parse(line) as Record<string, unknown>);
        if (lines.at(-1)!.event === 'subscribed') resolve();
      });
    });
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    try {
      await Promise.race([subscribed, exited.then(() => assert.fail('exited before subscribing'))]);
      await publisher.ready({ topic: 'exit:1', timeoutMs: 15_000 });
      await publisher.send('exit:1', { i: 0 });
      const [code, signal] = await exited;
      assert.equal(signal, null, 'the process had to be killed: something kept it alive after close()');
      assert.equal(code, 0);
    } finally {
      clearTimeout(timer);
    }
    assert.deepEqual(lines.map((l) => l.event), ['subscribed', 'publication', 'closed']);
    console.log(`# exit after close() with ${String(lines[2]!.websocket)} WebSocket: ${String(lines[2]!.exitMs ?? '?')}`);
  });
});

describe('history exceeded (real MPC with --history-size 10)', () => {
  let mpc: MpcProcess;
  let publisher: Publisher;
  const gateways: GatewayProcess[] = [];
  let c: TormqClient | undefined;

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--history-size', '10']);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    c?.close();
    await publisher?.close();
    for (const gateway of gateways) await gateway.stop();
    await mpc?.stop();
  });

  test('more missed than history holds: subscribed with recovered:false, then gap; live messages go on', async () => {
    const g1 = await startGatewayProcess(mpc.gatewayPort);
    gateways.push(g1);
    c = new TormqClient(g1.url, FAST);
    const log = new ClientLog(c, c.subscribe('evict:1'));
    await c.connect();
    await log.until(() => log.subscribed.length === 1, 'the first ack');
    await publisher.ready({ topic: 'evict:1', timeoutMs: 15_000 });
    for (let i = 0; i < 3; i++) await publisher.send('evict:1', { i });
    await log.until(() => log.publications.length === 3, '3 messages');
    await g1.stop('SIGKILL');
    const before = (await mpc.stats()).messagesIn;
    for (let i = 3; i < 53; i++) await publisher.send('evict:1', { i });
    // The MPC must hold them (positions 4..53, only the last 10 in history) before the client asks.
    await waitFor(async () => (await mpc.stats()).messagesIn >= before + 50, 'the MPC to receive 50 messages');
    const g2 = await startGatewayProcess(mpc.gatewayPort, ['-p', String(g1.port)]);
    gateways.push(g2);
    await log.until(() => log.subscribed.length === 2 && log.gaps.length === 1, 'the ack after the reconnect and the gap');
    assert.deepEqual({ ...log.subscribed[1], positions: undefined }, { recovered: false, wasRecovering: true, positions: undefined });
    assert.equal(log.subscribed[1]!.positions['evict:1']!.offset, 53);
    assert.equal(log.gaps[0]!.reason, 'not-recovered');
    await publisher.send('evict:1', { i: 53 });
    await log.until(() => log.publications.length === 4, 'the live message after the gap');
    assert.deepEqual(log.publications.map((p) => [p.data.i, p.offset]), [[0, 1], [1, 2], [2, 3], [53, 54]]);
  });
});

/** Polls an admin endpoint (nothing pushes MPC counters) until `predicate` holds. */
async function waitFor(predicate: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the MPC restarts (real processes): new epochs', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let publisher: Publisher;
  let c: TormqClient | undefined;

  before(async () => {
    mpc = await startMpcProcess();
    gateway = await startGatewayProcess(mpc.gatewayPort);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    c?.close();
    await publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test("the gateway's gap reaches the application once, as recovered:false and gap; the new epoch follows", async () => {
    c = new TormqClient(gateway.url, FAST);
    const log = new ClientLog(c, c.subscribe('phoenix:1'));
    await c.connect();
    await log.until(() => log.subscribed.length === 1, 'the first ack');
    await publisher.ready({ topic: 'phoenix:1', timeoutMs: 15_000 });
    for (let i = 0; i < 3; i++) await publisher.send('phoenix:1', { i });
    await log.until(() => log.publications.length === 3, '3 messages');
    const oldEpoch = log.publications[0]!.epoch;

    const { publisherPort, gatewayPort } = mpc;
    mpc.child.kill('SIGKILL');
    await mpc.exited;
    await publisher.close();
    mpc = await startMpcProcess(['-s', String(publisherPort), '-p', String(gatewayPort)]);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
    await publisher.ready({ topic: 'phoenix:1', timeoutMs: 15_000 });
    // The gateway learns the new epoch from the MPC's position for the re-sent subscription.
    await log.until(() => log.gaps.length === 1 && log.subscribed.length === 2, 'the gap', 15_000);
    assert.deepEqual([log.subscribed[1]!.wasRecovering, log.subscribed[1]!.recovered], [true, false]);
    assert.equal(log.gaps[0]!.reason, 'not-recovered');
    const position = log.subscribed[1]!.positions['phoenix:1']!;
    assert.notEqual(position.epoch, oldEpoch);
    for (let i = 3; i < 5; i++) await publisher.send('phoenix:1', { i });
    await log.until(() => log.publications.length === 5, 'the messages of the new epoch');
    assert.deepEqual(log.publications.slice(3).map((p) => [p.data.i, p.epoch, p.offset]), [[3, position.epoch, position.offset + 1], [4, position.epoch, position.offset + 2]]);
    assert.equal(log.gaps.length, 1);
    assert.deepEqual(log.disconnects, [], 'the client connection never dropped');
  });
});
