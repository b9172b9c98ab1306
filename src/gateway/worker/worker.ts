/**
 * Worker thread entry: owns a listening socket on the shared port (SO_REUSEPORT), the connections it
 * accepts, its own topic trie, and the reading end of its ring. Reports root changes to the main
 * thread, which subscribes upstream accordingly.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import { parentPort, workerData as rawWorkerData } from 'node:worker_threads';
import { WebSocketServer, type WebSocket } from 'ws';
import * as Comlink from 'comlink/dist/esm/comlink.mjs';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { ErrorCodes, TormqError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { LOOP_DELAY_RESOLUTION_MS } from '../../loop-delay.js';
import { Close } from '../../protocol/close-codes.js';
import { encodeTextFrame, maxMessagePieces } from '../../protocol/ws-frame.js';
import { WorkerStat } from '../shared/counters.js';
import { ALL_TOPICS, RingReader } from '../shared/ring.js';
import { SocketCounts, SocketKind } from '../shared/socket-counts.js';
import { GatewayShared, TEST_HOOK_ACTIONS, type MainEvent, type TestHookAction, type WorkerControl, type WorkerData, type WorkerEvent } from '../shared/thread-protocol.js';
import { Admission } from './admission.js';
import { ConnectionGuard, selectProtocol, TORMQ_V2_SUBPROTOCOL, type Grants } from './auth.js';
import { CLIENT_MODULE_HEADERS, CLIENT_MODULE_PATH, clientModule } from './client-module.js';
import type { HistoryReply, WorkerContext } from './context.js';
import { Delivery, positionedFrame } from './delivery.js';
import { demoPage } from './demo-page.js';
import { listenReusePort } from './listener.js';
import { InterestRouting, NOT_ROUTED } from './interest-routing.js';
import { WorkerPresence } from './presence.js';
import { ReplayBudget } from './replay-budget.js';
import { Session, streamsOf } from './session.js';
import { TopicTrie } from './trie.js';
import { refuseUpgrade } from './upgrade-refusal.js';
import type { Writer } from './writer.js';

const workerData = rawWorkerData as WorkerData;
const { config, index } = workerData;
const port = parentPort!;
const log = createLogger('tormq-gateway', config.logLevel, { worker: index });
const stats = new Float64Array(workerData.stats);
const shared = new Int32Array(workerData.shared);
const socketCounts = new SocketCounts(workerData.shared);
const post = (event: WorkerEvent) => {
  // Counted until main has routed it (--max-topics: main uncounts it on receipt).
  if (event.type === 'interest-added') socketCounts.add(index, SocketKind.topicReports, 1);
  port.postMessage(event);
};
const guard = await ConnectionGuard.create(config, stats, log);
const routing = new InterestRouting(post);

/** History requests to main for tormq.v2 recoveries, by id. */
const historyRequests = new Map<number, (reply: HistoryReply) => void>();
let nextHistoryId = 1;
port.on('message', (event: MainEvent) => {
  if (event.type === 'history-reply') {
    const { type: _, id, ...reply } = event;
    historyRequests.get(id)?.(reply);
    historyRequests.delete(id);
  }
});

const ctx: WorkerContext = {
  config,
  guard,
  frameLimits: { maxTopicLength: config.maxTopicLength, maxTopicsPerFrame: config.maxSubscriptions },
  stats,
  trie: new TopicTrie<Writer>({
    onTopicAdded: (topic) => routing.acquire(topic),
    onTopicRemoved: (topic) => routing.release(topic),
  }),
  routing,
  log,
  history(topic, epoch, after, limit) {
    const id = nextHistoryId++;
    post({ type: 'history-request', id, topic, epoch, after, limit });
    return new Promise((resolve) => historyRequests.set(id, resolve));
  },
  replayBudget: new ReplayBudget(config.replayBudgetBytes, stats),
  positioned: (body, epoch, offset) => positionedFrame(encodeTextFrame(body, 0, body.length), epoch, offset),
  topics: {
    reserve: (n, limit) => socketCounts.reserveTopics(index, n, limit),
    release: (n) => socketCounts.add(index, SocketKind.topicReports, -n),
  },
  presence: new WorkerPresence((cards) => post({ type: 'presence', cards })),
};
const sessions = new Set<Session>();
const delivery = new Delivery(new RingReader(workerData.ring), ctx.trie, stats, {
  mark: (topic, seq, epoch, offset) => routing.marked(topic, seq, offset === -1 ? NOT_ROUTED : { epoch, offset }),
  gap(topic) {
    // The connections the topic's stream feeds (a control record: rare, a closure is fine). Writers
    // tell only tormq.v2 connections; a held stream's gap is told after its recovery.
    const writers: Writer[] = [];
    if (topic === ALL_TOPICS) for (const session of sessions) writers.push(session.writer);
    else delivery.forEachWriter(topic, (writer) => writers.push(writer));
    for (const writer of writers) {
      writer.noteGap(topic);
      writer.flushGaps();
    }
  },
}, config.batchDelayMs);
let draining = false;

// --- HTTP and upgrades -------------------------------------------------------------------------

