/**
 * The hot-path cases, mirroring src/: trie lookup (gateway/worker/trie.ts), ring write/read
 * (gateway/shared/ring.ts), the MPC's per-message work (mpc/forwarder.ts, zmq/gateway-link.ts), framing
 * (protocol/ws-frame.ts, the tormq.v2 variant in gateway/worker/delivery.ts).
 * Every case checks its own result once before it is timed.
 */
import { isUtf8 } from 'node:buffer';
import { positionedFrame } from '../../src/gateway/worker/delivery.js';
import { createRingBuffer, RecordKind, RingReader, RingWriter, type RecordSource, type RecordView } from '../../src/gateway/shared/ring.js';
import { MemoryStreamStore } from '../../src/mpc/streams.js';
import { topicError } from '../../src/protocol/topic.js';
import { encodeTextFrame } from '../../src/protocol/ws-frame.js';
import { encodeStreamFrame, LinkKind, parseStreamFrame, type StreamFrameView } from '../../src/zmq/gateway-link.js';
import { TopicTrie } from '../../src/gateway/worker/trie.js';
import { check } from './check.js';
import type { MicroCase } from './micro.js';

class Subscriber {
  mark = 0;
  hits = 0;
}

const countHit = (s: Subscriber): void => {
  s.hits++;
};

/** A body like the SDK's: `{"topic": "…", "data": {…}}` padded to about `bytes`. */
export function sampleBody(topic: string, bytes: number): Buffer {
  const head = `{"topic": "${topic}", "data": {"t": 1234567890123, "p": "`;
  const tail = '"}}';
  return Buffer.from(head + 'x'.repeat(Math.max(0, bytes - head.length - tail.length)) + tail);
}

export function trieCases(): MicroCase[] {
  // Deep: one chain of 8 segments, 100 subscribers at the leaf; publish at the leaf and at the root.
  const deep = new TopicTrie<Subscriber>();
  const deepTopic = 'a:b:c:d:e:f:g:h';
  const deepSubs = Array.from({ length: 100 }, () => new Subscriber());
  for (const s of deepSubs) deep.add(deepTopic, s);
  // Wide: 10,000 sibling topics under one root, one subscriber each; publish on one of them.
  const wide = new TopicTrie<Subscriber>();
  for (let i = 0; i < 10_000; i++) wide.add(`w:${i}`, new Subscriber());
  // Many: 10,000 subscribers on one topic (a broadcast).
  const many = new TopicTrie<Subscriber>();
  for (let i = 0; i < 10_000; i++) many.add('room:lobby', new Subscriber());
  // Prefix fan-out: 10 x 10 x 10 tree, 10 subscribers per leaf; publish on an inner node (100 leaves).
  const tree = new TopicTrie<Subscriber>();
  for (let a = 0; a < 10; a++) for (let b = 0; b < 10; b++) for (let c = 0; c < 10; c++)
    for (let s = 0; s < 10; s++) tree.add(`t:${a}:${b}:${c}`, new Subscriber());

  check(deep.forEachRecipient(deepTopic, countHit) === 100, 'deep leaf reaches 100');
  check(deep.forEachRecipient('a', countHit) === 100, 'deep root reaches 100');
  check(deep.forEachRecipient('a:b:x', countHit) === 0, 'deep miss reaches 0');
  check(wide.forEachRecipient('w:5000', countHit) === 1, 'wide reaches 1');
  check(wide.forEachRecipient('w', countHit) === 10_000, 'wide root reaches 10000');
  check(many.forEachRecipient('room:lobby', countHit) === 10_000, 'broadcast reaches 10000');
  check(tree.forEachRecipient('t:3', countHit) === 1000, 'inner node reaches 1000');
  check(deepSubs.every((s) => s.hits === 2), 'each deep subscriber visited once per message');

  const visit = (s: Subscriber): void => {
    s.hits++;
  };
  return [
    { name: 'deep (8 levels) leaf, 100 recipients', ops: 100, fn: () => void deep.forEachRecipient(deepTopic, visit) },
    { name: 'wide (10k siblings) one topic, 1 recipient', ops: 1, fn: () => void wide.forEachRecipient('w:5000', visit) },
    { name: 'wide miss (no such topic)', ops: 1, fn: () => void wide.forEachRecipient('w:nope', visit) },
    { name: 'broadcast, 10k recipients', ops: 10_000, fn: () => void many.forEachRecipient('room:lobby', visit) },
    { name: 'prefix inner node, 1000 recipients under 100 leaves', ops: 1000, fn: () => void tree.forEachRecipient('t:3', visit) },
  ];
}

