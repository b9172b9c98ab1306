#!/usr/bin/env node
/** `tormq-mpc -s 5559 -p 5560 [--host ADDR]`: the ZeroMQ hub between publishers and gateways. */
import type http from 'node:http';
import { ADMIN_CAP, adminConnectionBudget, createAdminServer } from '../admin-server.js';
import { logConnectionsClosed } from '../descriptors.js';
import type { GrpcIngress } from '../ingress/grpc-ingress.js';
import type { CutReason } from '../ingress/http2-data-guard.js';
import { startHttpIngress, type HttpIngress } from '../ingress/http-ingress.js';
import { listenOrFail } from '../listen.js';
import { createLogger, logThrottle } from '../log.js';
import type { PublishDropReason } from '../mpc/forwarder.js';
import { createMpcMetrics } from '../mpc/metrics.js';
import { listenAddresses, loopbackHint, urlOf } from '../loopback.js';
import { startMpc, type Mpc, type MpcCurveOptions } from '../mpc/mpc.js';
import { readCurveKeyFile, readCurveKeyList } from '../zmq/curve.js';
import { failStart, onShutdownSignal } from './common.js';
import { die, ExitCodes, parseCommandLine } from './flags.js';
import { MPC_CLI, PROGRAM } from './mpc-flags.js';

const flags = parseCommandLine(MPC_CLI);
const log = createLogger(PROGRAM, flags.logLevel);

/** Warn once per refused key, then only at debug: a refused client may retry and must not flood the log. */
const denied = new Set<string>();
/** Handshake failures (no key to tell peers apart): warn at most once a minute per role and cause, else debug. */
const failureWarnedAt = new Map<string, number>();
const HANDSHAKE_HINTS: Record<string, string> = {
  ERR_ZMTP_MECHANISM_MISMATCH: 'a peer without CURVE tried to connect; this MPC requires CURVE (--curve-key-file): give the peer the MPC\'s public key and a key pair',
  ERR_ZMTP_CRYPTOGRAPHIC: "a CURVE peer's server key is not this MPC's public key",
  EPIPE: 'the peer hung up during the handshake: often a peer without CURVE, or with the wrong server key',
};
const readOrDie = <T>(flag: string, load: () => T): T => {
  try {
    return load();
  } catch (error) {
    die(PROGRAM, `--${flag}: ${(error as Error).message}`, ExitCodes.USAGE);
  }
};
/** The MPC's own key pair (--curve-key-file), or null without CURVE. */
const mpcKeys = flags.curveKeyFile === '' ? null : readOrDie('curve-key-file', () => readCurveKeyFile(flags.curveKeyFile));

function curveOptions(): MpcCurveOptions | undefined {
  if (mpcKeys === null) return undefined;
  const read = readOrDie;
  const publishers = flags.curveAllowPublishers === '' ? undefined : read('curve-allow-publishers', () => readCurveKeyList(flags.curveAllowPublishers));
  return {
    secretKey: mpcKeys.secretKey,
    // The HTTP ingress publishes into the MPC's own publisher port with the MPC's own key pair.
    allowedPublishers: publishers === undefined || (flags.httpPort === -1 && flags.grpcPort === -1) ? publishers : [...publishers, mpcKeys.publicKey],
    allowedGateways: flags.curveAllowGateways === '' ? undefined : read('curve-allow-gateways', () => readCurveKeyList(flags.curveAllowGateways)),
    onDenied(denial) {
      const key = `${denial.role}:${denial.publicKey}`;
      const first = !denied.has(key);
      if (first && denied.size < 1024) denied.add(key);
      log[first ? 'warn' : 'debug'](denial, 'CURVE handshake refused');
    },
    onHandshakeFailed(failure) {
      const key = `${failure.role}:${failure.code}`;
      const now = Date.now();
      const warn = now - (failureWarnedAt.get(key) ?? -Infinity) >= 60_000;
      if (warn) failureWarnedAt.set(key, now);
      const message = failure.code === 'ERR_ZMTP_MECHANISM_MISMATCH' ? `plain (non-CURVE) ${failure.role} refused`
        : failure.code === 'EPIPE' ? `${failure.role} hung up during the CURVE handshake`
        : 'CURVE handshake failed';
      log[warn ? 'warn' : 'debug']({ ...failure, hint: HANDSHAKE_HINTS[failure.code] ?? 'the ZeroMQ handshake failed' }, message);
    },
  };
}

/**
 * Publisher messages the MPC drops are counted (/metrics); the log gets the first of each reason and
 * then one line per reason per minute with the count since, so a publisher sending garbage is visible
 * without flooding the log.
 */
const dropThrottle = logThrottle();
function logDrop(reason: PublishDropReason, frames: Buffer[]): void {
  const line = dropThrottle(reason);
  if (line === null) return;
  const sample = frames.map((f) => f.subarray(0, 80).toString('utf8'));
  log.warn({ reason, frames: frames.length, sample, droppedSinceLastLine: line.held }, 'publisher message dropped');
}

