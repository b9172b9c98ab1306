/**
 * Token authentication and per-topic authorisation end to end: real tormq-mpc and tormq-gateway
 * processes (--workers 2), real ws clients, tokens minted here with jose.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, UnsecuredJWT, importPKCS8 } from 'jose';
import { WebSocket } from 'ws';
import { encodeBody } from '../../src/index.js';
import { startCli, startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { rawUpgrade, until } from '../helpers/probes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

const SECRET = 'e2e-secret-0123456789-abcdefghijklmnopqrstuv';
const ORIGIN = 'https://app.example.com';
const now = () => Math.floor(Date.now() / 1000);

function mint(claims: Record<string, unknown>, options: { alg?: string; secret?: string } = {}): Promise<string> {
  return new SignJWT({ exp: now() + 300, ...claims })
    .setProtectedHeader({ alg: options.alg ?? 'HS256' })
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** Attempts an upgrade that must be refused; resolves with the HTTP status and body length. */
function refusedUpgrade(url: string, options: { protocols?: string[]; headers?: Record<string, string>; origin?: string } = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers, origin: options.origin });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.on('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.on('error', () => {});
  });
}

const sum = (stats: Awaited<ReturnType<GatewayProcess['stats']>>, field: string) =>
  stats.workers.reduce((n, w) => n + (w[field] as number), 0);

