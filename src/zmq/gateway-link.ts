/**
 * The MPC ⇄ gateway link (tormq's own wire; the original two-frame format is served on the MPC's
 * plain port). One ZeroMQ XPUB on the MPC, one XSUB per gateway.
 *
 * MPC → gateway, every message ONE frame (zeromq.js pays ~1.2 µs per received frame, measured: 2.7 µs
 * for a one-frame message vs 5.2 µs for three, /work/scratch/recvtest.mjs-style loop of 100,000):
 * - stream message: `[topic][0x00][MESSAGE][epochLen u8][offset f64 LE][epoch][body]`
 * - position:       `[topic][0x00][POSITION][epochLen u8][offset f64 LE][epoch]` — sent whenever the MPC
 *   sees a subscription to `topic` exactly (also a repeated one), to every gateway subscribed to it:
 *   from here on the subscriber gets every message of the stream after `offset`. It is the
 *   subscription's confirmation (subscriptions travel on ZeroMQ pipes that can drop) and a free
 *   position check. One more byte, 0x00, after the epoch: the MPC holds no stream for the topic
 *   (nobody published it there) and the position is its fresh epoch at 0 (UNHELD_BODY).
 * - subtree:        `[root][':'][0x00][SUBTREE][0][0 f64]` — the confirmation of a subscription to every
 *   topic below `root` (`root:`): from here on the subscriber gets every message published below it.
 * - batch:          `[root][':'][0x00][BATCH][0][0 f64]` then `[u32 LE length][stream message frame]`
 *   repeated: stream messages of topics below one root (never the root's own topic, which keeps its
 *   own key), in order, travelling under the subtree key `root:` like each of them would. The MPC
 *   sends one per root for what one read of its publisher socket brought (mpc/link-batcher.ts), while
 *   every gateway linked to it has subscribed its batch capability (below):
 *   zeromq.js costs about the same CPU per frame whatever its size (`node dist/bench/zmq-frames.js`:
 *   200-byte messages one per frame, 10.7 µs sent / 12.3 received per message; 100 per frame, 1.8 /
 *   1.3), so a frame per message was most of the link's cost.
 * - private:        `[0x00][gateway id, 16 bytes][REPLY][u32 LE header length][JSON header][u32 LE length][bytes]…`
 *   (answers to one gateway's requests; the gateway subscribes to `0x00 + id`).
 *
 * Gateway → MPC:
 * - `0x01 topic 0x00` / `0x00 topic 0x00`: subscribe / unsubscribe one topic, exactly (the 0x00 ends the
 *   prefix ZeroMQ matches, so `ehr` never matches `ehrx` or `ehr:api`).
 * - `0x01 root ':'` / `0x00 root ':'`: subscribe / unsubscribe every topic below a root. A gateway
 *   subscribes a root with both (the root exactly and its subtree): one root, two keys, whatever the
 *   number of topics its clients hold below it.
 * - `0x01 0x00 id`: subscribe to its private replies; `0x01 0x00 id 0xFF`: "I read batch frames".
 * - `0x02 JSON`: a request (history, positions), answered on the private key.
 * - `0x03 JSON`: a presence report (gopusher's cluster-wide online counts, mpc/presence.ts): the
 *   gateway's connections per joined card, incrementally and in periodic snapshots, each report
 *   numbered; a report lost on the way is seen as a hole in the numbers and answered on the private
 *   key with `presence-resync` (send a snapshot).
 */

export const LinkKind = {
  MESSAGE: 1,
  POSITION: 2,
  REPLY: 3,
  SUBTREE: 4,
  BATCH: 5,
} as const;

export const GATEWAY_ID_BYTES = 16;
export const REQUEST = 0x02;
const COLON = 0x3a;
const PRESENCE = 0x03;
/** Offset of the kind byte after a topic of `n` bytes: the topic and its 0x00 terminator. */
const FIXED_HEADER = 10; // kind, epoch length, f64 offset

/**
 * Stream message, position or subtree frame (MPC side). `body` may be null for a position; a subtree
 * confirmation's "topic" is the root and its `:` (never a topic: topics have no empty segment).
 */
