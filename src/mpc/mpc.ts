/**
 * The MPC: publishers connect to its publisher port (a SUB that takes everything), gateways to its
 * gateway port (an XPUB). Every valid message is stamped with its stream position, kept in history and
 * forwarded to the gateways subscribed to its topic (forwarder.ts); gateways' subscriptions are
 * confirmed with positions and their history requests answered (gateway-control.ts). Original TORMQ
 * gateways get the plain `[root, body]` output on the plain port, when one is given.
 *
 * @example
 * ```ts
 * const mpc = await startMpc({ publisherPort: 5559, gatewayPort: 5560 });
 * console.log(mpc.stats());
 * await mpc.close();
 * ```
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ConnectionBudget, socketBudget } from '../descriptors.js';
import { zeromq } from '../zmq/zeromq.js';
import { boolean, defineOptions, int, nonEmptyString, satisfies, type ConfigOf, type InputOf } from '../options/options.js';
import { assertCurveAvailable, isCurveKey } from '../zmq/curve.js';
import { bindFailure, bindOrFail, portOf, tcpEndpoint } from '../zmq/endpoint.js';
import { ZmtpPublisher } from '../zmq/zmtp-publisher.js';
import { ZmtpSubscriber } from '../zmq/zmtp-subscriber.js';
import { libzmqHeartbeat, probeEvery } from '../zmq/zmtp-peer.js';
import { encodeReply, linkKeys } from '../zmq/gateway-link.js';
import { receiveLoop } from '../zmq/receive-loop.js';
import { SerialSender } from '../zmq/serial-sender.js';
import { registerZapDomain } from '../zmq/zap-handler.js';
import { Forwarder, type PublishDropReason } from './forwarder.js';
import { LinkBatcher, MAX_BATCH_BYTES } from './link-batcher.js';
import { GatewayControl } from './gateway-control.js';
import { PresenceTable, type PresenceStats } from './presence.js';
import { EvictionReclaimer } from './reclaim.js';
import { MemoryStreamStore, type StreamStore } from './streams.js';
import { watchHandshakeFailures, type HandshakeFailure } from '../zmq/handshake-failures.js';

export interface MpcCurveOptions {
  /** The MPC's secret key (Z85); publishers and gateways need its public half as `serverKey`. */
  secretKey: string;
  /** Public keys (Z85) allowed to publish; omitted = any client that knows the server key. */
  allowedPublishers?: readonly string[];
  /** Public keys (Z85) allowed to subscribe (gateways); omitted = any client that knows the server key. */
  allowedGateways?: readonly string[];
  /** Called for each refused handshake (a key not on the list, or a non-CURVE peer cannot even get here). */
  onDenied?(denial: { role: 'publisher' | 'gateway'; publicKey: string | null; address: string }): void;
  /** Called when a handshake fails before any key is checked: a plain (non-CURVE) peer, or a wrong server key. */
  onHandshakeFailed?(failure: HandshakeFailure & { role: 'publisher' | 'gateway' }): void;
}

const isKeyList = (keys: unknown) => keys === undefined || (Array.isArray(keys) && keys.every(isCurveKey));
const HISTORY = 'History (README, "Recoverable delivery")';

