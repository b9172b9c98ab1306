#!/usr/bin/env node
/** `tormq-mpc -s 5559 -p 5560 [--host ADDR]`: the ZeroMQ hub between publishers and gateways. */
import { HTTP_INGRESS_OPTIONS, startHttpIngress, type HttpIngress } from '../ingress/http-ingress.js';
import { createLogger, LOG_LEVELS } from '../log.js';
import { MPC_OPTIONS, startMpc, type Mpc, type MpcCurveOptions } from '../mpc/mpc.js';
import { anyString, defineOptions, int, integerFromText, oneOf, type AnyOption, type CliSpec } from '../options/options.js';
import { readCurveKeyFile, readCurveKeyList } from '../zmq/curve.js';
import { failStart, onShutdownSignal } from './common.js';
import { die, ExitCodes, parseCommandLine } from './flags.js';

const PROGRAM = 'tormq-mpc';
const HTTP = 'HTTP publishing (README, "Publishing over HTTP")';
const CURVE = 'CURVE (README, "Protected publishing")';

/** An option of the MPC or the ingress, as a flag of this CLI. */
const asFlag = <O extends AnyOption>(option: O, cli: CliSpec, more: Partial<AnyOption> = {}): O => ({ ...option, cli, ...more });
const file = (flag: string, help: string) => ({ default: '', check: anyString, help, cli: { flag, arg: 'FILE' }, section: CURVE });

const OPTIONS = defineOptions('a tormq-mpc', {
  publisherPort: asFlag(MPC_OPTIONS.specs.publisherPort, { flag: 'sub-port', short: 's', arg: 'PORT' }),
  gatewayPort: asFlag(MPC_OPTIONS.specs.gatewayPort, { flag: 'pub-port', short: 'p', arg: 'PORT' }),
  host: asFlag(MPC_OPTIONS.specs.host, { flag: 'host', arg: 'ADDR' }),
  highWaterMark: asFlag(MPC_OPTIONS.specs.highWaterMark, { flag: 'hwm', arg: 'N' }),
  logLevel: { default: 'info' as (typeof LOG_LEVELS)[number], check: oneOf(LOG_LEVELS), help: 'pino log level', cli: { flag: 'log-level', arg: 'LEVEL' } },
  httpPort: {
    default: -1,
    defaultText: 'off',
    check: int(-1, 65535, 'an integer from 0 to 65535'),
    help: 'also accept POST /publish and /push over HTTP on this port',
    cli: { flag: 'http', arg: 'PORT', fromText: integerFromText },
    section: HTTP,
  },
  httpHost: { default: '', defaultText: '--host', check: anyString, help: 'address of the HTTP port', cli: { flag: 'http-host', arg: 'ADDR' }, section: HTTP },
  httpToken: asFlag(HTTP_INGRESS_OPTIONS.specs.token, { flag: 'http-token', arg: 'TOKEN', env: 'TORMQ_HTTP_TOKEN' }, {
    help: 'require "Authorization: Bearer TOKEN" (or set TORMQ_HTTP_TOKEN, which keeps it out of the process list)',
    section: HTTP,
  }),
  httpMaxBody: asFlag(HTTP_INGRESS_OPTIONS.specs.maxBodyBytes, { flag: 'http-max-body', arg: 'BYTES' }, { section: HTTP }),
  curveKeyFile: file('curve-key-file', 'CURVE on both ports with this key pair (from tormq-keys)'),
  curveAllowPublishers: file('curve-allow-publishers', 'public keys allowed to publish, one per line (# comments)'),
  curveAllowGateways: file('curve-allow-gateways', 'public keys allowed to subscribe (gateways), one per line'),
}, (c, fail, name) => {
  if (c.curveKeyFile === '' && (c.curveAllowPublishers !== '' || c.curveAllowGateways !== '')) {
    fail(c.curveAllowPublishers !== '' ? 'curveAllowPublishers' : 'curveAllowGateways', `used together with ${name('curveKeyFile')}`);
  }
});

const flags = parseCommandLine({
  program: PROGRAM,
  synopsis: '[-s PORT] [-p PORT] [--host ADDR] [--http PORT] [options]',
  table: OPTIONS,
  footer: 'Port 0 picks a free port (printed in the "mpc ready" log line).',
});
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

/** The MPC, and the HTTP ingress when `--http` is given (it publishes through the MPC's own port). */
async function startAll(): Promise<{ mpc: Mpc; ingress: HttpIngress | null }> {
  const mpc = await startMpc({
    host: flags.host,
    publisherPort: flags.publisherPort,
    gatewayPort: flags.gatewayPort,
    highWaterMark: flags.highWaterMark,
    curve: curveOptions(),
  });
  if (flags.httpPort === -1) return { mpc, ingress: null };
  const host = flags.host;
  try {
    const ingress = await startHttpIngress({
      host: flags.httpHost === '' ? host : flags.httpHost,
      port: flags.httpPort,
      publisherHost: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host,
      publisherPort: mpc.publisherPort,
      token: flags.httpToken,
      maxBodyBytes: flags.httpMaxBody,
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
      curve: flags.curveKeyFile !== '',
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
