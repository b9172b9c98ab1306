/** The `tormq-mpc` command line: the MPC's and the HTTP ingress's options as flags. */
import { HTTP_INGRESS_OPTIONS } from '../ingress/http-ingress.js';
import { LOG_LEVELS } from '../log.js';
import { isLoopbackHost } from '../loopback.js';
import { tlsPairProblem } from '../tls-files.js';
import { gatewayQueueProblem, MPC_OPTIONS } from '../mpc/mpc.js';
import { anyString, defineOptions, int, integerFromText, nonEmptyString, oneOf, type AnyOption, type CliSpec } from '../options/options.js';
import type { CliDefinition } from './flags.js';

export const PROGRAM = 'tormq-mpc';
const HTTP = 'HTTP publishing (README, "Publishing over HTTP")';
const CURVE = 'CURVE (README, "Protected publishing")';
const HISTORY = MPC_OPTIONS.specs.historySize.section!;

/** An option of the MPC or the ingress, as a flag of this CLI. */
const asFlag = <O extends AnyOption>(option: O, cli: CliSpec, more: Partial<AnyOption> = {}): O => ({ ...option, cli, ...more });
const file = (flag: string, help: string) => ({ default: '', check: anyString, help, cli: { flag, arg: 'FILE' }, section: CURVE });