export const MPC_OPTIONS = defineOptions('an MPC', {
  host: { default: '127.0.0.1', check: nonEmptyString, help: 'address to bind; 0.0.0.0 for remote publishers and gateways' },
  publisherPort: { default: 5559, check: int(0, 65535), help: 'port publishers connect to; 0 picks a free port' },
  gatewayPort: { default: 5560, check: int(0, 65535), help: 'port tormq gateways connect to; 0 picks a free port' },
  plainPort: {
    default: -1,
    defaultText: 'off',
    check: int(-1, 65535, 'an integer from 0 to 65535 (or -1 for off)'),
    help: 'also serve the original two-frame [root, body] output here, for original TORMQ gateways',
  },
  /**
   * Messages the MPC buffers per peer before ZeroMQ drops (pub/sub never blocks): the publisher
   * socket's receive and the gateway sockets' send high-water mark. ZeroMQ's default of 1000 lost
   * messages in a 5000-message burst whenever a gateway paused briefly (test/e2e/python-clients).
   */
  highWaterMark: { default: 100_000, check: int(1), help: 'messages buffered per gateway with libzmq\'s XPUB (CURVE or --no-zmtp-link; the ZMTP link server holds --gateway-queue-bytes instead), and per publisher with libzmq\'s SUB (CURVE or --no-zmtp-reader), before ZeroMQ drops; the ZMTP reader never drops: it reads as fast as it handles' },
  gatewayQueueBytes: {
    default: 32 * 1024 * 1024,
    check: int(64 * 1024),
    help: 'bytes the ZMTP link server queues for one gateway that reads too slowly before it drops frames to it (counted in sendQueueDrops; the gateway sees the offsets skip and repairs from history). At least twice --max-message-bytes; batches leave at a quarter of it at most, history pages at half',
  },
  gatewayQueueTotalBytes: {
    default: 256 * 1024 * 1024,
    check: int(64 * 1024),
    help: 'bytes the ZMTP link server queues for all gateways together; past it, the gateway connection holding the most is closed (a gateway reconnects and repairs from history), counted in gatewayQueue.cutOverTotal and logged. At least --gateway-queue-bytes',
  },
  zmtpReader: {
    default: true,
    check: boolean,
    help: 'read the publisher port with tormq\'s own ZMTP reader (plain TCP; CURVE always uses libzmq): about a third of the MPC\'s CPU per message at 10k msgs/s; off: libzmq\'s SUB',
  },
  zmtpLink: {
    default: true,
    check: boolean,
    help: 'serve the gateway port with tormq\'s own ZMTP XPUB (plain TCP; CURVE always uses libzmq): one write per gateway per turn instead of a libzmq hand-over per frame; off: libzmq\'s XPUB',
  },
  peerHeartbeatMs: {
    default: 2000,
    check: int(0, 3_600_000),
    help: 'ping publishers and gateways that do not ping the MPC themselves every N ms, and close a connection with nothing from it for 5 N (a host that vanished, a stopped process: TCP alone holds such a connection for ever when the MPC does not write to it); only ZMTP 3.1 peers (libzmq 4.2 and later answer PINGs by themselves; older ones are never pinged), only on tormq\'s own ZMTP ports, counted in silentPeers; a peer whose PINGs carry a TTL is judged by that instead. libzmq\'s sockets (CURVE, --no-zmtp-reader, --no-zmtp-link) ping and close likewise, uncounted; 0: off',
  },
  coalesceMs: {
    default: 0,
    check: int(0, 1000),
    help: 'messages for gateways leave at most once per this many ms while they keep coming (one after a quiet N ms leaves at once), so that more of them share a link frame: fewer wake-ups at both ends, for up to N ms of latency under load (measured 2026-12-07, unicast, 2 workers: 1 ms cut MPC + gateway CPU per message from 17.3-18.3 to 16.1-16.6 µs at 40k msgs/s and from 35-37 to 33-35 at 10k, p50 +1.1 ms; at 1k msgs/s p50 stayed 0.2 ms); 0: what each read from publishers brought leaves at once',
  },
  fdReserve: {
    default: 64,
    check: int(0),
    help: 'descriptors kept for the admin port and what opens later: connections on the MPC\'s ports are capped at the open-files limit (ulimit -n) minus those in use at start minus this, of which the gateway port has its own quarter (at most 256), the --http and --grpc ports an eighth each (at most 256), the publisher port the rest; at its cap the oldest connection still in its handshake is closed for a new one, or the new one when all have completed it, counted (connections in /stats) and logged (Linux; tormq\'s own ZMTP endpoints, not libzmq\'s with CURVE)',
  },
  maxMessageBytes: { default: 1024 * 1024, check: int(1), help: 'largest published body accepted; larger ones are dropped and counted' },
  maxTopicLength: { default: 256, check: int(1, 65535), help: 'longest topic accepted from publishers' },
  historySize: { default: 100, check: int(0, 1_000_000), help: 'messages kept per topic for recovery (0: none; positions are still assigned)', section: HISTORY },
  historyTtlMs: { default: 300_000, check: int(1000), help: 'how long a message stays in history, ms', section: HISTORY },
  historyMaxBytes: { default: 256 * 1024 * 1024, check: int(1024), help: 'all topics\' history together, bytes; the least recently published topics lose theirs first', section: HISTORY },
  historyMaxStreams: {
    default: 1_000_000,
    check: int(1),
    help: 'published topics whose position (epoch, offset) is remembered after their messages are gone; past it the least recently used is forgotten (and topics not held move to a new epoch)',
    section: HISTORY,
  },
  presenceMaxEntries: {
    default: 2_000_000,
    check: int(1, 1_000_000_000),
    help: 'gopusher presence: (gateway, card) pairs held, all gateways together (~200 bytes each); past it new cards read as offline (counted)',
  },
  curve: {
    default: undefined as MpcCurveOptions | undefined,
    check: satisfies<MpcCurveOptions | undefined>(
      '{ secretKey, allowedPublishers?, allowedGateways? } with 40-character Z85 keys',
      (v) => v === undefined || (typeof v === 'object' && v !== null && isCurveKey((v as MpcCurveOptions).secretKey) &&
        isKeyList((v as MpcCurveOptions).allowedPublishers) && isKeyList((v as MpcCurveOptions).allowedGateways)),
    ),
    secret: true,
    help: 'CURVE on every port: encrypted links, and with allowlists, only known keys may connect',
  },
}, (c, fail, name) => {
  const queue = gatewayQueueProblem(c, c.zmtpLink && c.curve === undefined, name);
  if (queue !== null) fail(queue.key, queue.must);
});

