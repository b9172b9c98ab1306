/** The MPC ⇄ gateway wire: frames round-trip, exact-topic subscriptions, requests and replies. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeBatch, encodeReply, encodeRequest, encodeStreamFrame, GATEWAY_ID_BYTES, LinkKind, linkKeys, parseReply, parseRequest, parseStreamFrame,
  privateKey, privateSubscription, subtreeSubscription, topicSubscription, type StreamFrameView,
} from '../../src/zmq/gateway-link.js';

describe('gateway link frames', () => {
  const view: StreamFrameView = { kind: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, offset: 0, bodyStart: 0 };

  test('a stream message is one frame: topic, 0x00, kind, epoch, offset, body', () => {
    const body = Buffer.from('{"topic": "ehr:api", "data": "héllo"}');
    const frame = encodeStreamFrame(LinkKind.MESSAGE, Buffer.from('ehr:api'), Buffer.from('EpOcH123'), 2 ** 40 + 3, body);
    assert.ok(frame.subarray(0, 8).equals(Buffer.from('ehr:api\u0000')), 'the key ZeroMQ matches: the topic and its terminator');
    assert.ok(parseStreamFrame(frame, view));
    assert.equal(view.kind, LinkKind.MESSAGE);
    assert.equal(frame.toString('utf8', 0, view.topicEnd), 'ehr:api');
    assert.equal(frame.toString('latin1', view.epochStart, view.epochEnd), 'EpOcH123');
    assert.equal(view.offset, 2 ** 40 + 3);
    assert.ok(frame.subarray(view.bodyStart).equals(body));
    const position = encodeStreamFrame(LinkKind.POSITION, Buffer.from('t'), Buffer.from('E'), 7, null);
    assert.ok(parseStreamFrame(position, view));
    assert.deepEqual([view.kind as number, view.offset, view.bodyStart], [LinkKind.POSITION, 7, position.length]);
  });

  test('malformed frames are refused, private frames are not stream frames', () => {
    for (const bad of [Buffer.alloc(0), Buffer.from('no terminator'), Buffer.from('t\u0000'), Buffer.from([0x74, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0])]) {
      assert.equal(parseStreamFrame(bad, view), false, JSON.stringify(bad.toString('latin1')));
    }
    assert.equal(parseStreamFrame(encodeReply(Buffer.alloc(GATEWAY_ID_BYTES), { type: 'ready', mpc: 'x' }), view), false);
  });

  test('subscriptions are exact: the 0x00 ends the prefix ZeroMQ matches', () => {
    assert.ok(topicSubscription('ehr', true).equals(Buffer.from('\u0001ehr\u0000')));
    assert.ok(topicSubscription('ehr', false).equals(Buffer.from('\u0000ehr\u0000')));
    const id = Buffer.alloc(GATEWAY_ID_BYTES, 7);
    assert.ok(privateSubscription(id, true).subarray(2).equals(id));
    assert.ok(privateKey(id).equals(Buffer.concat([Buffer.from([0]), id])));
    // A topic frame never starts with the private prefix (a topic is never empty).
    assert.ok(!encodeStreamFrame(LinkKind.MESSAGE, Buffer.from('a'), Buffer.from('E'), 1, Buffer.from('{}')).subarray(0, 1).equals(Buffer.from([0])));
  });

  test('requests and replies round-trip; replies carry parts back to back', () => {
    const request = { type: 'history', id: 3, reply: 'AAAA', topic: 't', epoch: 'E', after: 5, limit: 10 } as const;
    assert.deepEqual(parseRequest(encodeRequest(request)), request);
    assert.equal(parseRequest(Buffer.from('\u0002not json')), null);
    assert.equal(parseRequest(Buffer.from('\u0002{"type":"drop tables"}')), null);
    const id = Buffer.alloc(GATEWAY_ID_BYTES, 1);
    const reply = parseReply(encodeReply(id, { type: 'history', id: 3, status: 'ok', epoch: 'E', top: 7, from: 6, more: false }, [Buffer.from('a'), Buffer.alloc(0), Buffer.from('ccc')]));
    assert.deepEqual(reply?.header, { type: 'history', id: 3, status: 'ok', epoch: 'E', top: 7, from: 6, more: false });
    assert.deepEqual(reply?.parts.map((p) => p.toString()), ['a', '', 'ccc']);
    const truncated = encodeReply(id, { type: 'ready', mpc: 'm' }, [Buffer.from('abcdef')]).subarray(0, -2);
    assert.equal(parseReply(truncated), null);
  });

  test('linkKeys: each frame travels under exactly the keys a gateway subscribes for it (the ZMTP link server matches by these)', () => {
    const keys: string[] = [];
    const of = (frame: Buffer) => keys.slice(0, linkKeys(frame, keys));
    /** The key a subscription message carries (its first byte is subscribe/unsubscribe). */
    const key = (subscription: Buffer) => subscription.subarray(1).toString('latin1');
    const epoch = Buffer.from('e1');
    const own = encodeStreamFrame(LinkKind.MESSAGE, Buffer.from('ehr'), epoch, 1, Buffer.from('{}'));
    assert.deepEqual(of(own), [key(topicSubscription('ehr', true))]);
    const below = encodeStreamFrame(LinkKind.MESSAGE, Buffer.from('ehr:api:x'), epoch, 1, Buffer.from('{"a":"b:c"}'));
    assert.deepEqual(of(below), [key(topicSubscription('ehr:api:x', true)), key(subtreeSubscription('ehr', true))]);
    const position = encodeStreamFrame(LinkKind.POSITION, Buffer.from('ehr'), epoch, 7, null);
    assert.deepEqual(of(position), [key(topicSubscription('ehr', true))]);
    const subtree = encodeStreamFrame(LinkKind.SUBTREE, Buffer.from('ehr:'), Buffer.alloc(0), 0, null);
    assert.ok(of(subtree).includes(key(subtreeSubscription('ehr', true))));
    const batch = encodeBatch(Buffer.from('ehr:'), [below, below], 2 * below.length);
    assert.ok(of(batch).includes(key(subtreeSubscription('ehr', true))));
    // Never the subtree of another root that merely starts the same way, nor a root's subtree for its own topic.
    assert.ok(!of(below).includes(key(subtreeSubscription('eh', true))));
    assert.ok(!of(own).includes(key(subtreeSubscription('ehr', true))));
    const id = Buffer.alloc(GATEWAY_ID_BYTES, 7);
    const reply = encodeReply(id, { type: 'ready', mpc: 'm' });
    assert.deepEqual(of(reply), [key(privateSubscription(id, true))]);
    assert.deepEqual(of(Buffer.from('no terminator')), []);
  });
});
