/**
 * The MPC's LinkBatcher: what one read brings leaves as one frame per root; with a hold
 * (--coalesce-ms), at most one flush per hold while messages keep coming, and none held after a
 * quiet hold. The sink is an array (FrameSink is the batcher's own interface, not zeromq's).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkBatcher } from '../../src/mpc/link-batcher.js';
import { LinkKind, encodeStreamFrame, forEachInBatch, parseStreamFrame, type StreamFrameView } from '../../src/zmq/gateway-link.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const EPOCH = Buffer.from('e1', 'latin1');

function frame(topic: string, offset: number): Buffer {
  return encodeStreamFrame(LinkKind.MESSAGE, Buffer.from(topic), EPOCH, offset, Buffer.from(`"m${offset}"`));
}

/** The offsets a sent frame carries: one for a single message, each message's for a batch. */
function offsets(sent: Buffer): number[] {
  const view = {} as StreamFrameView;
  assert.ok(parseStreamFrame(sent, view), 'a stream frame');
  if (view.kind !== LinkKind.BATCH) return [view.offset];
  const found: number[] = [];
  assert.ok(forEachInBatch(sent, view, (start, end) => {
    const inner = {} as StreamFrameView;
    assert.ok(parseStreamFrame(sent.subarray(start, end), inner));
    found.push(inner.offset);
  }));
  return found;
}

describe('LinkBatcher', () => {
  test('without a hold, what one read brought leaves at its end: one frame per root', () => {
    const sent: Buffer[] = [];
    const link = new LinkBatcher({ send: (f) => sent.push(f) });
    link.message('a', frame('a:1', 1));
    link.message('a', frame('a:2', 2));
    link.message('b', frame('b:1', 3));
    assert.equal(sent.length, 0, 'nothing before the read is done');
    link.readsDone();
    assert.deepEqual(sent.map(offsets), [[1, 2], [3]]);
  });

  test('with a hold: a read after a quiet hold leaves at once; later ones wait for the rest of the hold and leave together', async () => {
    const sent: Buffer[] = [];
    const link = new LinkBatcher({ send: (f) => sent.push(f) }, 100);
    link.message('a', frame('a:1', 1));
    link.readsDone();
    assert.deepEqual(sent.map(offsets), [[1]], 'nothing has left for a hold: not held');
    link.message('a', frame('a:2', 2));
    link.readsDone();
    link.message('a', frame('a:3', 3));
    link.readsDone();
    assert.equal(sent.length, 1, 'within the hold of the last flush: held');
    for (let i = 0; i < 100 && sent.length < 2; i++) await sleep(10);
    assert.deepEqual(sent.map(offsets), [[1], [2, 3]], 'the held reads left as one frame');
    await sleep(150); // a quiet hold
    link.message('a', frame('a:4', 4));
    link.readsDone();
    assert.deepEqual(sent.map(offsets), [[1], [2, 3], [4]], 'after a quiet hold: at once again');
  });

  test('with a hold, any other frame sends what is held first: the link\'s order is kept', () => {
    const sent: Buffer[] = [];
    const link = new LinkBatcher({ send: (f) => sent.push(f) }, 100);
    link.message('a', frame('a:1', 1));
    link.readsDone();
    link.message('a', frame('a:2', 2));
    link.readsDone();
    const position = encodeStreamFrame(LinkKind.POSITION, Buffer.from('a'), EPOCH, 2, null);
    link.send(position);
    assert.deepEqual(sent.map(offsets), [[1], [2], [2]], 'the held message, then the position that counts it');
    assert.equal(sent[2], position);
  });
});