type QueueSizes = { gatewayQueueBytes: number; gatewayQueueTotalBytes: number; maxMessageBytes: number };

/**
 * The ZMTP link server drops a frame that does not fit a gateway's queue, and answers a gateway's
 * requests only while half its queue is free: the largest message, and so a history page of it, must
 * fit in half of it, or it could never reach a gateway nor be repaired. Past the total of all queues
 * it closes the gateway holding the most: a total below one queue would close a lone gateway for a
 * history page, again at each reconnect. Null when the sizes hold (or when libzmq's XPUB serves
 * gateways: CURVE, --no-zmtp-link); else the option at fault and what it must be.
 */
export function gatewayQueueProblem(c: QueueSizes, linkServer: boolean, name: (key: keyof QueueSizes) => string): { key: keyof QueueSizes; must: string } | null {
  if (!linkServer) return null;
  if (c.gatewayQueueBytes < 2 * c.maxMessageBytes) {
    return { key: 'gatewayQueueBytes', must: `at least twice ${name('maxMessageBytes')} (${2 * c.maxMessageBytes}): a larger message would be dropped whenever the queue is half full, and could not be repaired from history` };
  }
  if (c.gatewayQueueTotalBytes < c.gatewayQueueBytes) {
    return { key: 'gatewayQueueTotalBytes', must: `at least ${name('gatewayQueueBytes')} (${c.gatewayQueueBytes}): a gateway catching up would be closed at every history page` };
  }
  return null;
}

export type MpcOptions = InputOf<typeof MPC_OPTIONS.specs> & {
  /** Called for each publisher message dropped (the CLI logs them, rate-limited). */
  onDrop?: (reason: PublishDropReason, frames: Buffer[]) => void;
  /** Called when the ZMTP reader closes a publisher connection at the handshake (e.g. a CURVE publisher on a plain port). */
  onPublisherRefused?: (address: string, why: string) => void;
  /** Called when the ZMTP link server closes a gateway connection at the handshake (e.g. a CURVE gateway on a plain port). */
  onGatewayRefused?: (address: string, why: string) => void;
  /** Called when tormq's ZMTP code closes a publisher or gateway connection that went quiet past the TTL its heartbeats asked for, or left the MPC's PINGs unanswered (a stopped or unreachable peer). */
  onPeerSilent?: (port: 'publisher' | 'gateway', address: string, ms: number) => void;
  /** Called when the ZMTP link server closes the gateway connection holding the most because all together held more than `gatewayQueueTotalBytes`. */
  onGatewayOverTotal?: (address: string, limit: number) => void;
  /** Called when a connection to one of the MPC's ports is closed because its share of the connection budget is spent (`fdReserve`): the new one, or an older one still in its handshake (`shed`). */
  onConnectionRefused?: (port: string, address: string, limit: number, shed: boolean) => void;
  /** The publishing ports started beside the MPC (cli/mpc.ts), each given a share of the connection budget (`connectionBudget`). */
  ingressPorts?: readonly IngressPort[];
};
/** Ports of the MPC's process that are not its own: the HTTP ingress and gopusher's gRPC service. */
export type IngressPort = 'http' | 'grpc';
export type MpcConfig = ConfigOf<typeof MPC_OPTIONS.specs>;
export const MPC_DEFAULTS = MPC_OPTIONS.defaults;