export function encodeStreamFrame(kind: typeof LinkKind.MESSAGE | typeof LinkKind.POSITION | typeof LinkKind.SUBTREE, topic: Buffer, epoch: Buffer, offset: number, body: Buffer | null): Buffer {
  const bodyLength = body === null ? 0 : body.length;
  const frame = Buffer.allocUnsafe(topic.length + 1 + FIXED_HEADER + epoch.length + bodyLength);
  topic.copy(frame, 0);
  let at = topic.length;
  frame[at++] = 0;
  frame[at++] = kind;
  frame[at++] = epoch.length;
  frame.writeDoubleLE(offset, at);
  at += 8;
  epoch.copy(frame, at);
  at += epoch.length;
  if (body !== null) body.copy(frame, at);
  return frame;
}

/** Where the parts of a stream frame are (gateway side; reused, no allocation per message). */
export interface StreamFrameView {
  kind: number;
  /** Bytes [0, topicEnd) are the topic. */
  topicEnd: number;
  epochStart: number;
  epochEnd: number;
  offset: number;
  /** Bytes [bodyStart, frame.length) are the body (empty for a position). */
  bodyStart: number;
}

/**
 * Parses a stream frame into `view`; false when it is not one (malformed, or a private frame, which
 * starts with 0x00).
 */
export function parseStreamFrame(frame: Buffer, view: StreamFrameView): boolean {
  const topicEnd = frame.indexOf(0);
  if (topicEnd <= 0 || frame.length < topicEnd + 1 + FIXED_HEADER) return false;
  const kind = frame[topicEnd + 1]!;
  const epochLength = frame[topicEnd + 2]!;
  const epochStart = topicEnd + 1 + FIXED_HEADER;
  if (kind < LinkKind.MESSAGE || kind > LinkKind.BATCH || kind === LinkKind.REPLY || frame.length < epochStart + epochLength) return false;
  view.kind = kind;
  view.topicEnd = topicEnd;
  view.offset = frame.readDoubleLE(topicEnd + 3);
  view.epochStart = epochStart;
  view.epochEnd = epochStart + epochLength;
  view.bodyStart = epochStart + epochLength;
  return true;
}

/** Bytes a batch frame adds: its header (after the key) and a length per message. */
const BATCH_HEADER_BYTES = 1 + FIXED_HEADER;
const BATCH_ENTRY_BYTES = 4;

/** A batch of stream message frames under `subtreeKey` (`root:`, bytes); `bytes` is their total length. */
export function encodeBatch(subtreeKey: Buffer, frames: readonly Buffer[], bytes: number): Buffer {
  const batch = Buffer.allocUnsafe(subtreeKey.length + BATCH_HEADER_BYTES + frames.length * BATCH_ENTRY_BYTES + bytes);
  subtreeKey.copy(batch, 0);
  let at = subtreeKey.length;
  batch[at++] = 0;
  batch[at++] = LinkKind.BATCH;
  batch[at++] = 0;
  batch.fill(0, at, at + 8);
  at += 8;
  for (const frame of frames) {
    batch.writeUInt32LE(frame.length, at);
    frame.copy(batch, at + BATCH_ENTRY_BYTES);
    at += BATCH_ENTRY_BYTES + frame.length;
  }
  return batch;
}

/**
 * Calls `each(start, end)` for every message frame of a batch whose header `view` parsed; false (and
 * nothing called) when the batch is malformed.
 */
export function forEachInBatch(batch: Buffer, view: StreamFrameView, each: (start: number, end: number) => void): boolean {
  let at = view.bodyStart;
  // Checked whole first: a malformed batch delivers none of its messages rather than some.
  while (at < batch.length) {
    if (at + BATCH_ENTRY_BYTES > batch.length) return false;
    const length = batch.readUInt32LE(at);
    at += BATCH_ENTRY_BYTES + length;
    if (length === 0 || at > batch.length) return false;
  }
  for (at = view.bodyStart; at < batch.length;) {
    const length = batch.readUInt32LE(at);
    each(at + BATCH_ENTRY_BYTES, at + BATCH_ENTRY_BYTES + length);
    at += BATCH_ENTRY_BYTES + length;
  }
  return true;
}

