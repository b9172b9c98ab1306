/** Pure parts of the HTTP ingress: request validation, the bearer check, option validation. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bearerMatches, nestedDeeperThan, parsePublishRequest, startHttpIngress } from '../../src/ingress/http-ingress.js';

describe('parsePublishRequest', () => {
  test('one object or an array of them', () => {
    assert.deepEqual(parsePublishRequest({ topic: 'a:b', data: null }), { ok: true, messages: [{ topic: 'a:b', data: null }] });
    assert.deepEqual(parsePublishRequest([{ topic: 'a', data: 1 }, { data: [2], topic: 'b', extra: true }]), {
      ok: true,
      messages: [{ topic: 'a', data: 1 }, { topic: 'b', data: [2] }],
    });
  });

  test('every bad shape is refused whole, with a message naming the item', () => {
    const cases: Array<[unknown, string]> = [
      [null, 'body must be an object {"topic", "data"}'],
      [42, 'body must be an object {"topic", "data"}'],
      [[], 'body must not be an empty array'],
      [[{ topic: 'a', data: 1 }, 'x'], 'body[1] must be an object {"topic", "data"}'],
      [{ data: 1 }, 'body needs a "topic"'],
      [{ topic: 'a:', data: 1 }, 'body: topic must not have empty segments'],
      [{ topic: 'a\nb', data: 1 }, 'body: topic must not contain control characters'],
      [{ topic: 'x'.repeat(257), data: 1 }, 'body: topic must be at most 256 characters'],
      [[{ topic: 'a', data: 1 }, { topic: 'b' }], 'body[1] needs a "data" (any JSON value)'],
    ];
    for (const [body, error] of cases) assert.deepEqual(parsePublishRequest(body), { ok: false, error }, JSON.stringify(body));
  });

  test('data nested deeper than maxDataDepth is refused (a scalar is 0 levels, [] is 1)', () => {
    const nest = (depth: number): unknown => (depth === 0 ? 'x' : depth % 2 ? [nest(depth - 1)] : { k: nest(depth - 1) });
    assert.equal(parsePublishRequest({ topic: 't', data: nest(3) }, 10, 3).ok, true);
    assert.deepEqual(parsePublishRequest([{ topic: 't', data: 1 }, { topic: 't', data: nest(4) }], 10, 3), {
      ok: false,
      error: 'body[1]: data must not nest arrays and objects deeper than 3 levels',
    });
    assert.equal(nestedDeeperThan([[], {}, [1]], 2), false);
    assert.equal(nestedDeeperThan([[], {}, [[1]]], 2), true);
    assert.equal(nestedDeeperThan({ a: 1, b: [2] }, 1), true);
    assert.equal(nestedDeeperThan(JSON.parse('['.repeat(200_000) + ']'.repeat(200_000)), 100), true);
  });

  test('at most maxMessages per request', () => {
    const three = [1, 2, 3].map((i) => ({ topic: 't', data: i }));
    assert.deepEqual(parsePublishRequest(three, 2), { ok: false, error: 'a request may carry at most 2 messages' });
    assert.equal(parsePublishRequest(three, 3).ok, true);
  });
});

test('bearerMatches accepts exactly "Bearer <token>"', () => {
  assert.equal(bearerMatches('Bearer s3cret', 's3cret'), true);
  assert.equal(bearerMatches('Bearer s3cre', 's3cret'), false);
  assert.equal(bearerMatches('Bearer s3cret2', 's3cret'), false);
  assert.equal(bearerMatches('s3cret', 's3cret'), false);
  assert.equal(bearerMatches('bearer s3cret', 's3cret'), false);
  assert.equal(bearerMatches(undefined, 's3cret'), false);
  assert.equal(bearerMatches('Bearer ', 's3cret'), false);
});

test('startHttpIngress validates each option', async () => {
  const base = { port: 0, publisherHost: '127.0.0.1', publisherPort: 5559 };
  const cases: Array<[Record<string, unknown>, ErrorConstructor, string]> = [
    [{ host: '' }, TypeError, 'options.host must be a non-empty string, got ""'],
    [{ port: 70000 }, RangeError, 'options.port must be an integer from 0 to 65535, got 70000'],
    [{ port: 'x' }, TypeError, 'options.port must be an integer from 0 to 65535, got "x"'],
    [{ publisherHost: '' }, TypeError, 'options.publisherHost must be a non-empty string, got ""'],
    [{ publisherPort: 0 }, RangeError, 'options.publisherPort must be an integer from 1 to 65535, got 0'],
    [{ token: '' }, TypeError, 'options.token must be a non-empty string, got "<redacted>"'],
    [{ colour: 'blue' }, TypeError, 'options.colour is not an HTTP ingress option'],
    [{ maxBodyBytes: 0 }, RangeError, 'options.maxBodyBytes must be a positive integer, got 0'],
    [{ maxMessagesPerRequest: 1.5 }, RangeError, 'options.maxMessagesPerRequest must be a positive integer, got 1.5'],
    // Publishing open to the network needs a token, or an explicit insecure: true.
    [{ host: '0.0.0.0' }, TypeError, 'options.token must be set when options.host is 0.0.0.0 (not loopback): anyone who reaches the port could publish; or set options.insecure'],
    [{ host: '::' }, TypeError, 'options.token must be set when options.host is :: (not loopback): anyone who reaches the port could publish; or set options.insecure'],
    [{ tlsCert: '/nonexistent.pem' }, TypeError, 'options.tlsKey must be a PEM private key file (given with options.tlsCert), got ""'],
    [{ tlsCert: '/nonexistent.pem', tlsKey: '/nonexistent.key' }, TypeError, 'options.tlsCert must be a readable PEM certificate matching options.tlsKey (cannot read /nonexistent.pem: ENOENT: no such file or directory, open \'/nonexistent.pem\'), got "/nonexistent.pem"'],
  ];
  for (const [override, type, message] of cases) {
    await assert.rejects(startHttpIngress({ ...base, ...override } as never), (error: Error) => error instanceof type && error.message === message);
  }
});