describe('security: token authentication (HS256, auto-subscribe to sub, origin allowlist)', () => {
  const sys = useSystem({
    gatewayArgs: ['--auth-secret', SECRET, '--auth-subscribe-sub', '--auth-clock-tolerance', '0', '--allowed-origins', `${ORIGIN},http://localhost:3000`],
  });
  const connect = (token: string, how: 'header' | 'query' | 'subprotocol' = 'header') =>
    how === 'header'
      ? sys.connect({ headers: { authorization: `Bearer ${token}` } })
      : how === 'query'
        ? sys.connect(undefined, `${sys.gateway.url}?token=${encodeURIComponent(token)}`)
        : sys.connect(['tormq', `bearer.${token}`] as never);

  test('a refused upgrade is closed by the server: clients that never close their side hold no connection slot', async () => {
    const before = (await sys.gateway.stats()) as unknown as { openSockets: number };
    const raws = await Promise.all([rawUpgrade(sys.gateway.port), rawUpgrade(sys.gateway.port, 'Authorization: Bearer not.a.jwt\r\n')]);
    try {
      for (const raw of raws) {
        assert.equal(raw.status, 'HTTP/1.1 401 Unauthorized');
        assert.equal(raw.serverEnded, true);
      }
      // Counted against --max-connections during the handshake; released only if the server closed
      // them (these clients keep their side open until the end of the test).
      await until('refused sockets released', async () => ((await sys.gateway.stats()) as unknown as { openSockets: number }).openSockets === before.openSockets);
    } finally {
      for (const raw of raws) raw.socket.destroy();
    }
  });

  test('refuses with 401 and no detail: no token, bad signature, alg none, other algorithm, expired, not yet valid', async () => {
    const before = await sys.gateway.stats();
    const cases: Array<[string, Parameters<typeof refusedUpgrade>[1]]> = [
      ['no token', {}],
      ['bad signature', { headers: { authorization: `Bearer ${await mint({ sub: 'u' }, { secret: 'another-secret-0123456789-abcdefghijkl' })}` } }],
      ['alg none', { headers: { authorization: `Bearer ${new UnsecuredJWT({ sub: 'u', exp: now() + 300 }).encode()}` } }],
      ['HS512 with the right secret', { headers: { authorization: `Bearer ${await mint({ sub: 'u' }, { alg: 'HS512' })}` } }],
      ['expired', { headers: { authorization: `Bearer ${await mint({ sub: 'u', exp: now() - 60 })}` } }],
      ['not yet valid', { headers: { authorization: `Bearer ${await mint({ sub: 'u', nbf: now() + 120 })}` } }],
      ['no exp', { headers: { authorization: `Bearer ${await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))}` } }],
      ['garbage in the query', { headers: {} }],
    ];
    for (const [name, options] of cases) {
      const url = name === 'garbage in the query' ? `${sys.gateway.url}?token=not.a.jwt` : sys.gateway.url;
      const refused = await refusedUpgrade(url, options);
      assert.equal(refused.status, 401, name);
      assert.equal(refused.body, '', `${name}: no detail in the response`);
      assert.equal(refused.headers['www-authenticate'], 'Bearer', name);
    }
    const after = await sys.gateway.stats();
    assert.equal(sum(after, 'authFailures') - sum(before, 'authFailures'), cases.length);
    const metrics = await (await sys.gateway.admin('/metrics')).text();
    assert.match(metrics, /tormq_auth_failures_total\{worker="\d"\} [1-9]/);
  });

  test('refuses a foreign origin with 403, before looking at the token', async () => {
    const token = await mint({ sub: 'u' });
    const before = await sys.gateway.stats();
    const refused = await refusedUpgrade(sys.gateway.url, { origin: 'https://evil.example', headers: { authorization: `Bearer ${token}` } });
    assert.equal(refused.status, 403);
    assert.equal(refused.body, '');
    const after = await sys.gateway.stats();
    assert.equal(sum(after, 'originRejections') - sum(before, 'originRejections'), 1);
    assert.equal(sum(after, 'authFailures'), sum(before, 'authFailures'));
    // An allowed origin with a valid token connects.
    const ok = new TestClient(sys.gateway.url, { origin: ORIGIN, headers: { authorization: `Bearer ${token}` } });
    sys.clients.push(ok);
    await ok.opened;
  });

  test('happy paths: header, query parameter, subprotocol (server answers "tormq"); sub is auto-subscribed', async () => {
    const viaHeader = await connect(await mint({ sub: 'user:1' }), 'header');
    const viaQuery = await connect(await mint({ sub: 'user:2' }), 'query');
    const viaProtocol = await connect(await mint({ sub: 'user:3' }), 'subprotocol');
    assert.equal(viaProtocol.ws.protocol, 'tormq');
    await sys.publisher.ready({ topic: 'user', timeoutMs: 10_000 });
    for (const n of [1, 2, 3]) await sys.publisher.send(`user:${n}`, `for ${n}`);
    await sys.publisher.send('user', 'to every user');
    for (const [n, client] of [[1, viaHeader], [2, viaQuery], [3, viaProtocol]] as const) {
      await client.waitFor((m) => m.includes('to every user'));
      assert.deepEqual(client.bodies(), [encodeBody(`user:${n}`, `for ${n}`), encodeBody('user', 'to every user')]);
    }
  });

  test('subscriptions outside the grant get ERR_FORBIDDEN, are not applied, and are counted', async () => {
    const reader = await connect(await mint({ sub: 'reader', topics: ['news', 'ehr:api'] }));
    const other = await connect(await mint({ sub: 'other', topics: ['ehr'] }));
    await other.subscribe('ehr');
    const before = await sys.gateway.stats();
    assert.equal((await reader.request({ event: 'subscribe', topics: ['news:sport'] })).event, 'ack');
    assert.equal((await reader.request({ event: 'subscribe', topic: 'ehr:api:7' })).event, 'ack');
    for (const frame of [
      { event: 'subscribe', topics: ['ehr'] }, // the parent of a grant
      { event: 'subscribe', topics: ['newsx'] }, // a sibling sharing the prefix
      { event: 'subscribe', topics: ['news:sport', 'secret'] }, // refused whole
      { event: 'subscribe', topic: 'ehr:apix' },
    ]) {
      const reply = await reader.request(frame);
      assert.equal(reply.event, 'error');
      assert.equal(reply.code, 'ERR_FORBIDDEN');
    }
    // Without an id: nothing is answered, but it is still refused and counted.
    reader.send({ event: 'subscribe', topics: ['secret'] });
    assert.equal((await reader.request({ event: 'ping' })).event, 'pong');
    const after = await sys.gateway.stats();
    assert.equal(sum(after, 'forbiddenSubscriptions') - sum(before, 'forbiddenSubscriptions'), 5);
    // "topic" replaces: the connection holds exactly ehr:api:7 now (its sub went with the replace).
    await sys.publisher.ready({ topic: 'ehr', timeoutMs: 10_000 });
    await sys.publisher.send('ehr', 'root broadcast reaches ehr:api:7 too');
    await sys.publisher.send('secret', 'never');
    await sys.publisher.send('ehr:apix', 'not for reader');
    await sys.publisher.send('ehr:api:7', 'end');
    await reader.waitFor((m) => m.includes('"end"'));
    assert.deepEqual(reader.bodies(), [encodeBody('ehr', 'root broadcast reaches ehr:api:7 too'), encodeBody('ehr:api:7', 'end')]);
  });

  test('a refresh that narrows drops the subscriptions outside the new grants; messages stop', async () => {
    const client = await connect(await mint({ sub: 'narrow', topics: ['alpha', 'beta'] }));
    await client.subscribe('alpha:1', 'beta:1');
    await sys.publisher.ready({ topic: 'alpha', timeoutMs: 10_000 });
    await sys.publisher.ready({ topic: 'beta', timeoutMs: 10_000 });
    await sys.publisher.send('beta:1', 'beta before');
    await sys.publisher.send('alpha:1', 'alpha before');
    await client.waitFor((m) => m.includes('alpha before'));

    const before = await sys.gateway.stats();
    const reply = await client.request({ event: 'refresh', token: await mint({ sub: 'narrow', topics: ['alpha'] }) });
    assert.equal(reply.event, 'ack');
    assert.equal((await client.request({ event: 'subscribe', topics: ['beta:2'] })).code, 'ERR_FORBIDDEN');
    const after = await sys.gateway.stats();
    assert.equal(sum(after, 'tokenRefreshes') - sum(before, 'tokenRefreshes'), 1);
    // narrow + alpha:1 + beta:1 -> narrow + alpha:1
    assert.equal(sum(before, 'subscriptions') - sum(after, 'subscriptions'), 1);

    await sys.publisher.send('beta:1', 'beta after');
    await sys.publisher.send('alpha:1', 'alpha after');
    await client.waitFor((m) => m.includes('alpha after'));
    assert.deepEqual(client.bodies(), [
      encodeBody('beta:1', 'beta before'),
      encodeBody('alpha:1', 'alpha before'),
      encodeBody('alpha:1', 'alpha after'),
    ]);

    // Widening works the same way, and a frame sent right behind the refresh already sees it.
    client.send({ event: 'refresh', token: await mint({ sub: 'narrow', topics: ['alpha', 'gamma'] }) });
    assert.equal((await client.request({ event: 'subscribe', topics: ['gamma'] })).event, 'ack');
  });

  test('a refresh with a bad token or another identity is refused and changes nothing', async () => {
    const client = await connect(await mint({ sub: 'same', topics: ['t'] }));
    const before = await sys.gateway.stats();
    for (const token of [
      await mint({ sub: 'someone-else', topics: ['t', 'everything'] }),
      await mint({ sub: 'same', topics: ['everything'] }, { secret: 'another-secret-0123456789-abcdefghijkl' }),
      await mint({ sub: 'same', exp: now() - 60 }),
      new UnsecuredJWT({ sub: 'same', topics: ['everything'], exp: now() + 300 }).encode(),
    ]) {
      const reply = await client.request({ event: 'refresh', token });
      assert.equal(reply.event, 'error');
      assert.equal(reply.code, 'ERR_UNAUTHORIZED');
      assert.equal(reply.message, 'token refused');
    }
    assert.equal((await client.request({ event: 'refresh' })).code, 'ERR_BAD_REQUEST');
    assert.equal((await client.request({ event: 'subscribe', topics: ['everything'] })).code, 'ERR_FORBIDDEN');
    assert.equal((await client.request({ event: 'subscribe', topics: ['t:1'] })).event, 'ack');
    const after = await sys.gateway.stats();
    assert.equal(sum(after, 'tokenRefreshFailures') - sum(before, 'tokenRefreshFailures'), 4);
  });

  test('a token that expires closes the connection with 1008 unless refreshed', async () => {
    const exp = now() + 2;
    const lapsing = await connect(await mint({ sub: 'lapsing', exp }));
    const refreshed = await connect(await mint({ sub: 'refreshed', exp }));
    assert.equal((await refreshed.request({ event: 'refresh', token: await mint({ sub: 'refreshed', exp: now() + 300 }) })).event, 'ack');
    const before = await sys.gateway.stats();
    assert.equal(await lapsing.closed, 1008);
    assert.equal(lapsing.closeReason, 'token expired');
    // The lapsing client's close proves the original expiry has passed: the refreshed one is still served.
    assert.equal((await refreshed.request({ event: 'ping' })).event, 'pong');
    assert.equal(refreshed.closeCode, null);
    const after = await sys.gateway.stats();
    assert.equal(sum(after, 'tokenExpiredCloses') - sum(before, 'tokenExpiredCloses'), 1);
  });
});

