/**
 * What gateways send the MPC on their link (zmq/gateway-link.ts): topic subscriptions, each answered
 * with the stream's position (the subscription's confirmation), a gateway's subscription to its private
 * replies (answered "ready"), history requests, and presence reports (mpc/presence.ts). Control
 * plane: nothing here runs per published message.
 */
import { performance } from 'node:perf_hooks';
import { topicError } from '../protocol/topic.js';
import { encodeReply, parseGatewayKey, encodeStreamFrame, GATEWAY_ID_BYTES, isPresenceFrame, LinkKind, parsePresence, parseRequest, UNHELD, UNHELD_BODY, type HistoryRequest, type PositionEntry, type PositionsRequest } from '../zmq/gateway-link.js';

/** Most topics one position check names (the gateway sends several). */
export const MAX_POSITIONS_PER_REQUEST = 1000;
const COLON = 0x3a;
const EMPTY = Buffer.alloc(0);
import type { LinkBatcher } from './link-batcher.js';
import type { PresenceTable } from './presence.js';
import type { StreamStore } from './streams.js';

export interface GatewayControlLimits {
  readonly maxTopicLength: number;
  /** Most messages one history reply carries (the gateway asks again for the rest). */
  readonly maxReplyMessages: number;
  /** About how many body bytes one history reply carries. */
  readonly maxReplyBytes: number;
}

export class GatewayControl {
  /** Subscriptions confirmed with a position. */
  positionsSent = 0;
  /** History requests answered, by status. */
  readonly historyReplies = { ok: 0, epoch: 0, evicted: 0, ahead: 0 };
  /** Frames from gateways that were none of the above. */
  badRequests = 0;
  /** Position checks answered (each covers up to MAX_POSITIONS_PER_REQUEST topics). */
  positionChecks = 0;

  constructor(
    private readonly limits: GatewayControlLimits,
    private readonly streams: StreamStore,
    private readonly gateways: LinkBatcher,
    /** This MPC process's id (reported to gateways in "ready"). */
    private readonly instance: string,
    /** gopusher presence: where gateways' reports go. */
    private readonly presence: PresenceTable | null = null,
  ) {}

  /** One frame a gateway sent. */
  handle(frame: Buffer): void {
    const type = frame[0];
    if ((type === 0 || type === 1) && frame.length > 1 && frame[1] === 0) {
      // A gateway's private channel or batch capability, or (unsubscribed) the gateway gone: ZeroMQ
      // passes an unsubscription when no one holds the key any more, and each gateway's is its own.
      const key = parseGatewayKey(frame);
      if (key === null) this.badRequests++;
      else if (type === 0) this.gateways.gatewayGone(key.id.toString('latin1'));
      else if (key.batchCapable) this.gateways.gatewayReadsBatches(key.id.toString('latin1'));
      else {
        this.gateways.gatewayLinked(key.id.toString('latin1'));
        // Confirmed, so the gateway knows replies can reach it.
        this.gateways.send(encodeReply(key.id, { type: 'ready', mpc: this.instance }));
      }
      return;
    }
    if (type === 1 && frame.length > 2 && frame[frame.length - 1] === COLON) {
      // A subtree (`root:`): confirmed with a frame only that subscription matches.
      const root = frame.toString('utf8', 1, frame.length - 1);
      if (root.includes(':') || topicError(root, this.limits.maxTopicLength) !== null) {
        this.badRequests++;
        return;
      }
      this.gateways.send(encodeStreamFrame(LinkKind.SUBTREE, frame.subarray(1), EMPTY, 0, null));
      this.positionsSent++;
      return;
    }
    if (type === 1) {
      const end = frame.length - 1;
      const topic = frame[end] === 0 ? frame.toString('utf8', 1, end) : null;
      if (topic === null || topicError(topic, this.limits.maxTopicLength) !== null) {
        this.badRequests++;
        return;
      }
      const held = this.streams.peek(topic) !== undefined;
      const stream = this.streams.position(topic);
      this.gateways.send(encodeStreamFrame(LinkKind.POSITION, stream.topicBytes, stream.epochBytes, stream.top, held ? null : UNHELD_BODY));
      this.positionsSent++;
      return;
    }
    if (type === 0) return; // an unsubscription: ZeroMQ already stopped sending that topic
    if (isPresenceFrame(frame)) {
      const report = parsePresence(frame);
      if (report === null || this.presence === null || Buffer.from(report.gw, 'base64url').length !== GATEWAY_ID_BYTES) this.badRequests++;
      else this.presence.report(report, performance.now());
      return;
    }
    const request = parseRequest(frame);
    if (request === null) {
      this.badRequests++;
      return;
    }
    if (request.type === 'history') this.history(request);
    else this.positions(request);
  }

  /** Where each stream stands (a gateway's check for losses no later message would reveal). */
  private positions(request: PositionsRequest): void {
    const id = Buffer.from(String(request.reply), 'base64url');
    if (id.length !== GATEWAY_ID_BYTES || !Array.isArray(request.topics) || request.topics.length > MAX_POSITIONS_PER_REQUEST) {
      this.badRequests++;
      return;
    }
    this.positionChecks++;
    const positions = request.topics.map((topic): PositionEntry => {
      if (typeof topic !== 'string' || topicError(topic, this.limits.maxTopicLength) !== null) return ['', 0];
      // A baseline (`create`) gets a position for any topic (nothing is created: streams.ts), marked when
      // no stream is held; a check only for streams held here. So with several MPCs the one without the
      // stream never passes for the one publishing it (gateway-link.ts, UNHELD).
      const held = this.streams.peek(topic) !== undefined;
      if (!held && request.create !== true) return ['', 0];
      const stream = this.streams.position(topic);
      return held ? [stream.epoch, stream.top] : [stream.epoch, stream.top, UNHELD];
    });
    this.gateways.send(encodeReply(id, { type: 'positions', id: request.id, positions }));
  }

  private history(request: HistoryRequest): void {
    const id = Buffer.from(String(request.reply), 'base64url');
    if (id.length !== GATEWAY_ID_BYTES || typeof request.topic !== 'string' || topicError(request.topic, this.limits.maxTopicLength) !== null ||
      typeof request.epoch !== 'string' || !Number.isSafeInteger(request.after) || request.after < 0 || !Number.isSafeInteger(request.limit) || request.limit < 1) {
      this.badRequests++;
      return;
    }
    const limit = Math.min(request.limit, this.limits.maxReplyMessages);
    const held = this.streams.peek(request.topic) !== undefined ? {} : { held: false as const };
    const read = this.streams.read(request.topic, request.epoch, request.after, limit, this.limits.maxReplyBytes, performance.now());
    this.historyReplies[read.status]++;
    if (read.status === 'ok') {
      this.gateways.send(encodeReply(id, { type: 'history', id: request.id, status: 'ok', epoch: read.epoch, top: read.top, from: read.from, more: read.more, ...held }, read.bodies));
    } else {
      this.gateways.send(encodeReply(id, { type: 'history', id: request.id, status: read.status, epoch: read.epoch, top: read.top, from: 0, more: false, ...held }));
    }
  }
}
