import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ackFrame, errorFrame, parseClientFrame, pongFrame } from '../../src/protocol/client-frames.js';

const limits = { maxTopicLength: 32, maxTopicsPerFrame: 3 };
const parse = (frame: unknown) => parseClientFrame(typeof frame === 'string' ? frame : JSON.stringify(frame), limits);

describe('client frames: every row of the protocol table', () => {
  test('subscribe with "topic" replaces', () => {
    assert.deepEqual(parse({ event: 'subscribe', topic: 'ehr:api' }), { ok: true, command: { event: 'subscribe', mode: 'replace', topics: ['ehr:api'] } });
  });
  test('subscribe with "topics" adds', () => {
    assert.deepEqual(parse({ event: 'subscribe', topics: ['a:1', 'b'] }), { ok: true, command: { event: 'subscribe', mode: 'add', topics: ['a:1', 'b'] } });
  });
  test('unsubscribe with nothing drops all', () => {
    assert.deepEqual(parse({ event: 'unsubscribe' }), { ok: true, command: { event: 'unsubscribe', topics: null } });
  });
  test('unsubscribe with topic / topics drops those', () => {
    assert.deepEqual(parse({ event: 'unsubscribe', topic: 'a' }), { ok: true, command: { event: 'unsubscribe', topics: ['a'] } });
    assert.deepEqual(parse({ event: 'unsubscribe', topics: ['a', 'b'] }), { ok: true, command: { event: 'unsubscribe', topics: ['a', 'b'] } });
  });
  test('ping', () => {
    assert.deepEqual(parse({ event: 'ping' }), { ok: true, command: { event: 'ping' } });
  });
  test('ids (string or number) are carried', () => {
    assert.deepEqual(parse({ event: 'ping', id: 'x' }), { ok: true, command: { event: 'ping', id: 'x' } });
    assert.deepEqual(parse({ event: 'subscribe', topic: 'a', id: 7 }), { ok: true, command: { event: 'subscribe', mode: 'replace', topics: ['a'], id: 7 } });
  });
});

describe('client frames: bad input yields a coded error, with the id only when usable', () => {
  const cases: Array<[string, unknown, string, boolean]> = [
    ['not JSON', '{"event":', 'ERR_BAD_JSON', false],
    ['a JSON array', '[1,2]', 'ERR_NOT_OBJECT', false],
    ['a JSON string', '"subscribe"', 'ERR_NOT_OBJECT', false],
    ['null', 'null', 'ERR_NOT_OBJECT', false],
    ['no event', { id: 1 }, 'ERR_UNKNOWN_EVENT', true],
    ['an unknown event', { event: 'dance', id: 1 }, 'ERR_UNKNOWN_EVENT', true],
    ['a non-string event', { event: 5, id: 1 }, 'ERR_UNKNOWN_EVENT', true],
    ['an object id', { event: 'ping', id: { x: 1 } }, 'ERR_BAD_REQUEST', false],
    ['subscribe without topics', { event: 'subscribe', id: 1 }, 'ERR_BAD_REQUEST', true],
    ['topic and topics together', { event: 'subscribe', topic: 'a', topics: ['b'], id: 1 }, 'ERR_BAD_REQUEST', true],
    ['topics not an array', { event: 'subscribe', topics: 'a', id: 1 }, 'ERR_BAD_REQUEST', true],
    ['an empty topic', { event: 'subscribe', topic: '', id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['an empty segment', { event: 'subscribe', topic: 'a::b', id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['a leading separator', { event: 'subscribe', topic: ':a', id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['a trailing separator', { event: 'unsubscribe', topic: 'a:', id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['a control character', { event: 'subscribe', topic: 'a\nb', id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['DEL', { event: 'subscribe', topic: 'a\u007fb', id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['a topic over the max length', { event: 'subscribe', topic: 'x'.repeat(33), id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['a non-string topic', { event: 'subscribe', topics: ['a', 5], id: 1 }, 'ERR_INVALID_TOPIC', true],
    ['too many topics in one frame', { event: 'subscribe', topics: ['a', 'b', 'c', 'd'], id: 1 }, 'ERR_TOO_MANY_SUBSCRIPTIONS', true],
  ];
  for (const [name, frame, code, hasId] of cases) {
    test(name, () => {
      const result = parse(frame);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.error.code, code);
      assert.equal(typeof result.error.message, 'string');
      assert.equal('id' in result.error, hasId);
    });
  }

  test('the error names which topic was bad', () => {
    const result = parse({ event: 'subscribe', topics: ['ok', 'bad::'], id: 1 });
    assert.ok(!result.ok && result.error.message.startsWith('topics[1]:'));
  });

  test('a topic of exactly the max length is accepted', () => {
    assert.equal(parse({ event: 'subscribe', topic: 'x'.repeat(32) }).ok, true);
  });
});

describe('client frames: replies', () => {
  test('ack, error and pong frames', () => {
    assert.equal(ackFrame(3), '{"event":"ack","id":3}');
    assert.equal(errorFrame({ code: 'ERR_BAD_JSON', message: 'm', id: 'a' }), '{"event":"error","id":"a","code":"ERR_BAD_JSON","message":"m"}');
    assert.equal(pongFrame(), '{"event":"pong"}');
    assert.equal(pongFrame(9), '{"event":"pong","id":9}');
  });
});