/** A refused publisher or gateway (zmq/zmtp-peer.ts) reconnects every ~100 ms: throttled per role and reason. */
const refusedThrottle = logThrottle();
function logRefused(role: 'publisher' | 'gateway', address: string, why: string): void {
  const line = refusedThrottle(`${role} ${why}`);
  if (line !== null) log.warn({ address, why, refusedSinceLastLine: line.held }, `${role} connection refused at the ZMTP handshake`);
}

function logSilent(role: 'publisher' | 'gateway', address: string, ms: number): void {
  const line = refusedThrottle(`${role} silent`);
  if (line !== null) log.warn({ address, silentMs: ms, closedSinceLastLine: line.held }, `${role} connection closed: nothing from it for the TTL its heartbeats asked for, or unanswered PINGs for 5 × --peer-heartbeat-ms (stopped, hung or unreachable)`);
}

function logOverTotal(address: string, limit: number): void {
  const line = refusedThrottle('gateway over total');
  if (line !== null) log.warn({ address, limitBytes: limit, closedSinceLastLine: line.held }, 'gateway link closed: all gateways together held more than --gateway-queue-total-bytes, this one the most (it is not reading what it asked for)');
}

/** Connections closed at a port's cap. */
const logOverBudget = logConnectionsClosed(log, (port) => (port === 'admin' ? ADMIN_CAP
  : 'its share of the open-files limit less those in use at start less --fd-reserve'));

/** gRPC connections cut by the port's guard (ingress/http2-data-guard.ts): throttled per reason. */
const grpcCutThrottle = logThrottle();
function logGrpcCut(address: string, reason: CutReason): void {
  const line = grpcCutThrottle(reason);
  if (line === null) return;
  if (reason === 'fragmented') {
    log.warn({ address, cutSinceLastLine: line.held }, 'gRPC connection cut: a message in too many HTTP/2 DATA frames (each held costs memory; real clients fill their frames)');
  } else {
    log.warn({ address, cutSinceLastLine: line.held }, 'gRPC connection cut: the port held more than its limit of calls not yet whole, this connection the most');
  }
}

/**
 * The MPC, its admin port, and the HTTP ingress (`--http`) and gopusher's gRPC service (`--grpc`) when
 * given (they publish through the MPC's own port, and read its presence table).
 */
async function startAll(): Promise<{ mpc: Mpc; ingress: HttpIngress | null; grpc: GrpcIngress | null; admin: http.Server | null; adminPort: number }> {
  const mpc = await startMpc({
    host: flags.host,
    publisherPort: flags.publisherPort,
    gatewayPort: flags.gatewayPort,
    plainPort: flags.plainPort,
    highWaterMark: flags.highWaterMark,
    gatewayQueueBytes: flags.gatewayQueueBytes,
    gatewayQueueTotalBytes: flags.gatewayQueueTotalBytes,
    maxMessageBytes: flags.maxMessageBytes,
    maxTopicLength: flags.maxTopicLength,
    historySize: flags.historySize,
    historyTtlMs: flags.historyTtl * 1000,
    historyMaxBytes: flags.historyMaxBytes,
    historyMaxStreams: flags.historyMaxStreams,
    presenceMaxEntries: flags.presenceMaxEntries,
    zmtpReader: flags.zmtpReader,
    zmtpLink: flags.zmtpLink,
    coalesceMs: flags.coalesceMs,
    peerHeartbeatMs: flags.peerHeartbeatMs,
    fdReserve: flags.fdReserve,
    curve: curveOptions(),
    onDrop: logDrop,
    onPublisherRefused: (address, why) => logRefused('publisher', address, why),
    onGatewayRefused: (address, why) => logRefused('gateway', address, why),
    onPeerSilent: logSilent,
    onGatewayOverTotal: logOverTotal,
    onConnectionRefused: logOverBudget,
    ingressPorts: [...(flags.httpPort === -1 ? [] : ['http' as const]), ...(flags.grpcPort === -1 ? [] : ['grpc' as const])],
  });
  let admin: http.Server | null = null;
  let adminPort = -1;
  let ingress: HttpIngress | null = null;
  let grpc: GrpcIngress | null = null;
  const adminConnections = adminConnectionBudget(logOverBudget);
  // The ingresses' own counts (requests refused, connections cut) beside the MPC's, and the admin port's connections.
  const stats = () => {
    const own = mpc.stats();
    const connections = flags.adminPort === -1 ? own.connections : { ...own.connections, admin: adminConnections.stats() };
    return { ...own, connections, http: ingress === null ? null : { ...ingress.stats }, grpc: grpc?.stats() ?? null };
  };
  try {
    if (flags.adminPort !== -1) {
      admin = createAdminServer({ healthy: () => ({ ok: true, detail: {} }), stats, metrics: createMpcMetrics(stats) }, adminConnections);
      adminPort = await listenOrFail(admin, flags.adminHost, flags.adminPort, 'admin');
    }
  } catch (error) {
    await mpc.close();
    throw error;
  }
  const host = flags.host;
  const publisherHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const curve = mpcKeys === null ? undefined : { serverKey: mpcKeys.publicKey, ...mpcKeys };
  try {
    if (flags.httpPort !== -1) {
      ingress = await startHttpIngress({
        host: flags.httpHost === '' ? host : flags.httpHost,
        port: flags.httpPort,
        publisherHost,
        publisherPort: mpc.publisherPort,
        token: flags.httpToken,
        insecure: flags.httpInsecure,
        curve,
        tlsCert: flags.httpTlsCert,
        tlsKey: flags.httpTlsKey,
        maxBodyBytes: flags.httpMaxBody,
        maxDataDepth: flags.httpMaxDepth,
        maxMessageBytes: flags.maxMessageBytes,
        maxTopicLength: flags.maxTopicLength,
        presence: mpc.presence,
        log,
        budget: mpc.connectionBudget('http'),
      });
    }
    // Loaded only when asked for: grpc-js and the proto loader weigh ~10 MB of RSS (issue 13's idle goal).
    grpc = flags.grpcPort === -1 ? null : await (await import('../ingress/grpc-ingress.js')).startGrpcIngress({
      host: flags.grpcHost === '' ? host : flags.grpcHost,
      port: flags.grpcPort,
      publisherHost,
      publisherPort: mpc.publisherPort,
      token: flags.httpToken,
      insecure: flags.httpInsecure,
      curve,
      maxMessageBytes: flags.maxMessageBytes,
      maxTopicLength: flags.maxTopicLength,
      idleMs: flags.grpcIdleMs,
      maxUnfinishedBytes: flags.grpcMaxUnfinishedBytes,
      presence: mpc.presence,
      log,
      budget: mpc.connectionBudget('grpc'),
      onCut: logGrpcCut,
    });
    return { mpc, ingress, grpc, admin, adminPort };
  } catch (error) {
    await ingress?.close();
    admin?.close();
    await mpc.close();
    throw error;
  }
}

