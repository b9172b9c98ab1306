/**
 * gopusher compatibility with real processes: clients `join` a card (optionally narrowed by app),
 * `POST /push` on the MPC's HTTP ingress reaches every connection of each card (or only the app's),
 * and `GET /online` on the gateway's admin port counts a card's connections across its workers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBody } from '../../src/index.js';
import { postJson, waitHttpReady } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

describe('gopusher: join, POST /push, GET /online', () => {
  const sys = useSystem({ mpcArgs: ['--http', '0'] });

  /** Connects and joins, waiting for the ack (a join with an id is acknowledged like a subscribe). */
  const join = async (data: Record<string, unknown>) => {
    const client = await sys.connect();
    const reply = await client.request({ event: 'join', data });
    assert.deepEqual(reply, { event: 'ack', id: 1 });
    return client;
  };
  const online = async (query: string) => {
    const res = await sys.gateway.admin(`/online?${query}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  test('a push reaches every connection of each card; app_id narrows to that app', async () => {
    const aliceAnyApp = await join({ card_id: 'alice' });
    const aliceChat = await join({ card_id: 'alice', app_id: 'chat' });
    const aliceMail = await join({ app_id: 'mail', card_id: 'alice' });
    const bob = await join({ card_id: 'bob', app_id: 'chat' });
    const carol = await join({ card_id: 'carol' });
    await waitHttpReady(sys.mpc, 'alice');
    await waitHttpReady(sys.mpc, 'bob');

    const content = { text: 'héllo ✓', n: 1 };
    assert.deepEqual(await postJson(sys.mpc, '/push', { from: 'system', to: ['alice', 'bob', 'alice'], content }), { status: 200, body: { message: 'ok' } });
    assert.deepEqual(await postJson(sys.mpc, '/push', { from: 'bot', to: ['alice'], content: 'chat only', appID: 'chat' }), { status: 200, body: { message: 'ok' } });
    // A final push to everyone marks the end of the sequence for each client.
    assert.deepEqual(await postJson(sys.mpc, '/push', { from: 'end', to: ['alice', 'bob'], content: 'end' }), { status: 200, body: { message: 'ok' } });
    await Promise.all([aliceAnyApp, aliceChat, aliceMail, bob].map((c) => c.waitFor((m) => m.includes('"from": "end"') || m.includes('"from":"end"'))));

    const toAlice = encodeBody('alice', { from: 'system', content });
    const endAlice = encodeBody('alice', { from: 'end', content: 'end' });
    assert.equal(toAlice, '{"topic": "alice", "data": {"from":"system","content":{"text":"héllo ✓","n":1}}}');
    assert.deepEqual(aliceAnyApp.bodies(), [toAlice, endAlice]);
    assert.deepEqual(aliceChat.bodies(), [toAlice, encodeBody('alice:chat', { from: 'bot', content: 'chat only' }), endAlice]);
    assert.deepEqual(aliceMail.bodies(), [toAlice, endAlice]);
    assert.deepEqual(bob.bodies(), [encodeBody('bob', { from: 'system', content }), encodeBody('bob', { from: 'end', content: 'end' })]);
    assert.deepEqual(carol.bodies(), []);
  });

  test('GET /online counts a card\'s connections on this sys.gateway, over all workers', async () => {
    // Enough connections that both workers hold some of dave's (the kernel spreads accepts).
    const daves = await Promise.all(Array.from({ length: 12 }, (_, i) => join(i % 2 === 0 ? { card_id: 'dave' } : { card_id: 'dave', app_id: 'chat' })));
    const stats = await sys.gateway.stats();
    assert.ok(stats.workers.every((w) => w.connections > 0), 'connections on both workers');
    assert.deepEqual(await online('card_id=dave'), { status: 200, body: { card_id: 'dave', online: true, connections: 12 } });
    assert.deepEqual(await online('card_id=dave&app_id=chat'), { status: 200, body: { card_id: 'dave', app_id: 'chat', online: true, connections: 6 } });
    assert.deepEqual(await online('card_id=nobody'), { status: 200, body: { card_id: 'nobody', online: false, connections: 0 } });

    // Leaving (unsubscribe, acknowledged) is counted at once.
    const leaving = daves[1]!;
    assert.equal((await leaving.request({ event: 'unsubscribe' })).event, 'ack');
    assert.equal((await online('card_id=dave')).body.connections, 11);
    assert.equal((await online('card_id=dave&app_id=chat')).body.connections, 5);

    assert.equal((await online('')).status, 400);
    const bad = await online('card_id=a:b');
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.error), /card_id must not contain ":"/);
  });

  test('bad joins and bad pushes are refused with clear errors', async () => {
    const client = await TestClient.connect(sys.gateway.url);
    sys.clients.push(client);
    const cases: Array<[unknown, string, RegExp]> = [
      [undefined, 'ERR_BAD_REQUEST', /join needs "data"/],
      [{ app_id: 'x' }, 'ERR_INVALID_TOPIC', /card_id must be a string/],
      [{ card_id: 'a:b' }, 'ERR_INVALID_TOPIC', /card_id must not contain ":"/],
      [{ card_id: '' }, 'ERR_INVALID_TOPIC', /card_id: must not be empty/],
      [{ card_id: 'ok', app_id: 'x:y' }, 'ERR_INVALID_TOPIC', /app_id must not contain ":"/],
    ];
    for (const [data, code, message] of cases) {
      const reply = await client.request({ event: 'join', data });
      assert.equal(reply.event, 'error', JSON.stringify(data));
      assert.equal(reply.code, code);
      assert.match(String(reply.message), message);
    }

    const pushes: Array<[unknown, RegExp]> = [
      [{ from: 7, to: ['a'], content: 1 }, /from must be a string/],
      [{ from: 'f', to: ['a'], content: 1, appID: 'x', app_id: 'y' }, /appID and app_id differ/],
      [{ from: 'f', to: 'a', content: 1 }, /to must be a non-empty array/],
      [{ from: 'f', to: [], content: 1 }, /to must be a non-empty array/],
      [{ from: 'f', to: ['a'] }, /content is required/],
      [{ from: 'f', to: ['a', 'b:c'], content: 1 }, /to\[1\]: card_id must not contain ":"/],
      [{ from: 'f', to: ['a'], content: 1, app_id: 'x:y' }, /app_id must not contain ":"/],
    ];
    for (const [body, message] of pushes) {
      const reply = await postJson(sys.mpc, '/push', body);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.match(String(reply.body.error), message);
    }
  });
});