const page = config.demoPage ? demoPage(config.path, { auth: config.authSecret !== '' || config.authPublicKey !== '' }) : '';
const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path === config.path) {
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('WebSocket upgrade required\n');
  } else if (config.demoPage && path === '/' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  } else if (path === CLIENT_MODULE_PATH && clientModule !== null && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, { ...CLIENT_MODULE_HEADERS, 'content-length': clientModule.length }).end(req.method === 'GET' ? clientModule : undefined);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
};
// With TLS (--tls-cert) the same handlers serve wss:// and https://; the certificate is replaced on
// SIGHUP (reloadTls) for new handshakes only.
const server: http.Server = workerData.tls === null ? http.createServer(onRequest) : https.createServer({ ...workerData.tls }, onRequest);

// Every socket from accept: its one error listener, the socket budget, the handshake deadline.
const admission = new Admission({ counts: socketCounts, worker: index, stats, handshakeTimeoutMs: config.handshakeTimeoutMs, log });
admission.attach(server);

const maxPieces = maxMessagePieces(config.maxFrameBytes);
const wss = new WebSocketServer({
  noServer: true,
  maxPayload: config.maxFrameBytes,
  // ws holds each piece of a message still arriving as a Buffer of its own, ≈ 200 bytes of memory per
  // piece, up to ws's default caps (262,144 reads of a frame, 16,384 fragments). Measured, one worker:
  // 20 clients dripping a 64 KB frame one byte per TCP segment grew its RSS by 275 MB (215× what they
  // sent); 20 sending 16,000 one-byte fragments, by 73 MB. Past the cap ws closes with 1008 (counted in
  // badFrames).
  maxBufferedChunks: maxPieces,
  maxFragments: maxPieces,
  perMessageDeflate: false,
  clientTracking: false,
  handleProtocols: selectProtocol,
});

server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path !== config.path || draining) {
    refuse(socket, draining ? 503 : 404, draining ? 'Service Unavailable' : 'Not Found');
    return;
  }
  if (!guard.checkOrigin(req, socket)) return;
  // Reserve a slot in the gateway-wide count before the handshake; released when the socket closes,
  // whether or not the upgrade completes, so a failed handshake never leaks a slot.
  const open = socketCounts.add(index, SocketKind.connections, 1);
  // A module-level listener, not a closure: a closure here would share this handler's scope with the
  // authenticate callback below and keep `req` and `head` alive as long as the connection (measured:
  // ~1.8 KB of heap per idle connection, in worker heap snapshots at 2,000 connections).
  socket.once('close', releaseConnectionSlot);
  if (config.maxConnections > 0 && open > config.maxConnections) {
    refuse(socket, 503, 'Service Unavailable');
    return;
  }
  guard.authenticate(req, socket, (grants) => {
    // The token check may have been asynchronous: a drain may have begun meanwhile.
    if (draining) {
      refuse(socket, 503, 'Service Unavailable');
      return;
    }
    // An auto-subscribed connection opens only once its streams are routed to this worker (see
    // interest-routing.ts), so it misses nothing published after it opened.
    const streams = grants?.autoSubscribe ? streamsOf(grants.autoSubscribe) : [];
    const unpin = streams.length > 0 ? pinTopics(streams, socket) : null;
    routing.whenRouted(streams, () => {
      if (socket.destroyed) return;
      wss.handleUpgrade(req, socket, head, (ws) => {
        admission.upgraded(socket);
        onConnection(ws, grants);
        unpin?.(); // the session's own subscription holds the topics now
      });
    });
  });
});

/**
 * Holds references on `topics` for an upgrade in progress, until the returned function is called or
 * the socket closes (a failed handshake never leaks them). Its own scope: closures here must not
 * capture the upgrade's request (see releaseConnectionSlot).
 */
function pinTopics(topics: readonly string[], socket: Duplex): () => void {
  for (const topic of topics) routing.acquire(topic);
  let pinned = true;
  const unpin = () => {
    if (!pinned) return;
    pinned = false;
    socket.off('close', unpin);
    for (const topic of topics) routing.release(topic);
  };
  socket.once('close', unpin);
  return unpin;
}

function releaseConnectionSlot(): void {
  socketCounts.add(index, SocketKind.connections, -1);
}

function refuse(socket: Duplex, status: number, reason: string): void {
  refuseUpgrade(socket, status, reason, stats);
}

function onConnection(ws: WebSocket, grants: Grants | null): void {
  const session = new Session(ws, ctx, grants, ws.protocol === TORMQ_V2_SUBPROTOCOL);
  sessions.add(session);
  stats[WorkerStat.connectionsAccepted]++;
  stats[WorkerStat.connections] = sessions.size;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) session.onBinary();
    else session.onText(data.toString('utf8'));
  });
  ws.on('pong', () => {
    session.alive = true;
  });
  ws.on('error', (error: Error & { code?: string }) => {
    // ws closes the connection itself (1009 for oversized frames, 1002 for protocol errors).
    if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') stats[WorkerStat.oversizeCloses]++;
    else stats[WorkerStat.badFrames]++;
    log.debug({ conn: session.id, err: error.message, code: error.code }, 'client protocol error');
  });
  ws.on('close', () => {
    session.dispose();
    sessions.delete(session);
    stats[WorkerStat.connections] = sessions.size;
  });
}

