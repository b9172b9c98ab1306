/** The MPC's stream positions and memory history: offsets, epochs, limits by count, age, bytes and streams. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStreamStore, MESSAGE_OVERHEAD_BYTES, type MemoryStoreLimits } from '../../src/mpc/streams.js';

const LIMITS: MemoryStoreLimits = { historySize: 5, historyTtlMs: 1000, historyMaxBytes: 1 << 20, maxStreams: 100 };
const body = (text: string) => Buffer.from(text);
const texts = (bodies: Buffer[]) => bodies.map((b) => b.toString());

describe('MemoryStreamStore', () => {
  test('every topic is its own stream: offsets 1, 2, 3 … per topic, in a random epoch', () => {
    const store = new MemoryStreamStore(LIMITS);
    const a1 = store.append('a', body('a1'), 0);
    assert.equal(a1.top, 1);
    assert.equal(store.append('a', body('a2'), 0).top, 2);
    const b = store.append('a:b', body('b1'), 0);
    assert.equal(b.top, 1);
    assert.match(a1.epoch, /^[A-Za-z0-9_-]{8}$/);
    assert.notEqual(new MemoryStreamStore(LIMITS).append('a', body('a1'), 0).epoch, a1.epoch, 'another store (an MPC restarted): another epoch');
    assert.deepEqual(store.position('a'), a1, 'the same stream');
    const fresh = store.position('never');
    assert.equal(fresh.top, 0, 'a subscribed topic gets a position before its first message');
    assert.equal(store.stats().streams, 2, 'and nothing is held for it');
    assert.equal(store.append('never', body('x'), 0).epoch, fresh.epoch, 'its first message keeps that epoch');
  });

  test('positions of topics nobody published create nothing: a churn of them cannot push a published stream out', () => {
    const store = new MemoryStreamStore({ ...LIMITS, maxStreams: 2 });
    const kept = store.append('real', body('1'), 0);
    for (let i = 0; i < 10_000; i++) assert.equal(store.position(`made-up:${i}`).top, 0);
    assert.deepEqual(store.stats().streams, 1);
    assert.equal(store.stats().forgottenStreams, 0);
    const { epoch } = store.position('real');
    assert.equal(epoch, kept.epoch);
    const read = store.read('real', epoch, 0, 10, 1 << 20, 0);
    assert.ok(read.status === 'ok' && texts(read.bodies).join() === '1', 'its history is intact');
  });

  test('read: the messages after an offset in the right epoch; every other case says why', () => {
    const store = new MemoryStreamStore(LIMITS);
    for (let i = 1; i <= 4; i++) store.append('t', body(`m${i}`), 0);
    const { epoch } = store.position('t');
    const ok = store.read('t', epoch, 1, 10, 1 << 20, 0);
    assert.deepEqual({ ...ok, bodies: texts(ok.status === 'ok' ? ok.bodies : []) }, { status: 'ok', epoch, top: 4, from: 2, bodies: ['m2', 'm3', 'm4'], more: false });
    const limited = store.read('t', epoch, 0, 2, 1 << 20, 0);
    assert.ok(limited.status === 'ok' && limited.more && texts(limited.bodies).join() === 'm1,m2');
    const sized = store.read('t', epoch, 0, 10, 3, 0);
    assert.ok(sized.status === 'ok' && sized.bodies.length === 1 && sized.more, 'at least one body, then the size limit');
    assert.deepEqual(store.read('t', epoch, 4, 10, 1 << 20, 0), { status: 'ok', epoch, top: 4, from: 5, bodies: [], more: false });
    assert.deepEqual(store.read('t', 'other', 1, 10, 1 << 20, 0), { status: 'epoch', epoch, top: 4 });
    assert.deepEqual(store.read('t', epoch, 9, 10, 1 << 20, 0), { status: 'ahead', epoch, top: 4 });
    const unknown = store.position('unknown');
    assert.deepEqual(store.read('unknown', 'x', 0, 10, 1 << 20, 0), { status: 'epoch', epoch: unknown.epoch, top: 0 });
    assert.deepEqual(store.read('unknown', unknown.epoch, 0, 10, 1 << 20, 0), { status: 'ok', epoch: unknown.epoch, top: 0, from: 1, bodies: [], more: false });
    assert.deepEqual(store.read('unknown', unknown.epoch, 3, 10, 1 << 20, 0), { status: 'ahead', epoch: unknown.epoch, top: 0 });
    assert.equal(store.stats().streams, 1, 'reading an unknown topic creates nothing');
  });

  test('per topic, only the last historySize messages are kept; older ones are "evicted", the position stays', () => {
    const store = new MemoryStreamStore(LIMITS);
    for (let i = 1; i <= 8; i++) store.append('t', body(`m${i}`), 0);
    const { epoch } = store.position('t');
    assert.deepEqual(store.read('t', epoch, 2, 10, 1 << 20, 0), { status: 'evicted', epoch, top: 8 });
    const kept = store.read('t', epoch, 3, 10, 1 << 20, 0);
    assert.ok(kept.status === 'ok' && texts(kept.bodies).join() === 'm4,m5,m6,m7,m8');
    assert.equal(store.stats().messages, 5);
    assert.equal(store.stats().evictedMessages, 3);
  });

  test('messages older than the TTL go (on read and in the sweep); epoch and offset outlive them', () => {
    const store = new MemoryStreamStore(LIMITS);
    store.append('old', body('o1'), 0);
    store.append('new', body('n1'), 900);
    const { epoch } = store.position('old');
    assert.deepEqual(store.read('old', epoch, 0, 10, 1 << 20, 1500), { status: 'evicted', epoch, top: 1 });
    store.sweep(1500);
    assert.equal(store.stats().messages, 1, 'the recent one stays');
    store.sweep(2000);
    assert.equal(store.stats().messages, 0);
    assert.equal(store.append('old', body('o2'), 2000).top, 2, 'the stream goes on in its epoch');
  });

  test('over historyMaxBytes the least recently published topics lose their messages first', () => {
    const size = 100;
    const store = new MemoryStreamStore({ ...LIMITS, historyMaxBytes: 3 * (size + MESSAGE_OVERHEAD_BYTES) });
    store.append('a', Buffer.alloc(size), 0);
    store.append('b', Buffer.alloc(size), 0);
    store.append('c', Buffer.alloc(size), 0);
    store.append('a', Buffer.alloc(size), 0); // a is now the most recent; b the least
    assert.equal(store.stats().streamsWithHistory, 2);
    assert.equal(store.read('b', store.position('b').epoch, 0, 10, 1 << 20, 0).status, 'evicted');
    assert.equal(store.read('a', store.position('a').epoch, 0, 10, 1 << 20, 0).status, 'ok');
    assert.ok(store.stats().bytes <= 3 * (size + MESSAGE_OVERHEAD_BYTES));
  });

  test('past maxStreams the least recently used stream is forgotten: its next message starts a new epoch, as does every topic not held', () => {
    const store = new MemoryStreamStore({ ...LIMITS, maxStreams: 2 });
    const first = store.append('x', body('1'), 0).epoch;
    const forgotten = store.append('y', body('1'), 0).epoch;
    const unpublished = store.position('never').epoch;
    store.position('x'); // x used again: y is now the least recently used
    store.append('z', body('1'), 0);
    assert.equal(store.stats().streams, 2);
    assert.equal(store.stats().forgottenStreams, 1);
    assert.equal(store.position('x').epoch, first, 'x kept');
    assert.equal(store.position('y').top, 0, 'y forgotten');
    assert.equal(store.read('y', forgotten, 1, 10, 1 << 20, 0).status, 'epoch', 'a resume of y is not recovered');
    assert.notEqual(store.position('never').epoch, unpublished, 'the store cannot vouch that an unknown topic was never published any more');
    const again = store.append('y', body('2'), 0);
    assert.equal(again.top, 1);
    assert.notEqual(again.epoch, forgotten);
  });

  test('historySize 0 keeps nothing but still stamps positions', () => {
    const store = new MemoryStreamStore({ ...LIMITS, historySize: 0 });
    assert.equal(store.append('t', body('1'), 0).top, 1);
    assert.equal(store.append('t', body('2'), 0).top, 2);
    assert.equal(store.stats().messages, 0);
    assert.equal(store.read('t', store.position('t').epoch, 0, 10, 1 << 20, 0).status, 'evicted');
  });
});
