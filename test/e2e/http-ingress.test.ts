/**
 * HTTP publishing on the real MPC process (`tormq-mpc --http 0`): what the clients of a real gateway
 * receive is byte for byte what the Node SDK sends; bad input, oversized bodies and a missing bearer
 * token are refused with clear JSON errors and publish nothing; a body dripped one byte per TCP segment
 * costs about its size.
 */
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Publisher, encodeBody } from '../../src/index.js';
import { once, postJson, startCli, startGatewayProcess, startMpcProcess, waitHttpReady, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { rssBytes } from '../helpers/probes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

describe('HTTP ingress: POST /publish', () => {
  const sys = useSystem({ mpcArgs: ['--http', '0', '--http-max-body', '4096'] });
  const connect = async (...topics: string[]) => {
    const client = await sys.connect();
    if (topics.length > 0) await client.subscribe(...topics);
    return client;
  };

  test('one message and an array: 202 with the count, delivered in order, bytes identical to the SDK', async () => {
    const client = await connect('web:a', 'web:0', 'web:1', 'web:2');
    await waitHttpReady(sys.mpc, 'web');
    const sdk = new Publisher('127.0.0.1', sys.mpc.publisherPort);
    try {
      await sdk.ready({ topic: 'web', timeoutMs: 10_000 });
      const data = { text: 'héllo ✓ 日本語 🚀', n: [1, 2.5, null], nested: { ok: true } };
      assert.deepEqual(await postJson(sys.mpc, '/publish', { topic: 'web:a', data }), { status: 202, body: { accepted: 1 } });
      await client.waitFor((m) => m.startsWith('{"topic": "web:a"'));
      await sdk.send('web:a', data);
      await client.waitForCount(3); // ack, HTTP message, SDK message
      const [fromHttp, fromSdk] = client.bodies();
      assert.equal(fromHttp, fromSdk, 'HTTP and SDK bodies are the same bytes');
      assert.equal(fromHttp, encodeBody('web:a', data));

      const batch = Array.from({ length: 50 }, (_, i) => ({ topic: `web:${i % 3}`, data: `m${i}` }));
      assert.deepEqual(await postJson(sys.mpc, '/publish', batch), { status: 202, body: { accepted: 50 } });
      await client.waitForCount(3 + 50);
      assert.deepEqual(client.bodies().slice(2), batch.map((m) => encodeBody(m.topic, m.data)));
    } finally {
      await sdk.close();
    }
  });

  test('bad input: 400 with a JSON error, and nothing is published', async () => {
    const client = await connect('bad');
    await waitHttpReady(sys.mpc, 'bad');
    const cases: Array<[unknown, RegExp]> = [
      ['{"topic": "bad", "data": ', /not valid JSON/],
      [{ data: 1 }, /needs a "topic"/],
      [{ topic: 'bad::x', data: 1 }, /empty segments/],
      [{ topic: 7, data: 1 }, /topic must be a string/],
      [{ topic: 'bad' }, /needs a "data"/],
      [[], /empty array/],
      ['"just a string"', /must be an object/],
      // One bad item rejects the whole array: nothing of it is published.
      [[{ topic: 'bad', data: 'first' }, { topic: '', data: 'second' }], /body\[1\]: topic must not be empty/],
    ];
    for (const [body, pattern] of cases) {
      const reply = await postJson(sys.mpc, '/publish', body);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.match(String(reply.body.error), pattern);
    }
    assert.deepEqual(await postJson(sys.mpc, '/publish', { topic: 'bad', data: 'the only one' }), { status: 202, body: { accepted: 1 } });
    await client.waitFor((m) => m.includes('the only one'));
    assert.deepEqual(client.bodies(), [encodeBody('bad', 'the only one')]);
  });

  test('bodies over --http-max-body get 413; wrong paths and methods 404 and 405', async () => {
    const big = await postJson(sys.mpc, '/publish', { topic: 'big', data: 'x'.repeat(5000) });
    assert.equal(big.status, 413);
    assert.match(String(big.body.error), /larger than 4096 bytes/);
    // Sent without a content-length (chunked), the limit still holds.
    const chunked = await sys.mpc.http('/publish', {
      method: 'POST',
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1000)));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 413);
    await chunked.body?.cancel();
    const missing = await sys.mpc.http('/nope', { method: 'POST', body: '{}' });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const wrongMethod = await sys.mpc.http('/publish');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    await wrongMethod.body?.cancel();
  });

  test('GET /ready answers once the MPC takes messages (it takes every topic, for history)', async () => {
    const ready = await sys.mpc.http('/ready?topic=later:x&timeout_ms=5000');
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { topic: 'later:x', ready: true });
    const bad = await sys.mpc.http('/ready?topic=a::b');
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    const health = await sys.mpc.http('/healthz');
    const counters = (await health.json()) as { status: string; accepted: number; rejected: number };
    assert.equal(counters.status, 'ok');
    assert.ok(counters.accepted >= 52 && counters.rejected >= 10, JSON.stringify(counters));
  });
});