/** Most messages and bytes one history reply carries; the gateway asks again for the rest. */
const MAX_REPLY_MESSAGES = 1000;
const MAX_REPLY_BYTES = 4 * 1024 * 1024;
/** A reply's bytes besides its bodies: 4 per body (at most MAX_REPLY_MESSAGES), its header, the ZMTP frame's. */
const REPLY_FRAMING_BYTES = 4 * MAX_REPLY_MESSAGES + 4096;
const SWEEP_INTERVAL_MS = 1000;
/** The gateway port's share of the connection budget: a quarter, at most this (gateways are few). */
const MAX_GATEWAY_CONNECTIONS = 256;
/** An ingress port's share: an eighth, at most this (its clients are backend services). */
const MAX_INGRESS_CONNECTIONS = 256;
/** Gateways whose presence reports stopped are forgotten within this much of their ttl. */
const PRESENCE_SWEEP_MS = 250;
/** Most gateways whose presence is held (more report: refused and counted). */
const MAX_PRESENCE_GATEWAYS = 4096;
/** Largest frame a gateway may send on the ZMTP link (a presence snapshot part is about 1 MB at most). */
const MAX_GATEWAY_FRAME_BYTES = 8 * 1024 * 1024;
/** A full GC after this many bytes received from publishers or evicted from history (mpc/reclaim.ts). */
const RECLAIM_EVERY_BYTES = 64 << 20;

export interface Mpc {
  readonly config: MpcConfig;
  /** Bound endpoints, e.g. `tcp://127.0.0.1:5559` (with the real port when 0 was asked). */
  readonly publisherEndpoint: string;
  readonly gatewayEndpoint: string;
  readonly publisherPort: number;
  readonly gatewayPort: number;
  /** The plain port, or -1 when off. */
  readonly plainPort: number;
  /** This process's id: part of nothing on the wire but logs and `ready` replies. */
  readonly instance: string;
  /** gopusher presence, all gateways (IsOnline, Group, System). */
  readonly presence: PresenceTable;
  /** The share of the connection budget of an ingress port named in `ingressPorts` (undefined otherwise). */
  connectionBudget(port: IngressPort): ConnectionBudget | undefined;
  stats(): MpcStats;
  close(): Promise<void>;
}

export interface MpcStats {
  messagesIn: number;
  forwarded: number;
  /** Frames sent to gateways: messages below one root read together leave as one (link-batcher.ts). */
  linkFrames: number;
  /** Publisher connections closed at the handshake by the ZMTP reader (not a plain ZMTP 3 PUB). */
  publisherHandshakeFailures: number;
  /** Gateway connections closed at the handshake by the ZMTP link server (not a plain ZMTP 3 SUB/XSUB). */
  gatewayHandshakeFailures: number;
  /** Connections closed because the peer went quiet past its heartbeat TTL or left the MPC's PINGs unanswered (tormq's own ZMTP code; libzmq's sockets drop them unseen). */
  silentPeers: { publisher: number; gateway: number };
  /** Connections on the publisher and gateway ports (and the ingress ports) now, their caps (null: none, not Linux or libzmq's endpoints) and those closed at them. */
  connections: Record<'publisher' | 'gateway', ReturnType<ConnectionBudget['stats']>> & Partial<Record<IngressPort, ReturnType<ConnectionBudget['stats']>>>;
  publishDrops: Record<PublishDropReason, number>;
  positionsSent: number;
  historyReplies: Record<string, number>;
  badGatewayFrames: number;
  /** Frames not sent because a send queue was full: a gateway past its high-water mark (it repairs from history), or a SerialSender's queue (never expected). */
  sendQueueDrops: number;
  /** The ZMTP link server's queues (null with libzmq's XPUB): bytes held for all gateways now, connections closed for that total, requests skipped from gateways with half their queue unread. */
  gatewayQueue: { bytes: number; cutOverTotal: number; requestsSkipped: number } | null;
  /** History, and the full GCs run to give evicted history back (mpc/reclaim.ts). */
  history: ReturnType<StreamStore['stats']> & { reclaimCollections: number };
  /** gopusher presence (mpc/presence.ts). */
  presence: PresenceStats;
}