export const MPC_CLI_OPTIONS = defineOptions('a tormq-mpc', {
  publisherPort: asFlag(MPC_OPTIONS.specs.publisherPort, { flag: 'sub-port', short: 's', arg: 'PORT' }),
  gatewayPort: asFlag(MPC_OPTIONS.specs.gatewayPort, { flag: 'pub-port', short: 'p', arg: 'PORT' }),
  host: asFlag(MPC_OPTIONS.specs.host, { flag: 'host', arg: 'ADDR' }),
  plainPort: asFlag(MPC_OPTIONS.specs.plainPort, { flag: 'plain-port', arg: 'PORT' }),
  highWaterMark: asFlag(MPC_OPTIONS.specs.highWaterMark, { flag: 'hwm', arg: 'N' }),
  gatewayQueueBytes: asFlag(MPC_OPTIONS.specs.gatewayQueueBytes, { flag: 'gateway-queue-bytes', arg: 'N' }),
  gatewayQueueTotalBytes: asFlag(MPC_OPTIONS.specs.gatewayQueueTotalBytes, { flag: 'gateway-queue-total-bytes', arg: 'N' }),
  maxMessageBytes: asFlag(MPC_OPTIONS.specs.maxMessageBytes, { flag: 'max-message-bytes', arg: 'N' }),
  zmtpReader: asFlag(MPC_OPTIONS.specs.zmtpReader, { flag: 'zmtp-reader', negatable: true, help: 'read the publisher port with libzmq\'s SUB instead of tormq\'s own ZMTP reader (CURVE always does)' }),
  zmtpLink: asFlag(MPC_OPTIONS.specs.zmtpLink, { flag: 'zmtp-link', negatable: true, help: 'serve the gateway port with libzmq\'s XPUB instead of tormq\'s own ZMTP link server (CURVE always does)' }),
  peerHeartbeatMs: asFlag(MPC_OPTIONS.specs.peerHeartbeatMs, { flag: 'peer-heartbeat-ms', arg: 'N' }),
  coalesceMs: asFlag(MPC_OPTIONS.specs.coalesceMs, { flag: 'coalesce-ms', arg: 'N' }),
  fdReserve: asFlag(MPC_OPTIONS.specs.fdReserve, { flag: 'fd-reserve', arg: 'N' }),
  maxTopicLength: asFlag(MPC_OPTIONS.specs.maxTopicLength, { flag: 'max-topic-length', arg: 'N' }),
  historySize: asFlag(MPC_OPTIONS.specs.historySize, { flag: 'history-size', arg: 'N' }),
  historyTtl: { default: 300, check: int(1, 86_400 * 365), help: 'how long a message stays in history, seconds', cli: { flag: 'history-ttl', arg: 'S' }, section: HISTORY },
  historyMaxBytes: asFlag(MPC_OPTIONS.specs.historyMaxBytes, { flag: 'history-max-bytes', arg: 'N' }),
  historyMaxStreams: asFlag(MPC_OPTIONS.specs.historyMaxStreams, { flag: 'history-max-streams', arg: 'N' }),
  presenceMaxEntries: asFlag(MPC_OPTIONS.specs.presenceMaxEntries, { flag: 'presence-max-entries', arg: 'N' }),
  adminPort: {
    default: 9101,
    check: int(-1, 65535, 'an integer from 0 to 65535 (or -1 to disable)'),
    help: 'admin HTTP port (/healthz, /metrics, /stats); `off` disables',
    cli: { flag: 'admin-port', arg: 'PORT', fromText: (t) => (t === 'off' ? -1 : integerFromText(t)) },
  },
  adminHost: { default: '127.0.0.1', check: nonEmptyString, help: 'admin HTTP address', cli: { flag: 'admin-host', arg: 'ADDR' } },
  logLevel: { default: 'info' as (typeof LOG_LEVELS)[number], check: oneOf(LOG_LEVELS), help: 'pino log level', cli: { flag: 'log-level', arg: 'LEVEL' } },
  httpPort: {
    default: -1,
    defaultText: 'off',
    check: int(-1, 65535, 'an integer from 0 to 65535'),
    help: "also accept POST /publish and gopusher's grpc-gateway routes (POST /push, GET /system, /isOnline, /group) over HTTP on this port",
    cli: { flag: 'http', arg: 'PORT', fromText: integerFromText },
    section: HTTP,
  },
  httpHost: { default: '', defaultText: '--host', check: anyString, help: 'address of the HTTP port', cli: { flag: 'http-host', arg: 'ADDR' }, section: HTTP },
  grpcPort: {
    default: -1,
    defaultText: 'off',
    check: int(-1, 65535, 'an integer from 0 to 65535'),
    help: "serve gopusher's gRPC service (proto/rpc.proto: Push, System, IsOnline, Group) on this port",
    cli: { flag: 'grpc', arg: 'PORT', fromText: integerFromText },
    section: HTTP,
  },
  grpcHost: { default: '', defaultText: '--host', check: anyString, help: 'address of the gRPC port', cli: { flag: 'grpc-host', arg: 'ADDR' }, section: HTTP },
  // Not asFlag(GRPC_INGRESS_OPTIONS…): importing grpc-ingress.ts would load grpc-js in every MPC.
  grpcIdleMs: {
    default: 300_000,
    check: int(1),
    help: 'close a gRPC connection with no call open for this long (GOAWAY; clients reconnect for their next call)',
    cli: { flag: 'grpc-idle-ms', arg: 'MS', fromText: integerFromText },
    section: HTTP,
  },
  grpcMaxUnfinishedBytes: {
    default: 256 * 1024 * 1024,
    check: int(1),
    help: 'request bytes of gRPC calls not yet whole (grpc-js holds each message until it is) the port holds, all connections together; past it the connection holding the most is cut, counted (grpc.unfinishedCuts in /stats) and logged',
    cli: { flag: 'grpc-max-unfinished-bytes', arg: 'BYTES', fromText: integerFromText },
    section: HTTP,
  },
  httpToken: asFlag(HTTP_INGRESS_OPTIONS.specs.token, { flag: 'http-token', arg: 'TOKEN' }, {
    help: 'require "Authorization: Bearer TOKEN" over HTTP and as gRPC metadata (or set TORMQ_HTTP_TOKEN, which keeps it out of the process list)',
    section: HTTP,
  }),
  httpMaxBody: asFlag(HTTP_INGRESS_OPTIONS.specs.maxBodyBytes, { flag: 'http-max-body', arg: 'BYTES' }, { section: HTTP }),
  httpMaxDepth: asFlag(HTTP_INGRESS_OPTIONS.specs.maxDataDepth, { flag: 'http-max-depth', arg: 'N' }, { section: HTTP }),
  httpTlsCert: asFlag(HTTP_INGRESS_OPTIONS.specs.tlsCert, { flag: 'http-tls-cert', arg: 'FILE' }, {
    help: 'serve HTTP publishing over https:// with this PEM certificate chain; re-read on SIGHUP',
    section: HTTP,
  }),
  httpTlsKey: asFlag(HTTP_INGRESS_OPTIONS.specs.tlsKey, { flag: 'http-tls-key', arg: 'FILE' }, { help: 'the PEM private key of --http-tls-cert', section: HTTP }),
  httpInsecure: asFlag(HTTP_INGRESS_OPTIONS.specs.insecure, { flag: 'http-insecure' }, {
    help: 'allow HTTP and gRPC publishing without --http-token on a non-loopback address (anyone who reaches it can publish)',
    section: HTTP,
  }),
  curveKeyFile: file('curve-key-file', 'CURVE on both ports with this key pair (from tormq-keys)'),
  curveAllowPublishers: file('curve-allow-publishers', 'public keys allowed to publish, one per line (# comments)'),
  curveAllowGateways: file('curve-allow-gateways', 'public keys allowed to subscribe (gateways), one per line'),
}, (c, fail, name) => {
  const httpHost = c.httpHost === '' ? c.host : c.httpHost;
  if (c.httpPort !== -1 && c.httpToken === undefined && !c.httpInsecure && !isLoopbackHost(httpHost)) {
    const where = c.httpHost === '' ? `${name('host')} ${httpHost}` : `${name('httpHost')} ${httpHost}`;
    fail('httpToken', `set when ${name('httpPort')} listens on a non-loopback address (${where}): anyone who reaches it could publish; or give ${name('httpInsecure')} to allow that`, null);
  }
  const grpcHost = c.grpcHost === '' ? c.host : c.grpcHost;
  if (c.grpcPort !== -1 && c.httpToken === undefined && !c.httpInsecure && !isLoopbackHost(grpcHost)) {
    const where = c.grpcHost === '' ? `${name('host')} ${grpcHost}` : `${name('grpcHost')} ${grpcHost}`;
    fail('httpToken', `set when ${name('grpcPort')} listens on a non-loopback address (${where}): anyone who reaches it could push; or give ${name('httpInsecure')} to allow that`, null);
  }
  if (c.grpcHost !== '' && c.grpcPort === -1) fail('grpcHost', `used together with ${name('grpcPort')}`);
  if ((c.httpTlsCert !== '' || c.httpTlsKey !== '') && c.httpPort === -1) fail(c.httpTlsCert !== '' ? 'httpTlsCert' : 'httpTlsKey', `used together with ${name('httpPort')}`);
  const tls = tlsPairProblem(c.httpTlsCert, c.httpTlsKey);
  if (tls !== null) fail(tls.key === 'cert' ? 'httpTlsCert' : 'httpTlsKey', tls.must.replace('the key', name('httpTlsKey')).replace('the certificate', name('httpTlsCert')));
  if (c.curveKeyFile === '' && (c.curveAllowPublishers !== '' || c.curveAllowGateways !== '')) {
    fail(c.curveAllowPublishers !== '' ? 'curveAllowPublishers' : 'curveAllowGateways', `used together with ${name('curveKeyFile')}`);
  }
  const queue = gatewayQueueProblem(c, c.zmtpLink && c.curveKeyFile === '', name);
  if (queue !== null) fail(queue.key, queue.must);
});

export const MPC_CLI: CliDefinition<typeof MPC_CLI_OPTIONS.specs> = {
  program: PROGRAM,
  synopsis: '[-s PORT] [-p PORT] [--host ADDR] [--http PORT] [--grpc PORT] [options]',
  table: MPC_CLI_OPTIONS,
  footer: 'Port 0 picks a free port (printed in the "mpc ready" log line).',
};
