/**
 * End to end with real processes: tormq-mpc and tormq-gateway --workers 2, the tormq SDK and a
 * Python publisher doing exactly what the original SDK does, and real WebSocket clients.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBody } from '../../src/index.js';
import { publishFromPython } from '../helpers/python-publisher.js';
import { until } from '../helpers/probes.js';
import { useSystem } from '../helpers/system.js';

describe('tormq end to end (MPC + gateway with 2 workers)', () => {
  const sys = useSystem();
  const connect = () => sys.connect();

  test('delivers by the original prefix semantics, at most once per connection, bytes exact', async () => {
    const onEhr = await connect();
    const onApi = await connect();
    const onApi1 = await connect();
    const onEhrx = await connect();
    const onBoth = await connect();
    await onEhr.subscribe('ehr');
    await onApi.subscribe('ehr:api');
    await onApi1.subscribe('ehr:api:1');
    await onEhrx.subscribe('ehrx');
    await onBoth.subscribe('ehr:api', 'ehr:api:1');
    await sys.publisher.ready({ topic: 'ehr', timeoutMs: 5000 });
    await sys.publisher.ready({ topic: 'ehrx', timeoutMs: 5000 });

    await sys.publisher.send('ehr', 'to the root');
    await sys.publisher.send('ehr:api:1', { deep: true });
    await sys.publisher.send('ehrx', 'not under ehr');
    await sys.publisher.send('ehr:api', 'héllo wörld ✓ 日本語 🚀');
    // A final marker for everyone lets us assert on the complete, ordered sequence.
    await sys.publisher.send('ehr', 'end');
    await sys.publisher.send('ehrx', 'end');

    const ends = [onEhr, onApi, onApi1, onEhrx, onBoth].map((c) => c.waitFor((m) => m.includes('"end"')));
    await Promise.all(ends);

    const body = (topic: string, data: unknown) => encodeBody(topic, data);
    assert.deepEqual(onEhr.bodies(), [body('ehr', 'to the root'), body('ehr', 'end')]);
    assert.deepEqual(onApi.bodies(), [body('ehr', 'to the root'), body('ehr:api', 'héllo wörld ✓ 日本語 🚀'), body('ehr', 'end')]);
    // ehr:api:1 lies under both ehr and ehr:api, so it gets messages published on either.
    assert.deepEqual(onApi1.bodies(), [
      body('ehr', 'to the root'),
      body('ehr:api:1', { deep: true }),
      body('ehr:api', 'héllo wörld ✓ 日本語 🚀'),
      body('ehr', 'end'),
    ]);
    assert.deepEqual(onEhrx.bodies(), [body('ehrx', 'not under ehr'), body('ehrx', 'end')]);
    // Two matching subscriptions, each message once.
    assert.deepEqual(onBoth.bodies(), [
      body('ehr', 'to the root'),
      body('ehr:api:1', { deep: true }),
      body('ehr:api', 'héllo wörld ✓ 日本語 🚀'),
      body('ehr', 'end'),
    ]);
    assert.equal(body('ehr:api', 'héllo wörld ✓ 日本語 🚀'), '{"topic": "ehr:api", "data": "héllo wörld ✓ 日本語 🚀"}');
  });

  test('connections are spread over both workers', async () => {
    const many = await Promise.all(Array.from({ length: 16 }, () => connect()));
    const stats = await sys.gateway.stats();
    assert.equal(stats.workers.length, 2);
    assert.ok(stats.connections >= many.length, `connections ${stats.connections}`);
    for (const worker of stats.workers) assert.ok(worker.connections > 0, `worker ${worker.index} has no connections: ${JSON.stringify(stats.workers)}`);
    await Promise.all(many.map((c) => c.close()));
  });

  test('a Python publisher (the original SDK wire format) is delivered byte for byte', async () => {
    const probe = await connect();
    await probe.subscribe('pyprobe');
    const reader = await connect();
    await reader.subscribe('py:data:1'); // under py:data, so it gets messages on both
    const messages = [
      { topic: 'py:data', data: 'hello' },
      { topic: 'py:data:1', data: { nested: [1, 2, { x: 'ünïcødé ✓' }], n: 1.5 } },
      { topic: 'py:data', data: '日本語 🚀' },
    ];
    const result = await publishFromPython(sys.mpc.publisherPort, 'pyprobe', probe, messages);
    assert.equal(result.sent, 3);
    await reader.waitForCount(4); // the subscribe ack, then three bodies
    // Python's json.dumps(..., ensure_ascii=False): ", " and ": " separators everywhere.
    assert.deepEqual(reader.bodies(), [
      '{"topic": "py:data", "data": "hello"}',
      '{"topic": "py:data:1", "data": {"nested": [1, 2, {"x": "ünïcødé ✓"}], "n": 1.5}}',
      '{"topic": "py:data", "data": "日本語 🚀"}',
    ]);
  });

  test('roots without subscribers never reach the gateway', async () => {
    const client = await connect();
    await client.subscribe('marker');
    await sys.publisher.ready({ topic: 'marker', timeoutMs: 5000 });
    const before = (await sys.gateway.stats()).messagesIn;
    for (let i = 0; i < 50; i++) await sys.publisher.send(`nobody:${i}`, i);
    await sys.publisher.send('marker', 'after');
    await client.waitFor((m) => m.includes('"after"'));
    const stats = await sys.gateway.stats();
    assert.equal(stats.messagesIn - before, 1, 'only the marker crossed the MPC');
    assert.ok(!stats.topics.includes('nobody'));
  });

  test('an ack means the MPC confirmed the subscription: a message published right after it arrives, on its exact topic only', async () => {
    const short = await connect();
    await short.subscribe('ab');
    const long = await connect();
    await long.subscribe('abc:1');
    // The MPC takes every message (it keeps history): ready() means connected to it.
    await sys.publisher.ready({ timeoutMs: 5000 });
    await sys.publisher.send('abc:1', 'right away');
    await sys.publisher.send('ab', 'to ab');
    await long.waitFor((m) => m.includes('"right away"'));
    await short.waitFor((m) => m.includes('"to ab"'));
    // "abc" starts with "ab", but topics are matched by segments, upstream too: "ab" never gets it.
    assert.deepEqual(short.bodies(), [encodeBody('ab', 'to ab')]);
    assert.deepEqual(long.bodies(), [encodeBody('abc:1', 'right away')]);
    const stats = await sys.gateway.stats();
    for (const topic of ['ab', 'abc', 'abc:1']) assert.ok(stats.topics.includes(topic), `${topic} subscribed upstream`);
  });

  test('replace, add and unsubscribe follow the protocol table', async () => {
    const client = await connect();
    assert.deepEqual(await client.request({ event: 'subscribe', topics: ['t1', 't2'] }), { event: 'ack', id: 1 });
    assert.equal((await client.request({ event: 'subscribe', topic: 't3' })).event, 'ack'); // replaces t1, t2
    assert.equal((await client.request({ event: 'subscribe', topics: ['t4'] })).event, 'ack'); // adds
    assert.equal((await client.request({ event: 'unsubscribe', topic: 't4' })).event, 'ack');
    await sys.publisher.ready({ topic: 't3', timeoutMs: 5000 });
    for (const t of ['t1', 't2', 't4', 't3']) await sys.publisher.send(t, t);
    await client.waitFor((m) => m.includes('"data": "t3"'));
    assert.deepEqual(client.bodies(), [encodeBody('t3', 't3')]);

    assert.equal((await client.request({ event: 'unsubscribe' })).event, 'ack'); // drops all
    // The worker reports the root change to the main thread by postMessage, unordered with /stats.
    await until('the last subscriber left: the root is no longer routed', async () => !(await sys.gateway.stats()).topics.includes('t3'));
  });

  test('ping, ids, and bad frames: answered only when they carry an id', async () => {
    const client = await connect();
    client.send({ event: 'ping' });
    await client.waitFor((m) => m === '{"event":"pong"}');
    client.send('not json');
    client.send('[1,2]');
    client.send({ event: 'dance' });
    client.send({ event: 'subscribe', topic: 'a::b' });
    const error = await client.request({ event: 'subscribe', topic: 'bad::topic' });
    assert.equal(error.event, 'error');
    assert.equal(error.code, 'ERR_INVALID_TOPIC');
    assert.equal((await client.request({ event: 'fly' })).code, 'ERR_UNKNOWN_EVENT');
    // Nothing came back for the four id-less bad frames: only pong and the two errors.
    assert.equal(client.messages.length, 3, JSON.stringify(client.messages));
    const stats = await sys.gateway.stats();
    assert.ok(stats.workers.reduce((n, w) => n + w.badFrames, 0) >= 6);
  });

  test('admin: /healthz, /metrics, /stats', async () => {
    const health = await sys.gateway.admin('/healthz');
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, 'ok');
    const metrics = await (await sys.gateway.admin('/metrics')).text();
    assert.match(metrics, /^tormq_messages_in_total \d+/m);
    assert.match(metrics, /^tormq_connections\{worker="0"\} \d+/m);
    assert.match(metrics, /^tormq_delivery_latency_seconds_bucket\{worker="1",le="\+Inf"\} \d+/m);
    const stats = await sys.gateway.stats();
    assert.equal(typeof stats.connections, 'number');
    assert.ok(stats.messagesIn > 0);
    assert.equal(stats.workers.length, 2);
    assert.equal((await sys.gateway.admin('/nope')).status, 404);
  });
});