/** The subscription message for exactly `topic` (`on`) or its cancellation. */
export function topicSubscription(topic: string, on: boolean): Buffer {
  const bytes = Buffer.from(`\u0000${topic}\u0000`, 'utf8');
  bytes[0] = on ? 1 : 0;
  return bytes;
}

/** The subscription to every topic below `root` (not `root` itself: see topicSubscription). */
export function subtreeSubscription(root: string, on: boolean): Buffer {
  const bytes = Buffer.from(`\u0000${root}:`, 'utf8');
  bytes[0] = on ? 1 : 0;
  return bytes;
}

/** The key a gateway's private replies are sent under, and its subscription. */
export function privateKey(gatewayId: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0]), gatewayId]);
}

export function privateSubscription(gatewayId: Buffer, on: boolean): Buffer {
  return Buffer.concat([Buffer.from([on ? 1 : 0, 0]), gatewayId]);
}

/** The last byte of a gateway's batch capability key (no frame the MPC sends has it there: replies have REPLY). */
const BATCH_CAPABLE = 0xff;

/**
 * "This gateway reads batch frames": a subscription to `0x00 id 0xFF`, a key no frame ever matches.
 * The MPC batches only while every gateway linked to it has said so (mpc/gateway-control.ts), so a
 * gateway older than batches keeps getting one frame per message during a rolling upgrade. An MPC
 * older than batches counts the key as one bad gateway frame and sends single frames, as it always did.
 */
export function batchCapability(gatewayId: Buffer, on: boolean): Buffer {
  return Buffer.concat([Buffer.from([on ? 1 : 0, 0]), gatewayId, Buffer.from([BATCH_CAPABLE])]);
}

/** A private or capability (un)subscription: the gateway id, and whether it is the batch capability. */
export function parseGatewayKey(frame: Buffer): { id: Buffer; batchCapable: boolean } | null {
  if (frame.length < 2 || frame[0]! > 1 || frame[1] !== 0) return null;
  if (frame.length === 2 + GATEWAY_ID_BYTES) return { id: frame.subarray(2), batchCapable: false };
  if (frame.length === 3 + GATEWAY_ID_BYTES && frame[frame.length - 1] === BATCH_CAPABLE) return { id: frame.subarray(2, 2 + GATEWAY_ID_BYTES), batchCapable: true };
  return null;
}

/**
 * The subscription keys (latin1 strings of their bytes) an MPC → gateway frame travels under, into
 * `out`; returns how many. What libzmq's prefix match gives for the keys gateways subscribe:
 * - a private reply (`0x00 id …`): the gateway's private key `0x00 id`;
 * - a frame of topic `t` (`t 0x00 …`: a message, a position): `t 0x00` (the topic exactly) and, when
 *   `t` has segments below its root `r`, `r:` (the root's subtree);
 * - a batch or a subtree confirmation (`r: 0x00 …`): `r:`.
 */
export function linkKeys(frame: Buffer, out: string[]): number {
  if (frame.length === 0) return 0;
  if (frame[0] === 0) {
    out[0] = frame.toString('latin1', 0, 1 + GATEWAY_ID_BYTES);
    return 1;
  }
  const end = frame.indexOf(0);
  if (end < 0) return 0;
  out[0] = frame.toString('latin1', 0, end + 1);
  let colon = 0;
  while (colon < end && frame[colon] !== COLON) colon++;
  if (colon === end) return 1;
  out[1] = frame.toString('latin1', 0, colon + 1);
  return 2;
}

/** Requests a gateway sends to the MPC (JSON after a 0x02 byte). */
export type LinkRequest = HistoryRequest | PositionsRequest;

/**
 * Where these streams stand now. The reply travels the same ordered pipe as the messages, so any
 * message at or below a reported offset that has not arrived before the reply was lost on the way:
 * the gateway's check for losses at the end of a burst, which no later message would reveal.
 */
export interface PositionsRequest {
  readonly type: 'positions';
  readonly id: number;
  readonly reply: string;
  readonly topics: readonly string[];
  /**
   * Give a topic without a stream one now (a new epoch at offset 0): a gateway routing a topic for the
   * first time needs an epoch its clients can resume from, even before the first message.
   */
  readonly create?: boolean;
}

