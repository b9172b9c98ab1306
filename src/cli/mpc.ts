#!/usr/bin/env node
/** `tormq-mpc -s 5559 -p 5560 [--host ADDR]`: the ZeroMQ hub between publishers and gateways. */
import type http from 'node:http';
import { createAdminServer } from '../admin-server.js';
import { startHttpIngress, type HttpIngress } from '../ingress/http-ingress.js';
import { listenOrFail } from '../listen.js';
import { createLogger } from '../log.js';
import type { PublishDropReason } from '../mpc/forwarder.js';
import { createMpcMetrics } from '../mpc/metrics.js';
import { startMpc, type Mpc, type MpcCurveOptions } from '../mpc/mpc.js';
import { readCurveKeyFile, readCurveKeyList } from '../zmq/curve.js';
import { failStart, onShutdownSignal } from './common.js';
import { die, ExitCodes, parseCommandLine } from './flags.js';
import { MPC_CLI, PROGRAM } from './mpc-flags.js';

const flags = parseCommandLine(MPC_CLI);
const log = createLogger(PROGRAM, flags.logLevel);

/** Warn once per refused key, then only at debug: a refused client may retry and must not flood the log. */
const denied = new Set<string>();
function curveOptions(): MpcCurveOptions | undefined {
  if (flags.curveKeyFile === '') return undefined;
  const read = <T>(flag: string, load: () => T): T => {
    try {
      return load();
    } catch (error) {
      die(PROGRAM, `--${flag}: ${(error as Error).message}`, ExitCodes.USAGE);
    }
  };
  return {
    secretKey: read('curve-key-file', () => readCurveKeyFile(flags.curveKeyFile).secretKey),
    allowedPublishers: flags.curveAllowPublishers === '' ? undefined : read('curve-allow-publishers', () => readCurveKeyList(flags.curveAllowPublishers)),
    allowedGateways: flags.curveAllowGateways === '' ? undefined : read('curve-allow-gateways', () => readCurveKeyList(flags.curveAllowGateways)),
    onDenied(denial) {
      const key = `${denial.role}:${denial.publicKey}`;
      const first = !denied.has(key);
      if (first && denied.size < 1024) denied.add(key);
      log[first ? 'warn' : 'debug'](denial, 'CURVE handshake refused');
    },
  };
}

/**
 * Publisher messages the MPC drops are counted (/metrics); the log gets the first of each reason and
 * then one line per reason per minute with the count since, so a publisher sending garbage is visible
 * without flooding the log.
 */
const DROP_LOG_INTERVAL_MS = 60_000;
const dropLog = new Map<PublishDropReason, { at: number; suppressed: number }>();
function logDrop(reason: PublishDropReason, frames: Buffer[]): void {
  const now = Date.now();
  const last = dropLog.get(reason);
  if (last !== undefined && now - last.at < DROP_LOG_INTERVAL_MS) {
    last.suppressed++;
    return;
  }
  const sample = frames.map((f) => f.subarray(0, 80).toString('utf8'));
  log.warn({ reason, frames: frames.length, sample, droppedSinceLastLine: last?.suppressed ?? 0 }, 'publisher message dropped');
  dropLog.set(reason, { at: now, suppressed: 0 });
}

/** The MPC, its admin port, and the HTTP ingress when `--http` is given (it publishes through the MPC's own port). */
async function startAll(): Promise<{ mpc: Mpc; ingress: HttpIngress | null; admin: http.Server | null; adminPort: number }> {
  const mpc = await startMpc({
    host: flags.host,
    publisherPort: flags.publisherPort,
    gatewayPort: flags.gatewayPort,
    plainPort: flags.plainPort,
    highWaterMark: flags.highWaterMark,
    maxMessageBytes: flags.maxMessageBytes,
    maxTopicLength: flags.maxTopicLength,
    historySize: flags.historySize,
    historyTtlMs: flags.historyTtl * 1000,
    historyMaxBytes: flags.historyMaxBytes,
    historyMaxStreams: flags.historyMaxStreams,
    curve: curveOptions(),
    onDrop: logDrop,
  });
  let admin: http.Server | null = null;
  let adminPort = -1;
  try {
    if (flags.adminPort !== -1) {
      admin = createAdminServer({ healthy: () => ({ ok: true, detail: {} }), stats: () => ({ ...mpc.stats() }), metrics: createMpcMetrics(() => mpc.stats()) });
      adminPort = await listenOrFail(admin, flags.adminHost, flags.adminPort, 'admin');
    }
  } catch (error) {
    await mpc.close();
    throw error;
  }
  if (flags.httpPort === -1) return { mpc, ingress: null, admin, adminPort };
  const host = flags.host;
  try {
    const ingress = await startHttpIngress({
      host: flags.httpHost === '' ? host : flags.httpHost,
      port: flags.httpPort,
      publisherHost: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host,
      publisherPort: mpc.publisherPort,
      token: flags.httpToken,
      maxBodyBytes: flags.httpMaxBody,
      maxDataDepth: flags.httpMaxDepth,
      log,
    });
    return { mpc, ingress, admin, adminPort };
  } catch (error) {
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
  const { mpc, ingress, admin } = await starting;
  await ingress?.close();
  admin?.close();
  await mpc.close();
});
try {
  const { mpc, ingress, adminPort } = await starting;
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
      history: { size: flags.historySize, ttlSeconds: flags.historyTtl, maxBytes: flags.historyMaxBytes, maxStreams: flags.historyMaxStreams },
    },
    'mpc ready',
  );
} catch (error) {
  failStart(PROGRAM, error);
}
