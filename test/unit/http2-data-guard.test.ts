/** The gRPC port's DATA frame guard: HTTP/2 frame headers read across reads, the per-stream rule. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DataFrameCounter, UnfinishedBytes } from '../../src/ingress/http2-data-guard.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const DATA = 0;
const HEADERS = 1;
const RST_STREAM = 3;
const END_STREAM = 1;

function frame(type: number, flags: number, stream: number, payload: number): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, Buffer.alloc(payload, 0x61)]);
}

/** Feeds `bytes` in reads of `size` bytes; the first read refused, or null. */
function feed(counter: DataFrameCounter, bytes: Buffer, size = bytes.length): number | null {
  for (let at = 0, read = 0; at < bytes.length; at += size, read++) if (counter.feed(bytes.subarray(at, at + size)) !== null) return read;
  return null;
}

describe('DataFrameCounter', () => {
  test('past the port\'s limit of unfinished bytes the connection holding the most is cut; whole or reset calls hold nothing', () => {
    const unfinished = new UnfinishedBytes(90_000);
    const evicted: string[] = [];
    const connection = (name: string) => {
      const counter = new DataFrameCounter(() => {}, unfinished);
      counter.evict = () => evicted.push(name);
      counter.feed(Buffer.concat([PREFACE, frame(HEADERS, 4, 1, 30)]));
      return counter;
    };
    const big = connection('big');
    const small = connection('small');
    // Whole calls and reset ones are handed on or dropped: nothing of them waits.
    assert.equal(small.feed(Buffer.concat([frame(HEADERS, 4, 3, 30), frame(DATA, END_STREAM, 3, 16_384), frame(HEADERS, 4, 5, 30), frame(DATA, 0, 5, 16_384), frame(RST_STREAM, 0, 5, 4)])), null);
    assert.equal(unfinished.held, 0);
    assert.equal(big.feed(Buffer.concat(Array.from({ length: 4 }, () => frame(DATA, 0, 1, 16_384)))), null);
    assert.equal(small.feed(frame(DATA, 0, 1, 16_384)), null);
    assert.deepEqual([unfinished.held, big.held, small.held], [81_920, 65_536, 16_384]);
    // The small connection's bytes take the port past its limit: the big one goes, not the newcomer.
    assert.equal(small.feed(frame(DATA, 0, 1, 16_384)), null);
    assert.deepEqual(evicted, ['big']);
    assert.deepEqual([unfinished.held, unfinished.cuts, big.held], [32_768, 1, 0]);
    // Alone past the limit, a connection is cut itself.
    assert.equal(small.feed(Buffer.concat(Array.from({ length: 4 }, () => frame(DATA, 0, 1, 16_384)))), 'unfinished');
    assert.equal(unfinished.cuts, 2);
    small.release();
    assert.deepEqual([unfinished.held, unfinished.counters.size], [0, 0]);
  });

  test('a call the server has answered or reset while its client still sends holds nothing: what follows is not counted', () => {
    const unfinished = new UnfinishedBytes(Infinity);
    const counter = new DataFrameCounter(() => {}, unfinished);
    counter.feed(Buffer.concat([PREFACE, frame(HEADERS, 4, 1, 30), frame(DATA, 0, 1, 16_384), frame(HEADERS, 4, 3, 30), frame(DATA, 0, 3, 16_384)]));
    assert.equal(unfinished.held, 32_768);
    // The server's bytes, split anywhere: its settings, then a trailers-only answer on stream 1
    // (UNAUTHENTICATED, say) and a reset of stream 3.
    const server = Buffer.concat([frame(4, 0, 0, 6), frame(HEADERS, 4 | END_STREAM, 1, 40), frame(RST_STREAM, 0, 3, 4)]);
    for (let at = 0; at < server.length; at += 7) counter.sent(server.subarray(at, at + 7));
    assert.equal(unfinished.held, 0);
    // Its client keeps sending: grpc-js drops it, and so does the count (even in one-byte frames).
    assert.equal(counter.feed(Buffer.concat(Array.from({ length: 40 }, () => frame(DATA, 0, 1, 1)))), null);
    assert.equal(counter.feed(frame(DATA, 0, 3, 16_384)), null);
    assert.equal(unfinished.held, 0);
    // Once the client ends it, the stream is forgotten; a call answered after its message was whole is not affected.
    counter.feed(Buffer.concat([frame(DATA, END_STREAM, 1, 10), frame(HEADERS, 4, 5, 30), frame(DATA, END_STREAM, 5, 100)]));
    counter.sent(frame(HEADERS, 4 | END_STREAM, 5, 40));
    counter.feed(Buffer.concat([frame(HEADERS, 4, 7, 30), frame(DATA, 0, 7, 1000)]));
    assert.equal(unfinished.held, 1000);
  });

  test('the first request counts as made when it has arrived whole (END_STREAM), not at its HEADERS', () => {
    let told = 0;
    const counter = new DataFrameCounter(() => told++);
    feed(counter, Buffer.concat([PREFACE, frame(HEADERS, 4, 1, 30), frame(DATA, 0, 1, 5)]));
    assert.equal(told, 0, 'a call started, its message not finished');
    feed(counter, Buffer.concat([frame(DATA, END_STREAM, 1, 20), frame(HEADERS, 4 | END_STREAM, 3, 30)]));
    assert.equal(told, 1, 'told once');
    const bodiless = new DataFrameCounter(() => told++);
    feed(bodiless, Buffer.concat([PREFACE, frame(HEADERS, 4 | END_STREAM, 1, 30)]));
    assert.equal(told, 2, 'a request without a body is whole with its HEADERS');
  });

  test('a stream of one-byte DATA frames is refused at its 17th frame, whether the bytes come whole or one per read', () => {
    const frames = [PREFACE, frame(HEADERS, 4, 1, 30), ...Array.from({ length: 40 }, () => frame(DATA, 0, 1, 1))];
    const whole = new DataFrameCounter();
    assert.equal(feed(whole, Buffer.concat(frames)), 0);
    const counter = new DataFrameCounter();
    let refusedAt = -1;
    for (let i = 0; i < frames.length && refusedAt === -1; i++) if (feed(counter, frames[i]!, 1) !== null) refusedAt = i;
    assert.equal(refusedAt, 2 + 16, 'the 17th DATA frame');
  });

  test('full frames pass: a 1 MB message in 64 frames of 16 KB, its last frame ending the stream', () => {
    const counter = new DataFrameCounter();
    const frames = [PREFACE, frame(HEADERS, 4, 1, 30), ...Array.from({ length: 64 }, (_, i) => frame(DATA, i === 63 ? END_STREAM : 0, 1, 16_384))];
    assert.equal(feed(counter, Buffer.concat(frames), 1000), null);
    assert.equal(counter.openStreams, 0);
  });

  test('many small calls on one connection pass: each stream is counted apart, and forgotten at END_STREAM or RST_STREAM', () => {
    const counter = new DataFrameCounter();
    const frames: Buffer[] = [PREFACE];
    for (let stream = 1; stream < 2000; stream += 2) frames.push(frame(HEADERS, 4, stream, 20), frame(DATA, END_STREAM, stream, 200));
    frames.push(frame(DATA, 0, 2001, 10), frame(RST_STREAM, 0, 2001, 4));
    assert.equal(feed(counter, Buffer.concat(frames), 777), null);
    assert.equal(counter.openStreams, 0);
  });

  test('small frames are allowed in proportion to the bytes they carry: 256-byte frames are refused, 1 KB frames are not', () => {
    const of = (size: number) => [PREFACE, ...Array.from({ length: 200 }, () => frame(DATA, 0, 1, size))];
    assert.notEqual(feed(new DataFrameCounter(), Buffer.concat(of(256))), null);
    assert.equal(feed(new DataFrameCounter(), Buffer.concat(of(1024))), null);
  });
});