export interface HistoryRequest {
  readonly type: 'history';
  /** Request id, echoed in the reply. */
  readonly id: number;
  /** The requesting gateway's id (base64url), the key of the reply. */
  readonly reply: string;
  readonly topic: string;
  /** The epoch the requester knows the stream by ('' when it knows none). */
  readonly epoch: string;
  /** Messages after this offset are wanted. */
  readonly after: number;
  /** At most this many. */
  readonly limit: number;
}

export type HistoryStatus =
  /** `bodies` are the messages at offsets `from`, `from + 1`, …; `more` when the limit or size cut the reply short. */
  | 'ok'
  /** The stream has another epoch now (the MPC restarted or forgot it): its current position is in the reply. */
  | 'epoch'
  /** Messages after `after` are no longer held (size, age or count limits). */
  | 'evicted'
  /** `after` lies beyond the stream's top offset. */
  | 'ahead';

export interface HistoryReplyHeader {
  readonly type: 'history';
  readonly id: number;
  readonly status: HistoryStatus;
  readonly epoch: string;
  /** The stream's top offset when the reply was made. */
  readonly top: number;
  /** Offset of the first body. */
  readonly from: number;
  readonly more: boolean;
  /**
   * false: the MPC holds no stream of the topic (nobody published it there), so the answer speaks for
   * that MPC only; with several MPCs, the one holding the stream answers for it (history-client.ts).
   * Absent from MPCs older than the field, which held a stream for every topic asked about.
   */
  readonly held?: false;
}

/**
 * Marks a position the MPC gave for a topic it holds no stream of (nobody published it there): its
 * fresh epoch at offset 0. With several MPCs linked, the one that holds the stream is the one to
 * believe; the others' positions say nothing about it (gateway/main/fan-out.ts). An MPC older than the
 * mark held a stream for every topic it was asked about; a gateway older than it ignores the mark.
 */
export const UNHELD = 0;
/** The body of a POSITION frame for a topic not held (a held one has none). */
export const UNHELD_BODY = Buffer.from([UNHELD]);

/** [epoch, top offset], and UNHELD third for a baseline's position of a topic the MPC holds no stream of. */
export type PositionEntry = readonly [string, number] | readonly [string, number, typeof UNHELD];

export interface PositionsReplyHeader {
  readonly type: 'positions';
  readonly id: number;
  /** Per requested topic, in order ('' and 0 when a check asks about a stream the MPC does not hold). */
  readonly positions: ReadonlyArray<PositionEntry>;
}

export type LinkReplyHeader =
  | HistoryReplyHeader
  | PositionsReplyHeader
  | { readonly type: 'ready'; readonly mpc: string }
  /** The MPC's presence view of this gateway is incomplete (a report was lost, or it restarted): send a snapshot. */
  | { readonly type: 'presence-resync' };

export function encodeRequest(request: LinkRequest): Buffer {
  const json = Buffer.from(JSON.stringify(request), 'utf8');
  const frame = Buffer.allocUnsafe(json.length + 1);
  frame[0] = REQUEST;
  json.copy(frame, 1);
  return frame;
}

/** The request in a frame received by the MPC's XPUB, or null when the frame is not a request. */
export function parseRequest(frame: Buffer): LinkRequest | null {
  if (frame.length < 2 || frame[0] !== REQUEST) return null;
  try {
    const request = JSON.parse(frame.toString('utf8', 1)) as LinkRequest;
    return typeof request === 'object' && request !== null && (request.type === 'history' || request.type === 'positions') ? request : null;
  } catch {
    return null;
  }
}

export function encodeReply(gatewayId: Buffer, header: LinkReplyHeader, parts: readonly Buffer[] = []): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  let size = 1 + gatewayId.length + 1 + 4 + json.length;
  for (const part of parts) size += 4 + part.length;
  const frame = Buffer.allocUnsafe(size);
  frame[0] = 0;
  gatewayId.copy(frame, 1);
  let at = 1 + gatewayId.length;
  frame[at++] = LinkKind.REPLY;
  frame.writeUInt32LE(json.length, at);
  at += 4;
  json.copy(frame, at);
  at += json.length;
  for (const part of parts) {
    frame.writeUInt32LE(part.length, at);
    at += 4;
    part.copy(frame, at);
    at += part.length;
  }
  return frame;
}