describe('security: token authentication with a public key (ES256)', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tormq-auth-'));
    writeFileSync(join(dir, 'public.pem'), publicPem);
    mpc = await startMpcProcess();
    gateway = await startGatewayProcess(mpc.gatewayPort, ['--auth-public-key', join(dir, 'public.pem')]);
  });

  after(async () => {
    await gateway?.stop();
    await mpc?.stop();
  });

  test('an ES256 token connects; HS256 (even keyed with the public key) and alg none do not', async () => {
    const es256 = await new SignJWT({ sub: 'u', topics: ['a'] }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('5m')
      .sign(await importPKCS8(privatePem, 'ES256'));
    const client = await TestClient.connect(gateway.url, { headers: { authorization: `Bearer ${es256}` } });
    assert.equal((await client.request({ event: 'subscribe', topics: ['a:1'] })).event, 'ack');
    assert.equal((await client.request({ event: 'subscribe', topics: ['b'] })).code, 'ERR_FORBIDDEN');
    await client.close();

    const confused = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m')
      .sign(new TextEncoder().encode(publicPem));
    assert.equal((await refusedUpgrade(gateway.url, { headers: { authorization: `Bearer ${confused}` } })).status, 401);
    const hs = await mint({ sub: 'u' });
    assert.equal((await refusedUpgrade(gateway.url, { protocols: ['tormq', `bearer.${hs}`] })).status, 401);
    const none = new UnsecuredJWT({ sub: 'u', exp: now() + 300 }).encode();
    assert.equal((await refusedUpgrade(`${gateway.url}?token=${none}`)).status, 401);
  });
});

describe('security: configuration errors exit with 2', () => {
  test('a short secret, a secret plus a public key, a bad origin', async () => {
    for (const [args, pattern] of [
      [['--auth-secret', 'short'], /--auth-secret must be/],
      [['--auth-secret', SECRET, '--allowed-origins', 'app.example.com'], /--allowed-origins must be/],
      [['--auth-subscribe-sub'], /--auth-subscribe-sub must be false unless --auth-secret or --auth-public-key is set/],
      [['--auth-public-key', '/nonexistent/key.pem'], /--auth-public-key: cannot read/],
    ] as const) {
      const cli = startCli('gateway', ['-p', '0', '--admin-port=-1', '--workers', '1', ...args]);
      assert.equal(await cli.exited, 2, args.join(' '));
      assert.match(cli.stderr.join('\n'), pattern);
      assert.doesNotMatch(cli.stderr.join('\n'), /short/, 'the secret is not echoed');
    }
  });
});