export function ringCases(): MicroCase[] {
  const topic = Buffer.from('bench:topic');
  const epoch = Buffer.from('AbCdEfGh');
  const body = sampleBody('bench:topic', 100);
  const sab = createRingBuffer(1 << 20);
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  const record: RecordSource = {
    kind: RecordKind.MESSAGE, topicSource: topic, epochSource: epoch, bodySource: body,
    topicStart: 0, topicEnd: topic.length, epochStart: 0, epochEnd: epoch.length, bodyStart: 0, bodyEnd: body.length, offset: 1, seq: 0, receivedAt: 0,
  };
  let bytesSeen = 0;
  let lastTopic = '';
  const sink = (r: RecordView): void => {
    lastTopic = r.topic;
    bytesSeen += r.bytes[r.bodyOffset]! + r.bodyLength; // touch the body like delivery does
  };
  const BATCH = 256;
  const roundTrip = (): void => {
    for (let i = 0; i < BATCH; i++) if (!writer.tryWrite(record)) throw new Error('ring full');
    if (reader.drain(sink, BATCH) !== BATCH) throw new Error('ring lost records');
  };
  roundTrip();
  check(lastTopic === 'bench:topic' && bytesSeen === BATCH * (body[0]! + body.length), 'ring returns what was written');
  check(reader.used() === 0, 'ring empty after drain');
  // Wrap-around is exercised by the timed loop itself: 1 MiB / ~160-byte records wraps every ~25 calls.
  return [{ name: `write+drain ${BATCH} x ${body.length} B records`, ops: BATCH, fn: roundTrip }];
}

/** The MPC's work per publisher message (validate, stamp, keep, encode) and the gateway's frame parse. */
export function mpcCases(): MicroCase[] {
  const body = sampleBody('ehr:api:patient:42', 100);
  const limits = { historySize: 100, historyTtlMs: 300_000, historyMaxBytes: 256 << 20, maxStreams: 1_000_000 };
  const store = new MemoryStreamStore(limits);
  let sink = 0;
  const ingest = (): Buffer => {
    if (!isUtf8(body)) throw new Error('not utf8');
    const parsed = JSON.parse(body.toString('utf8')) as { topic: string };
    if (topicError(parsed.topic) !== null) throw new Error('bad topic');
    const stream = store.append(parsed.topic, body, 0);
    return encodeStreamFrame(LinkKind.MESSAGE, stream.topicBytes, stream.epochBytes, stream.top, body);
  };
  const frame = ingest();
  const view: StreamFrameView = { kind: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, offset: 0, bodyStart: 0 };
  check(parseStreamFrame(frame, view) && frame.toString('utf8', 0, view.topicEnd) === 'ehr:api:patient:42' && view.offset === 1 && frame.subarray(view.bodyStart).equals(body), 'link frame round trip');
  const wide = new MemoryStreamStore(limits);
  const topics = Array.from({ length: 10_000 }, (_, i) => `user:${i}`);
  let next = 0;
  return [
    { name: 'MPC ingest: isUtf8 + JSON.parse + stamp + history + encode, 100 B', ops: 1, fn: () => void (sink += ingest().length) },
    { name: 'MPC stamp + history only, 10k topics round robin', ops: 1, fn: () => void (sink += wide.append(topics[(next = (next + 1) % topics.length)]!, body, 0).top) },
    { name: 'gateway: parse link frame + topic string', ops: 1, fn: () => void (sink += parseStreamFrame(frame, view) ? frame.toString('utf8', 0, view.topicEnd).length : 0) },
  ];
}

export function frameCases(): MicroCase[] {
  const rows: MicroCase[] = [];
  for (const size of [100, 1000, 70_000]) {
    const source = sampleBody('bench', size);
    const frame = encodeTextFrame(source, 0, source.length);
    const header = size < 126 ? 2 : size < 65536 ? 4 : 10;
    const declared = header === 2 ? frame[1]! : header === 4 ? frame.readUInt16BE(2) : frame.readUInt32BE(6);
    check(frame[0] === 0x81 && declared === source.length && frame.subarray(header).equals(source), `frame of ${size} B`);
    let sink = 0;
    rows.push({ name: `encodeTextFrame ${source.length} B`, ops: 1, fn: () => void (sink += encodeTextFrame(source, 0, source.length).length) });
  }
  const body = sampleBody('bench', 100);
  const frame = encodeTextFrame(body, 0, body.length);
  const positioned = positionedFrame(frame, 'AbCdEfGh', 12345);
  // Past 125 bytes of payload the frame header is 4 bytes (RFC 6455 5.2), as it is here.
  const positionedHeader = (positioned[1]! & 0x7f) === 126 ? 4 : (positioned[1]! & 0x7f) === 127 ? 10 : 2;
  check((JSON.parse(positioned.toString('utf8', positionedHeader)) as { offset: number }).offset === 12345, 'tormq.v2 frame is JSON with the position');
  let sink = 0;
  rows.push({ name: 'tormq.v2 frame from a 100 B body frame', ops: 1, fn: () => void (sink += positionedFrame(frame, 'AbCdEfGh', 12345).length) });
  return rows;
}