/** A private reply (gateway side): its header and parts (views into the frame), or null when malformed. */
export function parseReply(frame: Buffer): { header: LinkReplyHeader; parts: Buffer[] } | null {
  const start = 1 + GATEWAY_ID_BYTES;
  if (frame.length < start + 5 || frame[0] !== 0 || frame[start] !== LinkKind.REPLY) return null;
  let at = start + 1;
  const headerLength = frame.readUInt32LE(at);
  at += 4;
  if (at + headerLength > frame.length) return null;
  let header: LinkReplyHeader;
  try {
    header = JSON.parse(frame.toString('utf8', at, at + headerLength)) as LinkReplyHeader;
  } catch {
    return null;
  }
  at += headerLength;
  const parts: Buffer[] = [];
  while (at < frame.length) {
    if (at + 4 > frame.length) return null;
    const length = frame.readUInt32LE(at);
    at += 4;
    if (at + length > frame.length) return null;
    parts.push(frame.subarray(at, at + length));
    at += length;
  }
  return { header, parts };
}

/**
 * A gateway's presence report. Counts are absolute (`[card, connections, …]`; 0: the card has none
 * here any more), so applying a report twice changes nothing and a lost one is repaired by any later
 * report of the same cards or by a snapshot.
 */
export interface PresenceReport {
  /** The gateway's id (base64url), the key of its private replies. */
  readonly gw: string;
  /** Numbers every report of the gateway, from 1: a hole means reports were lost. */
  readonly seq: number;
  /** The MPC forgets the gateway (and its counts) this many ms after its last report. */
  readonly ttl: number;
  /** WebSocket connections on the gateway, joined or not (gopusher's System.clientNum). */
  readonly clients: number;
  /** Its worker threads. */
  readonly workers: number;
  /**
   * `delta`: these cards changed (an empty one is a heartbeat); `snapshot`: part `part` of `parts` of
   * the full list, sent back to back, replacing what the MPC holds once all parts are in; `bye`: the
   * gateway stops (forget it now).
   */
  readonly kind: 'delta' | 'snapshot' | 'bye';
  readonly part?: number;
  readonly parts?: number;
  readonly cards: ReadonlyArray<string | number>;
}

export function encodePresence(report: PresenceReport): Buffer {
  const json = JSON.stringify(report);
  const frame = Buffer.allocUnsafe(1 + Buffer.byteLength(json));
  frame[0] = PRESENCE;
  frame.write(json, 1, 'utf8');
  return frame;
}

/** Whether a frame received by the MPC's XPUB is a presence report (checked by parsePresence). */
export function isPresenceFrame(frame: Buffer): boolean {
  return frame.length > 1 && frame[0] === PRESENCE;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 1e9;

/** The report in a frame, or null when it is not a well-formed one (cards are checked by the MPC). */
export function parsePresence(frame: Buffer): PresenceReport | null {
  if (!isPresenceFrame(frame)) return null;
  let report: PresenceReport;
  try {
    report = JSON.parse(frame.toString('utf8', 1)) as PresenceReport;
  } catch {
    return null;
  }
  if (report === null || typeof report !== 'object' || typeof report.gw !== 'string' || !isCount(report.seq) ||
    !isCount(report.ttl) || !isCount(report.clients) || !isCount(report.workers) || !Array.isArray(report.cards) || report.cards.length % 2 !== 0) return null;
  if (report.kind === 'snapshot') {
    if (!isCount(report.part) || !isCount(report.parts) || report.part >= report.parts) return null;
  } else if (report.kind !== 'delta' && report.kind !== 'bye') return null;
  for (let i = 0; i < report.cards.length; i += 2) {
    if (typeof report.cards[i] !== 'string' || !isCount(report.cards[i + 1])) return null;
  }
  return report;
}