export async function startMpc(options: MpcOptions = {}): Promise<Mpc> {
  const { onDrop, onPublisherRefused: _, onGatewayRefused: __, onPeerSilent: ___, onGatewayOverTotal: ____, onConnectionRefused, ingressPorts = [], ...rest } = options;
  const config = MPC_OPTIONS.validate(rest);
  const instance = randomBytes(6).toString('base64url');
  const security = config.curve === undefined ? null : await curveServerOptions(config.curve);
  // The gateway port: tormq's own ZMTP XPUB on plain TCP (zmtp-publisher.ts), libzmq's with CURVE or
  // when asked for. libzmq's: 'allSubs', every subscription reaches the MPC, a repeated one too, so
  // each can be confirmed; sendTimeout 0, an XPUB never blocks (it drops at its high-water mark), so
  // zeromq.js's readiness check before each send (a poll() and a getpid() system call) buys nothing.
  const useZmtpLink = security === null && config.zmtpLink;
  // Peers that do not ping are pinged (--peer-heartbeat-ms): by the ZMTP ports' probe, and by libzmq's
  // own sockets (CURVE, or asked for), which close a silent peer without saying so: uncounted.
  const peerHeartbeat = probeEvery(config.peerHeartbeatMs);
  const libzmqPing = libzmqHeartbeat(peerHeartbeat);
  const gateways = useZmtpLink ? null : new (zeromq().XPublisher)({ linger: 0, sendHighWaterMark: config.highWaterMark, sendTimeout: 0, verbosity: 'allSubs', ...libzmqPing, ...security?.gateway });
  const plain = config.plainPort === -1 ? null : new (zeromq().XPublisher)({ linger: 0, sendHighWaterMark: config.highWaterMark, ...security?.gateway });

  const streams = new MemoryStreamStore({
    historySize: config.historySize,
    historyTtlMs: config.historyTtlMs,
    historyMaxBytes: config.historyMaxBytes,
    maxStreams: config.historyMaxStreams,
  });
  const reclaimer = new EvictionReclaimer(RECLAIM_EVERY_BYTES);
  // Set once the ports are open (src/descriptors.ts); until then nothing is refused. Each port has its
  // own share, so that a flood of one cannot keep the other's peers out (gateways relinking after a
  // deploy, publishers reconnecting).
  const publisherBudget = new ConnectionBudget('publisher', onConnectionRefused);
  const gatewayBudget = new ConnectionBudget('gateway', onConnectionRefused);
  const ingressBudgets = new Map(ingressPorts.map((port) => [port, new ConnectionBudget(port, onConnectionRefused)]));
  let gatewayHandshakeFailures = 0;
  const silentPeers = { publisher: 0, gateway: 0 };
  const silent = (port: 'publisher' | 'gateway') => (address: string, ms: number) => {
    silentPeers[port]++;
    options.onPeerSilent?.(port, address, ms);
  };
  // Its handlers reach `control` (built on `link`, below), called only once gateways connect.
  const zmtpLink = gateways !== null ? null : new ZmtpPublisher(
    { maxFrameBytes: MAX_GATEWAY_FRAME_BYTES, maxQueuedBytes: config.gatewayQueueBytes, maxTotalQueuedBytes: config.gatewayQueueTotalBytes, keysOf: linkKeys, budget: gatewayBudget, probe: peerHeartbeat },
    {
      message: (frame) => control.handle(frame),
      unread: () => control.badRequests++,
      refused: (address, why) => {
        gatewayHandshakeFailures++;
        options.onGatewayRefused?.(address, why);
      },
      silent: silent('gateway'),
      overTotal: (address, limit) => options.onGatewayOverTotal?.(address, limit),
    },
  );
  const toGateways = gateways === null ? zmtpLink! : new SerialSender(gateways);
  const toPlain = plain === null ? null : new SerialSender(plain);
  // With the ZMTP link server, frames are sized to the gateway queue (libzmq's XPUB counts messages):
  // a batch to a quarter of it (plus its last message), a history page to half of it, less the
  // reply's framing. The page then fits, since requests are answered only while half the queue is
  // free. Before, with --gateway-queue-bytes below 256 KB every full batch was dropped, and below
  // 4 MB every large page: such a gateway could never repair a burst (test/e2e/recovery).
  const linkFrameBytes = zmtpLink === null ? Infinity : Math.floor(config.gatewayQueueBytes / 2);
  const link = new LinkBatcher(toGateways, config.coalesceMs, Math.min(MAX_BATCH_BYTES, Math.floor(linkFrameBytes / 2)));
  const forwarder = new Forwarder(config, streams, link, toPlain, onDrop);
  const presence = new PresenceTable(
    { maxEntries: config.presenceMaxEntries, maxGateways: MAX_PRESENCE_GATEWAYS, maxCardLength: config.maxTopicLength },
    (gw) => link.send(encodeReply(Buffer.from(gw, 'base64url'), { type: 'presence-resync' })),
  );
  const control = new GatewayControl(
    { maxTopicLength: config.maxTopicLength, maxReplyMessages: MAX_REPLY_MESSAGES, maxReplyBytes: Math.min(MAX_REPLY_BYTES, linkFrameBytes - REPLY_FRAMING_BYTES) },
    streams,
    link,
    instance,
    presence,
  );
  const ingest = (frames: Buffer[]): void => {
    forwarder.ingest(frames);
    reclaimer.check(forwarder.bytesIn + streams.evictedBytesSoFar);
  };

  // The publisher port: tormq's own ZMTP reader on plain TCP (zmtp-subscriber.ts: far fewer wake-ups
  // and system calls per message), libzmq's SUB with CURVE or when asked for.
  const useZmtp = security === null && config.zmtpReader;
  const publishers = useZmtp ? null : new (zeromq().Subscriber)({ linger: 0, receiveHighWaterMark: config.highWaterMark, ...libzmqPing, ...security?.publisher });
  let publisherHandshakeFailures = 0;
  const zmtp = !useZmtp ? null : new ZmtpSubscriber(
    { maxFrameBytes: config.maxMessageBytes, maxParts: 2, budget: publisherBudget, probe: peerHeartbeat },
    {
      message: ingest,
      unread: (reason, bytes) => forwarder.skipped(reason, bytes),
      dry: () => link.readsDone(),
      refused: (address, why) => {
        publisherHandshakeFailures++;
        options.onPublisherRefused?.(address, why);
      },
      silent: silent('publisher'),
    },
  );
  const sockets = [...(publishers ? [publishers] : []), ...(gateways ? [gateways] : []), ...(plain ? [plain] : [])];
  let publisherPort: number;
  let gatewayPort = -1;
  try {
    if (zmtp !== null) publisherPort = await listenZmtp(zmtp, 'publisher', config.host, config.publisherPort);
    else {
      await bindOrFail(publishers!, config.host, config.publisherPort, 'publisher');
      publisherPort = portOf(publishers!.lastEndpoint!);
    }
    if (gateways !== null) await bindOrFail(gateways, config.host, config.gatewayPort, 'gateway');
    else gatewayPort = await listenZmtp(zmtpLink!, 'gateway', config.host, config.gatewayPort);
    if (plain) await bindOrFail(plain, config.host, config.plainPort, 'plain');
    // Taken once the ports are open: what is left of the descriptors, less the reserve, is for peers.
    const descriptors = zmtp === null && zmtpLink === null ? null : socketBudget(config.fdReserve, 'connections to its ports');
    if (descriptors !== null) {
      gatewayBudget.limit = Math.max(1, Math.min(MAX_GATEWAY_CONNECTIONS, Math.floor(descriptors.limit / 4)));
      let others = gatewayBudget.limit;
      for (const budget of ingressBudgets.values()) {
        budget.limit = Math.max(1, Math.min(MAX_INGRESS_CONNECTIONS, Math.floor(descriptors.limit / 8)));
        others += budget.limit;
      }
      publisherBudget.limit = Math.max(1, descriptors.limit - others);
    }
  } catch (error) {
    for (const socket of sockets) socket.close();
    await zmtp?.close();
    await zmtpLink?.close();
    security?.release();
    throw error;
  }
  if (config.curve?.onHandshakeFailed !== undefined) {
    const report = config.curve.onHandshakeFailed;
    if (publishers !== null) watchHandshakeFailures(publishers, (failure) => report({ role: 'publisher', ...failure }));
    if (gateways !== null) watchHandshakeFailures(gateways, (failure) => report({ role: 'gateway', ...failure }));
  }
  publishers?.subscribe(); // everything: history needs every message, whoever subscribes later

  let closed = false;
  const loops = [
    ...(publishers === null ? [] : [receiveLoop(publishers, {
      message: ingest,
      // What one read brought leaves together (link-batcher.ts); nothing waits for more to come,
      // unless coalescing is asked for.
      dry: () => link.readsDone(),
    })]),
    ...(gateways === null ? [] : [(async () => {
      for await (const [frame] of gateways) if (frame !== undefined) control.handle(frame);
    })()]),
    // The plain port's subscriptions are ZeroMQ's business; they are read so they do not pile up.
    ...(plain ? [(async () => {
      for await (const _ of plain) void _;
    })()] : []),
  ].map((loop) => loop.catch((error: unknown) => {
    if (!closed) throw error;
  }));
  const sweep = setInterval(() => {
    streams.sweep(performance.now());
    reclaimer.check(forwarder.bytesIn + streams.evictedBytesSoFar);
  }, SWEEP_INTERVAL_MS);
  sweep.unref();
  const presenceSweep = setInterval(() => presence.sweep(performance.now()), PRESENCE_SWEEP_MS);
  presenceSweep.unref();

  let closing: Promise<void> | null = null;
  return {
    config,
    instance,
    presence,
    publisherEndpoint: publishers?.lastEndpoint ?? tcpEndpoint(config.host, publisherPort),
    gatewayEndpoint: gateways?.lastEndpoint ?? tcpEndpoint(config.host, gatewayPort),
    publisherPort,
    gatewayPort: gateways === null ? gatewayPort : portOf(gateways.lastEndpoint!),
    plainPort: plain === null ? -1 : portOf(plain.lastEndpoint!),
    connectionBudget: (port) => ingressBudgets.get(port),
    stats: () => ({
      messagesIn: forwarder.messagesIn,
      forwarded: forwarder.forwarded,
      linkFrames: link.framesSent,
      publisherHandshakeFailures,
      gatewayHandshakeFailures,
      silentPeers: { ...silentPeers },
      connections: {
        publisher: publisherBudget.stats(),
        gateway: gatewayBudget.stats(),
        ...Object.fromEntries([...ingressBudgets].map(([port, budget]) => [port, budget.stats()])),
      },
      publishDrops: { ...forwarder.drops },
      positionsSent: control.positionsSent,
      historyReplies: { ...control.historyReplies },
      badGatewayFrames: control.badRequests,
      sendQueueDrops: toGateways.dropped + (toPlain?.dropped ?? 0),
      gatewayQueue: zmtpLink === null ? null : { bytes: zmtpLink.queuedBytes, cutOverTotal: zmtpLink.cutOverTotal, requestsSkipped: zmtpLink.requestsSkipped },
      history: { ...streams.stats(), reclaimCollections: reclaimer.collections },
      presence: presence.stats(),
    }),
    close() {
      closing ??= (async () => {
        closed = true;
        clearInterval(sweep);
        clearInterval(presenceSweep);
        link.flush(); // what --coalesce-ms holds leaves before the links close, not with them
        for (const socket of sockets) socket.close();
        await zmtp?.close();
        await zmtpLink?.close();
        await Promise.allSettled(loops);
        security?.release();
      })();
      return closing;
    },
  };
}

async function curveServerOptions(curve: MpcCurveOptions) {
  assertCurveAvailable();
  const domain = async (role: 'publisher' | 'gateway', keys: readonly string[] | undefined) =>
    registerZapDomain(`${role}s`, {
      allowed: keys === undefined ? null : new Set(keys),
      onDenied: (d) => curve.onDenied?.({ role, publicKey: d.publicKey, address: d.address }),
    });
  const publishers = await domain('publisher', curve.allowedPublishers);
  const gateways = await domain('gateway', curve.allowedGateways);
  const server = { curveServer: true, curveSecretKey: curve.secretKey };
  return {
    publisher: { ...server, zapDomain: publishers.name },
    gateway: { ...server, zapDomain: gateways.name },
    release() {
      publishers.release();
      gateways.release();
    },
  };
}

/** Listens with one of tormq's own ZMTP endpoints; a failure is bindOrFail's error. */
async function listenZmtp(server: { listen(host: string, port: number): Promise<number> }, role: string, host: string, port: number): Promise<number> {
  try {
    // ZeroMQ's "any address" spelling; net wants an address.
    return await server.listen(host === '*' ? '0.0.0.0' : host, port);
  } catch (error) {
    throw bindFailure(role, tcpEndpoint(host, port), error);
  }
}