// Signal handlers go in before anything is started, so a SIGTERM right after "mpc ready" (or during
// start-up) always stops cleanly instead of killing the process.
const starting = startAll();
onShutdownSignal(PROGRAM, async (signal) => {
  log.info({ signal }, 'stopping');
  const { mpc, ingress, grpc, admin } = await starting;
  await ingress?.close();
  await grpc?.close();
  admin?.close();
  await mpc.close();
});
// SIGHUP re-reads the HTTP ingress's certificate (--http-tls-cert); open connections keep theirs.
process.on('SIGHUP', () => {
  void starting.then(({ ingress }) => {
    if (ingress === null || ingress.scheme === 'http') {
      log.info('SIGHUP: nothing to reload (no --http-tls-cert)');
      return;
    }
    try {
      log.info(ingress.reloadTls(), 'HTTP TLS certificate reloaded');
    } catch (error) {
      log.error({ err: (error as Error).message }, 'HTTP TLS reload failed; still serving the previous certificate');
    }
  });
});
try {
  const { mpc, ingress, grpc, adminPort } = await starting;
  const httpHost = flags.httpHost === '' ? flags.host : flags.httpHost;
  const grpcHost = flags.grpcHost === '' ? flags.host : flags.grpcHost;
  const hint = loopbackHint(flags.host, '--host');
  log.info(
    {
      curve: flags.curveKeyFile !== '',
      instance: mpc.instance,
      publisherPort: mpc.publisherPort,
      gatewayPort: mpc.gatewayPort,
      plainPort: mpc.plainPort === -1 ? null : mpc.plainPort,
      adminPort,
      publisherEndpoint: mpc.publisherEndpoint,
      gatewayEndpoint: mpc.gatewayEndpoint,
      httpPort: ingress?.port ?? null,
      grpcPort: grpc?.port ?? null,
      history: { size: flags.historySize, ttlSeconds: flags.historyTtl, maxBytes: flags.historyMaxBytes, maxStreams: flags.historyMaxStreams },
      listening: [
        ...listenAddresses(flags.host).flatMap((host) => [urlOf('tcp', host, mpc.publisherPort), urlOf('tcp', host, mpc.gatewayPort)]),
        ...(ingress === null ? [] : listenAddresses(httpHost).map((host) => urlOf(ingress.scheme, host, ingress.port))),
        ...(grpc === null ? [] : listenAddresses(grpcHost).map((host) => urlOf('grpc', host, grpc.port))),
      ],
      ...(hint === null ? {} : { hint }),
    },
    'mpc ready',
  );
} catch (error) {
  failStart(PROGRAM, error);
}
