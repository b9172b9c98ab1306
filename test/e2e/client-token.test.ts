/**
 * The client's token handling against a real gateway with JWT authentication (HS256, no clock
 * tolerance, 3-second tokens): refreshed in band before `exp` without a disconnect; a refresh the
 * gateway refuses ends in a 1008 close and a reconnect with a new token that recovers what was
 * missed; a refused upgrade (HTTP 401) asks `getToken` again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { Publisher } from '../../src/index.js';
import { ClientErrorCodes, tokenExpiry, TormqClient } from '../../src/client/tormq-client.js';
import { ClientLog } from '../helpers/client-log.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';

const SECRET = 'client-token-test-secret-0123456789';
const LIFETIME_S = 3;

function mint(sub: string, secret = SECRET): Promise<string> {
  return new SignJWT({ topics: ['tok'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime(Math.floor(Date.now() / 1000) + LIFETIME_S)
    .sign(new TextEncoder().encode(secret));
}

describe('the client and JWT authentication (real gateway)', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let publisher: Publisher;
  const clients: TormqClient[] = [];

  before(async () => {
    mpc = await startMpcProcess();
    gateway = await startGatewayProcess(mpc.gatewayPort, ['--auth-secret', SECRET, '--auth-clock-tolerance', '0']);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    for (const c of clients) c.close();
    await publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  const totals = async () => (await gateway.stats()) as unknown as { totals: Record<string, number> };

  test('a token about to expire is refreshed in band: the connection outlives several tokens', async () => {
    const tokens: string[] = [];
    let fourth!: () => void;
    const threeRefreshes = new Promise<void>((resolve) => (fourth = resolve));
    const client = new TormqClient(gateway.url, {
      getToken: async () => {
        tokens.push(await mint('user:1'));
        if (tokens.length === 4) fourth();
        return tokens.at(-1);
      },
    });
    clients.push(client);
    const log = new ClientLog(client, client.subscribe('tok:a'));
    const before = (await totals()).totals;
    await client.connect();
    await log.until(() => log.subscribed.length === 1, 'the ack');
    const firstExpiry = tokenExpiry(tokens[0]!)!;
    // Three refreshes (one per half lifetime) and the first token's expiry well past.
    await threeRefreshes;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExpiry + 1000 - Date.now())));
    await publisher.ready({ topic: 'tok:a', timeoutMs: 15_000 });
    await publisher.send('tok:a', { i: 0 });
    await log.until(() => log.publications.length === 1, 'a message after the first token expired');
    const after = (await totals()).totals;
    assert.ok(after.tokenRefreshes! - before.tokenRefreshes! >= 3, `refreshes accepted: ${after.tokenRefreshes! - before.tokenRefreshes!}`);
    assert.equal(after.tokenExpiredCloses! - before.tokenExpiredCloses!, 0);
    assert.deepEqual(log.disconnects, []);
    assert.deepEqual(log.errors, []);
    assert.equal(client.state, 'connected');
  });

  test('a refused refresh ends in 1008; the client reconnects with a new token and recovers what it missed', async () => {
    let calls = 0;
    const client = new TormqClient(gateway.url, {
      minReconnectDelay: 100,
      maxReconnectDelay: 1000,
      // While connected (a refresh), a token for another identity: the gateway refuses it.
      getToken: () => {
        calls++;
        return mint(client.state === 'connected' ? 'someone-else' : 'user:2');
      },
    });
    clients.push(client);
    const log = new ClientLog(client, client.subscribe('tok:b'));
    await client.connect();
    await log.until(() => log.subscribed.length === 1, 'the ack');
    await publisher.ready({ topic: 'tok:b', timeoutMs: 15_000 });
    await publisher.send('tok:b', { i: 0 });
    await log.until(() => log.publications.length === 1, 'a first message');
    await log.until(() => log.disconnects.length === 1, 'the 1008 close', 15_000);
    assert.equal(log.disconnects[0]!.code, 1008);
    await publisher.send('tok:b', { i: 1 }); // maybe before, maybe after the reconnect: either way, once
    await log.until(() => log.subscribed.length === 2, 'the ack after the reconnect');
    await publisher.send('tok:b', { i: 2 });
    await log.until(() => log.publications.length === 3, 'every message');
    assert.deepEqual(log.publications.map((p) => [p.data.i, p.offset]), [[0, 1], [1, 2], [2, 3]]);
    assert.deepEqual(log.subscribed.map((s) => [s.wasRecovering, s.recovered]), [[false, false], [true, true]]);
    assert.ok(log.errors.some((e) => e.code === ClientErrorCodes.REFRESH_REFUSED && e.serverCode === 'ERR_UNAUTHORIZED'));
    assert.ok(calls >= 3, `getToken calls: ${calls}`);
    client.close();
  });

  test('a refused upgrade (401) asks getToken again', async () => {
    const issued: string[] = [];
    const client = new TormqClient(gateway.url, {
      minReconnectDelay: 100,
      maxReconnectDelay: 1000,
      getToken: async () => {
        issued.push(await mint('user:3', issued.length === 0 ? 'a-wrong-secret-0123456789012345' : SECRET));
        return issued.at(-1);
      },
    });
    clients.push(client);
    const log = new ClientLog(client, client.subscribe('tok:c'));
    await client.connect();
    await log.until(() => log.subscribed.length === 1, 'the ack');
    assert.equal(issued.length, 2);
    assert.equal(log.disconnects.length, 1);
    assert.deepEqual({ code: log.disconnects[0]!.code, wasOpen: log.disconnects[0]!.wasOpen }, { code: 1006, wasOpen: false });
    client.close();
  });
});