// --- Heartbeats (client pings, and the worker's own) and event-loop lag -------------------------------

if (config.heartbeatMs > 0) {
  setInterval(() => {
    for (const session of sessions) {
      if (!session.alive) {
        stats[WorkerStat.heartbeatTerminations]++;
        session.ws.terminate();
        continue;
      }
      session.alive = false;
      session.ws.ping();
    }
  }, config.heartbeatMs).unref();
}

const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
loopDelay.enable();
setInterval(() => {
  stats[WorkerStat.eventLoopLagMs] = loopDelay.percentile(99) / 1e6;
  loopDelay.reset();
  const heap = v8.getHeapStatistics();
  stats[WorkerStat.heapUsedBytes] = heap.used_heap_size;
  stats[WorkerStat.heapCommittedBytes] = heap.total_heap_size;
  stats[WorkerStat.youngGenerationBytes] = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  // Proof of life: main reports this worker stalled when the count stops moving (main/stall-watch.ts).
  stats[WorkerStat.heartbeats]++;
}, 1000).unref();

// --- Control plane ---------------------------------------------------------------------------------

const control: WorkerControl = {
  async drain(windowMs: number): Promise<void> {
    draining = true;
    delivery.stop();
    server.close();
    log.info({ connections: sessions.size, windowMs }, 'worker draining');
    const batches = await closeAll(Close.GOING_AWAY, windowMs);
    log.info({ batches }, 'worker drained');
  },
  testHook(action: TestHookAction): void {
    if (!config.testHooks || !TEST_HOOK_ACTIONS.includes(action)) {
      throw new TormqError(ErrorCodes.TEST_HOOK_REFUSED, 'test hooks are disabled (start with --enable-test-hooks)');
    }
    log.warn({ action }, 'test hook');
    // After the RPC has answered, so the caller sees the call succeed.
    setImmediate(() => {
      if (action === 'crash') throw new Error('test hook: crash');
      if (action === 'exit') process.exit(3);
      // stall: block this thread's event loop (a worker that cannot keep up) until main releases it.
      const deadline = Date.now() + 60_000;
      while (Atomics.load(shared, GatewayShared.TEST_STALL) === 1 && Date.now() < deadline) {
        Atomics.wait(shared, GatewayShared.TEST_STALL, 1, 1000);
      }
    });
  },
  // Counted by the same walk delivery does, each connection once (a control-plane query, off the ring).
  reachable: (topic: string) => ctx.trie.forEachRecipient(topic, ignore),
  reloadTls(material) {
    if (!(server instanceof https.Server)) throw new TormqError(ErrorCodes.TLS_NOT_ENABLED, 'this gateway serves plain ws:// (no --tls-cert)');
    server.setSecureContext({ ...material });
    log.info('TLS certificate reloaded');
  },
};
function ignore(): void {}
Comlink.expose(control, nodeEndpoint(workerData.controlPort as unknown as Parameters<typeof nodeEndpoint>[0]));

/**
 * Closes every session, spread evenly over `windowMs` so clients do not all reconnect at once.
 * Returns the number of batches.
 */
async function closeAll(close: { code: number; reason: string }, windowMs: number): Promise<number> {
  const all = [...sessions];
  const ticks = Math.max(1, Math.floor(windowMs / 50));
  const perTick = Math.ceil(all.length / ticks);
  let batches = 0;
  for (let i = 0; i < all.length; i += perTick) {
    for (const session of all.slice(i, i + perTick)) session.ws.close(close.code, close.reason);
    batches++;
    if (i + perTick < all.length) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // Clients get a moment to answer the close handshake; then whatever is left is cut.
  const deadline = Date.now() + 2000;
  while (sessions.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  for (const session of sessions) session.ws.terminate();
  return batches;
}

// A worker that fails tells its clients to reconnect (1011) before the thread ends; the main thread
// replaces it. The other workers, their listeners and connections are untouched.
process.on('uncaughtException', (error) => {
  log.error({ err: error }, 'worker failed');
  post({ type: 'fatal', error: new TormqError(ErrorCodes.WORKER_FAILED, String(error?.message ?? error)).toRecord() });
  for (const session of sessions) session.ws.close(Close.INTERNAL_ERROR.code, Close.INTERNAL_ERROR.reason);
  setTimeout(() => process.exit(1), 100);
});

// A thread that ends without throwing (process.exit, a terminate from main) still tells its clients
// to reconnect, as far as a synchronous write allows.
process.on('exit', () => {
  for (const session of sessions) {
    if (session.ws.readyState === 1) session.ws.close(Close.INTERNAL_ERROR.code, Close.INTERNAL_ERROR.reason);
  }
});

const boundPort = await listenReusePort(server, workerData.port, config.host);
delivery.start();
post({ type: 'listening', port: boundPort });
