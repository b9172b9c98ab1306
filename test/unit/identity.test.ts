/** gopusher identities: the join frame, the card/app -> topic mapping, the online answer. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseClientFrame } from '../../src/protocol/client-frames.js';
import { identityIdError, identityTopic } from '../../src/protocol/identity.js';
import { answerOnline } from '../../src/gateway/main/online.js';

const limits = { maxTopicLength: 32, maxTopicsPerFrame: 10 };

test('identityTopic: C, or C:A narrowed by app', () => {
  assert.equal(identityTopic('card'), 'card');
  assert.equal(identityTopic('card', null), 'card');
  assert.equal(identityTopic('card', 'app'), 'card:app');
});

test('identityIdError: one topic segment', () => {
  assert.equal(identityIdError('u-123_é', 'card_id'), null);
  assert.equal(identityIdError('a:b', 'card_id'), 'card_id must not contain ":"');
  assert.equal(identityIdError(12, 'app_id'), 'app_id must be a string');
  assert.equal(identityIdError('', 'card_id'), 'card_id: must not be empty');
  assert.equal(identityIdError('a\u0000', 'card_id'), 'card_id: must not contain control characters');
});

test('join is a subscribe that adds the identity topic', () => {
  assert.deepEqual(parseClientFrame('{"event":"join","data":{"app_id":"A","card_id":"C"}}', limits), {
    ok: true,
    command: { event: 'subscribe', mode: 'add', topics: ['C:A'], join: { card: 'C' } },
  });
  assert.deepEqual(parseClientFrame('{"event":"join","data":{"card_id":"C","app_id":null},"id":3}', limits), {
    ok: true,
    command: { event: 'subscribe', mode: 'add', topics: ['C'], join: { card: 'C' }, id: 3 },
  });
  // gopusher: an empty app_id is no app.
  assert.deepEqual(parseClientFrame('{"event":"join","data":{"app_id":"","card_id":"C"}}', limits), {
    ok: true,
    command: { event: 'subscribe', mode: 'add', topics: ['C'], join: { card: 'C' } },
  });
});

test('bad joins carry a code and, with an id, are answered', () => {
  const cases: Array<[unknown, string, string]> = [
    [{ event: 'join', id: 1 }, 'ERR_BAD_REQUEST', 'join needs "data": {"card_id": …, "app_id"?: …}'],
    [{ event: 'join', data: [], id: 1 }, 'ERR_BAD_REQUEST', 'join needs "data": {"card_id": …, "app_id"?: …}'],
    [{ event: 'join', data: {}, id: 1 }, 'ERR_INVALID_TOPIC', 'card_id must be a string'],
    [{ event: 'join', data: { card_id: 'a:b' }, id: 1 }, 'ERR_INVALID_TOPIC', 'card_id must not contain ":"'],
    [{ event: 'join', data: { card_id: 'a', app_id: 7 }, id: 1 }, 'ERR_INVALID_TOPIC', 'app_id must be a string'],
    [{ event: 'join', data: { card_id: '' }, id: 1 }, 'ERR_INVALID_TOPIC', 'card_id: must not be empty'],
    [{ event: 'join', data: { card_id: 'c'.repeat(20), app_id: 'a'.repeat(20) }, id: 1 }, 'ERR_INVALID_TOPIC', 'card_id and app_id together must be under 32 characters'],
  ];
  for (const [frame, code, message] of cases) {
    assert.deepEqual(parseClientFrame(JSON.stringify(frame), limits), { ok: false, error: { code, message, id: 1 } }, JSON.stringify(frame));
  }
});

test('answerOnline sums the workers and validates the query', async () => {
  const asked: string[] = [];
  const counter = async (topic: string) => {
    asked.push(topic);
    return topic === 'C' ? [2, 1] : [0, 0];
  };
  assert.deepEqual(await answerOnline(new URLSearchParams('card_id=C'), counter), { status: 200, body: { card_id: 'C', online: true, connections: 3 } });
  assert.deepEqual(await answerOnline(new URLSearchParams('card_id=C&app_id=A'), counter), {
    status: 200,
    body: { card_id: 'C', app_id: 'A', online: false, connections: 0 },
  });
  assert.deepEqual(asked, ['C', 'C:A']);
  assert.deepEqual(await answerOnline(new URLSearchParams(''), counter), { status: 400, body: { error: 'card_id must be a string' } });
  assert.deepEqual(await answerOnline(new URLSearchParams('card_id=C&app_id=x:y'), counter), { status: 400, body: { error: 'app_id must not contain ":"' } });
  assert.equal(asked.length, 2, 'bad queries never reach the workers');
});