describe('hostile input: deeply nested data under --http-max-body (issue 10, item 7)', () => {
  const sys = useSystem({ mpcArgs: ['--http', '0'] });
  const nested = (depth: number) => '['.repeat(depth) + '"core"' + ']'.repeat(depth);

  test('400 with a clear error (not 503 + retry-after), nothing published; depth 100 passes; the ingress keeps serving', async () => {
    const client = await sys.connect();
    await client.subscribe('nest');
    await waitHttpReady(sys.mpc, 'nest');
    const healthBefore = (await (await sys.mpc.http('/healthz')).json()) as { rejected: number };
    // 400,000 levels (800 KB, under the 1 MiB limit): the encoder used to overflow its stack and the
    // request got 503 ERR_PUBLISHER_QUEUE_FULL with retry-after, so clients retried it forever. 3,000
    // levels is where encoding first failed on Node 20.
    for (const depth of [400_000, 3_000, 101]) {
      for (const [path, body] of [
        ['/publish', `{"topic": "nest", "data": ${nested(depth)}}`],
        ['/publish', `[{"topic": "nest", "data": 1}, {"topic": "nest", "data": ${nested(depth)}}]`],
        ['/push', `{"from": "f", "to": ["nest"], "content": ${nested(depth - 1)}}`],
      ] as const) {
        assert.ok(Buffer.byteLength(body) < 1_048_576);
        const res = await sys.mpc.http(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        assert.equal(res.status, 400, `${path} depth ${depth}`);
        assert.equal(res.headers.get('retry-after'), null);
        const error = String(((await res.json()) as { error: string }).error);
        assert.match(error, path === '/push' ? /^content must not nest arrays and objects deeper than 99 levels$/ : /data must not nest arrays and objects deeper than 100 levels$/);
      }
    }
    const healthAfter = (await (await sys.mpc.http('/healthz')).json()) as { rejected: number };
    assert.equal(healthAfter.rejected - healthBefore.rejected, 9, 'every refusal counted');
    // At the limit it is published, byte for byte as the SDK would.
    assert.deepEqual(await postJson(sys.mpc, '/publish', `{"topic": "nest", "data": ${nested(100)}}`), { status: 202, body: { accepted: 1 } });
    assert.deepEqual(await postJson(sys.mpc, '/publish', { topic: 'nest', data: 'after' }), { status: 202, body: { accepted: 1 } });
    await client.waitFor((m) => m.includes('"after"'));
    assert.deepEqual(client.bodies(), [`{"topic": "nest", "data": ${nested(100)}}`, encodeBody('nest', 'after')], 'nothing of the refused requests');
    assert.equal(client.closeCode, null);
  });
});

describe('HTTP ingress with --http-token', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let client: TestClient | undefined;

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--http', '0', '--http-token', 's3cret-token']);
    gateway = await startGatewayProcess(mpc.gatewayPort);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('401 without the bearer token or with a wrong one; 202 with it', async () => {
    client = await TestClient.connect(gateway.url);
    await client.subscribe('secure');
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong' }, { authorization: 's3cret-token' }, { authorization: 'Bearer s3cret-token-longer' }]) {
      const reply = await postJson(mpc, '/publish', { topic: 'secure', data: 'no' }, headers);
      assert.equal(reply.status, 401, JSON.stringify(headers));
      assert.match(String(reply.body.error), /bearer token/);
    }
    const unauthorisedReady = await mpc.http('/ready?topic=secure');
    assert.equal(unauthorisedReady.status, 401);
    assert.equal(unauthorisedReady.headers.get('www-authenticate'), 'Bearer');
    await unauthorisedReady.body?.cancel();

    const auth = { authorization: 'Bearer s3cret-token' };
    const ready = await mpc.http('/ready?topic=secure&timeout_ms=15000', { headers: auth });
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    assert.deepEqual(await postJson(mpc, '/publish', { topic: 'secure', data: 'yes' }, auth), { status: 202, body: { accepted: 1 } });
    await client.waitFor((m) => m.includes('"yes"'));
    assert.deepEqual(client.bodies(), [encodeBody('secure', 'yes')]);
  });

  test('a bad --http flag is a usage error (exit 2)', async () => {
    const bad = startCli('mpc', ['-s', '0', '-p', '0', '--http', 'eighty']);
    await once(bad.child, 'close');
    assert.equal(bad.child.exitCode, 2);
    assert.match(bad.stderr.join('\n'), /--http must be an integer from 0 to 65535, got "eighty"/);
  });
});

describe('HTTP ingress: a body dripped one byte per TCP segment', () => {
  const sys = useSystem({ mpcArgs: ['--http', '0'] }); // --http-max-body at its default, 1 MB
  const mpcRss = () => rssBytes(sys.mpc.child.pid!);

  test('costs the MPC about its size, not a Buffer per byte, and is published whole', async (t) => {
    const client = await sys.connect();
    await client.subscribe('drip:x');
    await waitHttpReady(sys.mpc, 'drip');
    // 200 KB of leading whitespace (valid JSON) before the message.
    const body = Buffer.from(' '.repeat(200_000) + JSON.stringify({ topic: 'drip:x', data: 'dripped' }));
    const socket = net.connect(sys.mpc.httpPort!, '127.0.0.1');
    socket.setNoDelay(true);
    let reply = '';
    socket.on('data', (chunk: Buffer) => (reply += chunk.toString('latin1')));
    await once(socket, 'connect');
    const rssBefore = mpcRss();
    socket.write(`POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    for (let i = 0; i < body.length; i++) {
      socket.write(body.subarray(i, i + 1));
      if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 1)); // separate segments, read one by one
    }
    await client.waitFor((m) => m.includes('"dripped"'));
    assert.match(reply, /^HTTP\/1\.1 202/);
    // Held as a list of the reads, 200 KB dripped grew the MPC's RSS by 51–57 MB (≈ 270 bytes per byte);
    // in one buffer that doubles, by 6–7 MB in all.
    const grown = mpcRss() - rssBefore;
    t.diagnostic(`the MPC's RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
    assert.ok(grown < 20 * 1024 * 1024, `the MPC's RSS grew by ${(grown / 1048576).toFixed(1)} MB for a 200 KB body`);
    socket.destroy();
  });
});
