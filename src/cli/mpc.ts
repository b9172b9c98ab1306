#!/usr/bin/env node
/** `tormq-mpc -s 5559 -p 5560 [--host ADDR]`: the ZeroMQ hub between publishers and gateways. */
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { HTTP_INGRESS_DEFAULTS, startHttpIngress, type HttpIngress } from '../mpc/http-ingress.js';
import { MPC_DEFAULTS, startMpc, type Mpc, type MpcCurveOptions } from '../mpc/mpc.js';
import { readCurveKeyFile, readCurveKeyList } from '../protocol/curve.js';
import { die, ExitCodes, failStart, intFlag, onShutdownSignal, parseFlags } from './common.js';

const PROGRAM = 'tormq-mpc';
const USAGE = `Usage: ${PROGRAM} [-s PORT] [-p PORT] [--host ADDR] [--http PORT [--http-host ADDR] [--http-token TOKEN]
                 [--http-max-body BYTES]] [--log-level LEVEL]

  -s, --sub-port PORT   port publishers connect to (XSUB)         default ${MPC_DEFAULTS.publisherPort}
  -p, --pub-port PORT   port gateways connect to (XPUB)           default ${MPC_DEFAULTS.gatewayPort}
      --host ADDR       address to bind; 0.0.0.0 for remote use   default ${MPC_DEFAULTS.host}
      --hwm N           messages buffered per peer before ZeroMQ drops  default ${MPC_DEFAULTS.highWaterMark}
      --http PORT       also accept POST /publish and /push over HTTP  default off
      --http-host ADDR  address of the HTTP port                   default --host
      --http-token TOKEN  require "Authorization: Bearer TOKEN"     default none
                        (or set TORMQ_HTTP_TOKEN, which keeps it out of the process list)
      --http-max-body BYTES  largest request body, else 413      default ${HTTP_INGRESS_DEFAULTS.maxBodyBytes}
      --log-level LEVEL ${LOG_LEVELS.join(', ')}           default info
      --curve-key-file FILE          CURVE on both ports with this key pair (from tormq-keys)
      --curve-allow-publishers FILE  public keys allowed to publish, one per line (# comments)
      --curve-allow-gateways FILE    public keys allowed to subscribe (gateways), one per line
  -h, --help            this text
Port 0 picks a free port (printed in the "mpc ready" log line).
`;

const flags = parseFlags(PROGRAM, {
  'sub-port': { type: 'string', short: 's' },
  'pub-port': { type: 'string', short: 'p' },
  host: { type: 'string' },
  hwm: { type: 'string' },
  http: { type: 'string' },
  'http-host': { type: 'string' },
  'http-token': { type: 'string' },
  'http-max-body': { type: 'string' },
  'log-level': { type: 'string' },
  'curve-key-file': { type: 'string' },
  'curve-allow-publishers': { type: 'string' },
  'curve-allow-gateways': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
}, USAGE);

const level = (flags['log-level'] ?? 'info') as LogLevel;
if (!LOG_LEVELS.includes(level)) die(PROGRAM, `--log-level must be one of ${LOG_LEVELS.join(', ')}`, ExitCodes.USAGE);
const log = createLogger(PROGRAM, level);

/** Warn once per refused key, then only at debug: a refused client may retry and must not flood the log. */
const denied = new Set<string>();
function curveOptions(): MpcCurveOptions | undefined {
  const keyFile = flags['curve-key-file'];
  if (keyFile === undefined) {
    if (flags['curve-allow-publishers'] || flags['curve-allow-gateways']) die(PROGRAM, 'the --curve-allow-* flags need --curve-key-file', ExitCodes.USAGE);
    return undefined;
  }
  try {
    const publishers = flags['curve-allow-publishers'];
    const gateways = flags['curve-allow-gateways'];
    return {
      secretKey: readCurveKeyFile(keyFile).secretKey,
      allowedPublishers: publishers === undefined ? undefined : readCurveKeyList(publishers),
      allowedGateways: gateways === undefined ? undefined : readCurveKeyList(gateways),
      onDenied(denial) {
        const key = `${denial.role}:${denial.publicKey}`;
        const first = !denied.has(key);
        if (first && denied.size < 1024) denied.add(key);
        log[first ? 'warn' : 'debug'](denial, 'CURVE handshake refused');
      },
    };
  } catch (error) {
    die(PROGRAM, (error as Error).message, ExitCodes.USAGE);
  }
}

/** The MPC, and the HTTP ingress when `--http` is given (it publishes through the MPC's own port). */
async function startAll(): Promise<{ mpc: Mpc; ingress: HttpIngress | null }> {
  const mpc = await startMpc({
    host: flags.host,
    publisherPort: intFlag(flags['sub-port']) ?? MPC_DEFAULTS.publisherPort,
    gatewayPort: intFlag(flags['pub-port']) ?? MPC_DEFAULTS.gatewayPort,
    highWaterMark: intFlag(flags.hwm),
    curve: curveOptions(),
  });
  if (flags.http === undefined) return { mpc, ingress: null };
  const host = flags.host ?? MPC_DEFAULTS.host;
  try {
    const ingress = await startHttpIngress({
      host: flags['http-host'] ?? host,
      port: intFlag(flags.http)!,
      publisherHost: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host,
      publisherPort: mpc.publisherPort,
      token: flags['http-token'] ?? (process.env.TORMQ_HTTP_TOKEN || undefined),
      maxBodyBytes: intFlag(flags['http-max-body']),
      log,
    });
    return { mpc, ingress };
  } catch (error) {
    await mpc.close();
    throw error;
  }
}

// Signal handlers go in before anything is started, so a SIGTERM right after "mpc ready" (or during
// start-up) always stops cleanly instead of killing the process.
const starting = startAll();
onShutdownSignal(PROGRAM, async (signal) => {
  log.info({ signal }, 'stopping');
  const { mpc, ingress } = await starting;
  await ingress?.close();
  await mpc.close();
});
try {
  const { mpc, ingress } = await starting;
  log.info(
    {
      curve: flags['curve-key-file'] !== undefined,
      publisherPort: mpc.publisherPort,
      gatewayPort: mpc.gatewayPort,
      publisherEndpoint: mpc.publisherEndpoint,
      gatewayEndpoint: mpc.gatewayEndpoint,
      httpPort: ingress?.port ?? null,
    },
    'mpc ready',
  );
} catch (error) {
  failStart(PROGRAM, error);
}
