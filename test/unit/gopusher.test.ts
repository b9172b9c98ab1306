/** gopusher's wire: frames byte for byte, push validation, grpc-gateway JSON, the service over a presence table. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, TormqError } from '../../src/errors.js';
import { errorBody, httpStatusOf, INT64_FIELDS, marshalReply } from '../../src/gopusher/gateway-json.js';
import { buildPush, checkCardId, GopusherError, GopusherService, GrpcStatus, type GopusherLimits } from '../../src/gopusher/service.js';
import { loadRpcService, startGrpcIngress } from '../../src/ingress/grpc-ingress.js';
import { PresenceTable } from '../../src/mpc/presence.js';
import { GOPUSHER_OK_FRAME, goJson, gopusherPushText, MAX_PAYLOAD_DEPTH } from '../../src/protocol/gopusher-frames.js';
import { encodeBody } from '../../src/sdk/publisher.js';

describe('gopusher frames', () => {
  test('join and ping are answered as gorilla WriteJSON writes ServerMsg{1, "ok"}: with the newline', () => {
    assert.equal(GOPUSHER_OK_FRAME, '{"type":1,"data":"ok"}\n');
  });

  test('a push arrives as {"type":1,"data":<content>} with Go\'s HTML-safe escaping', () => {
    const body = encodeBody('card', { from: 'f', content: 'héllo <b> & "q"\u2028\n' });
    assert.equal(gopusherPushText(body), '{"type":1,"data":"héllo \\u003cb\\u003e \\u0026 \\"q\\"\\u2028\\n"}\n');
    assert.equal(JSON.parse(gopusherPushText(body)).data, 'héllo <b> & "q"\u2028\n');
  });

  test('non-string content (tormq\'s HTTP extension) is sent as that JSON value; other messages on the card send their data', () => {
    assert.equal(gopusherPushText(encodeBody('c', { from: 'f', content: { a: ['<x>', 1] } })), '{"type":1,"data":{"a":["\\u003cx\\u003e",1]}}\n');
    assert.equal(gopusherPushText(encodeBody('c', { from: 'f', content: null })), '{"type":1,"data":""}\n');
    assert.equal(gopusherPushText('{"topic": "c", "data": "plain"}'), '{"type":1,"data":"plain"}\n');
    assert.equal(gopusherPushText('{"topic": "c", "data": {"n": 1}}'), '{"type":1,"data":{"n":1}}\n');
    assert.equal(gopusherPushText('{"topic": "c"}'), '{"type":1,"data":""}\n');
    assert.equal(goJson('a&b'), '"a\\u0026b"');
  });

  test('data nested too deep to re-encode (a publisher\'s, any depth passes the MPC) is sent as the body\'s text, never a crash', () => {
    const deep = `{"topic": "c", "data": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    assert.equal(JSON.parse(gopusherPushText(deep)).data, deep);
    const atLimit = `{"topic": "c", "data": ${'['.repeat(MAX_PAYLOAD_DEPTH)}${']'.repeat(MAX_PAYLOAD_DEPTH)}}`;
    assert.equal(gopusherPushText(atLimit), `{"type":1,"data":${'['.repeat(MAX_PAYLOAD_DEPTH)}${']'.repeat(MAX_PAYLOAD_DEPTH)}}\n`);
  });
});

describe('buildPush: one check for gRPC and HTTP', () => {
  const limits: GopusherLimits = { maxCardsPerPush: 3, maxMessageBytes: 200, maxTopicLength: 32, maxContentDepth: 2 };

  test('one message per distinct card, on C or C:appID, body {"topic", "data": {"from", "content"}}', () => {
    assert.deepEqual(buildPush({ from: 'f', to: ['c1', 'c2', 'c1'], content: 'x' }, limits).map((m) => [m.topic, m.root, m.body]), [
      ['c1', 'c1', encodeBody('c1', { from: 'f', content: 'x' })],
      ['c2', 'c2', encodeBody('c2', { from: 'f', content: 'x' })],
    ]);
    assert.deepEqual(buildPush({ to: ['c'], appID: 'chat' }, limits).map((m) => [m.topic, m.root, m.body]), [
      ['c:chat', 'c', encodeBody('c:chat', { from: '', content: '' })],
    ]);
    assert.deepEqual(buildPush({ to: ['c'], appID: '', content: 'y' }, limits).map((m) => m.topic), ['c'], 'appID "" is no app');
  });

  test('every bad request fails with INVALID_ARGUMENT and a message', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ to: [] }, 'to must name at least one card id'],
      [{}, 'to must name at least one card id'],
      [{ to: 'a' }, 'to must be a list of card ids'],
      [{ to: ['a', 'b', 'c', 'd'] }, 'to may name at most 3 card ids'],
      [{ to: ['a', ''] }, 'to[1]: must not be empty'],
      [{ to: ['a:b'] }, 'to[0] must not contain ":"'],
      [{ to: ['a\u0001'] }, 'to[0]: must not contain control characters'],
      [{ to: [5] }, 'to[0] must be a string'],
      [{ to: ['a'], appID: 'x:y' }, 'appID must not contain ":"'],
      [{ to: ['a'], appID: 7 }, 'appID must be a string'],
      [{ to: ['a'], from: 7 }, 'from must be a string'],
      [{ to: ['c'.repeat(20)], appID: 'a'.repeat(20) }, 'to[0]: card id and appID together must be at most 32 characters'],
      [{ to: ['c'], content: 'x'.repeat(200) }, 'the message to c would be 248 bytes, over the MPC\'s limit of 200'],
      [{ to: ['c'], content: [[[1]]] }, 'content must not nest arrays and objects deeper than 2 levels'],
    ];
    for (const [input, message] of cases) {
      assert.throws(() => buildPush(input, limits), (error: Error) => error instanceof GopusherError && error.status === GrpcStatus.INVALID_ARGUMENT && error.message === message, JSON.stringify(input));
    }
    assert.throws(() => checkCardId(''), { message: 'cardID: must not be empty' });
    assert.throws(() => checkCardId(undefined), { message: 'cardID: must not be empty' });
    assert.throws(() => checkCardId('a:b'), { message: 'cardID must not contain ":"' });
  });
});

describe('grpc-gateway v1 JSON', () => {
  test('replies: proto field names, int64 as strings, zero values left out', () => {
    assert.deepEqual(marshalReply({ code: 0, message: 'ok' }, INT64_FIELDS.PushReply), { message: 'ok' });
    assert.deepEqual(marshalReply({ cpuNum: 2, goroutineNum: 0, clientNum: 5, groupNum: 3 }, INT64_FIELDS.SystemReply), { cpuNum: '2', clientNum: '5', groupNum: '3' });
    assert.deepEqual(marshalReply({ clientNum: -1 }, INT64_FIELDS.GroupReply), { clientNum: '-1' });
    assert.deepEqual(marshalReply({ result: 'no' }), { result: 'no' });
  });

  test('errors: grpc-gateway\'s body and HTTP status', () => {
    assert.deepEqual(errorBody(GrpcStatus.INVALID_ARGUMENT, 'm'), { error: 'm', code: 3, message: 'm' });
    assert.deepEqual([GrpcStatus.OK, GrpcStatus.INVALID_ARGUMENT, GrpcStatus.UNAUTHENTICATED, GrpcStatus.RESOURCE_EXHAUSTED, GrpcStatus.UNIMPLEMENTED, GrpcStatus.UNAVAILABLE, GrpcStatus.INTERNAL].map(httpStatusOf), [200, 400, 401, 429, 501, 503, 500]);
  });
});

describe('GopusherService', () => {
  const presence = () => new PresenceTable({ maxEntries: 100, maxGateways: 10, maxCardLength: 64 }, () => {});
  const report = (table: PresenceTable, gw: string, seq: number, cards: Array<string | number>, clients = 0) =>
    table.report({ gw, seq, ttl: 3000, clients, workers: 2, kind: 'snapshot', part: 0, parts: 1, cards }, 0);

  test('push hands one message per card to the MPC and answers gopusher\'s reply; a bad one sends nothing', async () => {
    const sent: Array<[string, string]> = [];
    const service = new GopusherService({ send: async (root, body) => void sent.push([root, body]), presence: null });
    assert.deepEqual(await service.push({ from: 'f', to: ['a', 'b'], appID: 'x', content: 'hi' }), { code: 0, message: 'ok' });
    assert.deepEqual(sent.map(([root]) => root), ['a', 'b']);
    await assert.rejects(service.push({ to: ['a', 'b:c'] }), { status: GrpcStatus.INVALID_ARGUMENT, message: 'to[1] must not contain ":"' });
    assert.equal(sent.length, 2, 'nothing of a bad push is sent');
    assert.deepEqual([service.pushed, service.refused], [2, 1]);
  });

  test('a full publisher queue fails the push with UNAVAILABLE, saying how many went out', async () => {
    let room = 1;
    const service = new GopusherService({
      send: async () => {
        if (room-- <= 0) throw new TormqError(ErrorCodes.PUBLISHER_QUEUE_FULL, 'more than 1 sends are waiting');
      },
      presence: null,
    });
    await assert.rejects(service.push({ to: ['a', 'b'] }), (error: GopusherError) => error.status === GrpcStatus.UNAVAILABLE && error.message.startsWith('1 of 2 messages handed to the MPC'));
  });

  test('IsOnline, Group and System read the cluster\'s presence; without it they are UNIMPLEMENTED', () => {
    const table = presence();
    report(table, 'g1', 1, ['alice', 2, 'bob', 1], 5);
    report(table, 'g2', 1, ['alice', 1], 4);
    const service = new GopusherService({ send: async () => {}, presence: table });
    assert.deepEqual(service.isOnline('alice'), { result: 'yes' });
    assert.deepEqual(service.isOnline('carol'), { result: 'no' });
    assert.deepEqual(service.group('alice'), { clientNum: 3 });
    assert.deepEqual(service.group('carol'), { clientNum: -1 });
    const system = service.system();
    assert.deepEqual([system.clientNum, system.groupNum, system.goroutineNum], [9, 2, 4]);
    assert.ok(system.cpuNum >= 1);
    assert.throws(() => service.group('a:b'), { status: GrpcStatus.INVALID_ARGUMENT, message: 'cardID must not contain ":"' });
    const blind = new GopusherService({ send: async () => {}, presence: null });
    assert.throws(() => blind.isOnline('alice'), { status: GrpcStatus.UNIMPLEMENTED });
  });
});

test('startGrpcIngress validates each option; a non-loopback address needs a token or insecure', async () => {
  const cases: Array<[Record<string, unknown>, ErrorConstructor, string]> = [
    [{ port: 70000 }, RangeError, 'options.port must be an integer from 0 to 65535, got 70000'],
    [{ host: '' }, TypeError, 'options.host must be a non-empty string, got ""'],
    [{ token: '' }, TypeError, 'options.token must be a non-empty string, got "<redacted>"'],
    [{ colour: 'blue' }, TypeError, 'options.colour is not a gRPC ingress option'],
    [{ host: '0.0.0.0' }, TypeError, 'options.token must be set when options.host is 0.0.0.0 (not loopback): anyone who reaches the port could push; or set options.insecure'],
  ];
  for (const [override, type, message] of cases) {
    await assert.rejects(startGrpcIngress({ port: 0, ...override } as never), (error: Error) => error instanceof type && error.message === message, message);
  }
});

test('loadRpcService: gopusher\'s four methods from the shipped proto, under /proto.Rpc/', () => {
  const service = loadRpcService();
  assert.deepEqual(Object.values(service).map((m) => m.path), ['/proto.Rpc/Push', '/proto.Rpc/System', '/proto.Rpc/IsOnline', '/proto.Rpc/Group']);
});
