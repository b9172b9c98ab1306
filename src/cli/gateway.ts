#!/usr/bin/env node
/** `tormq-gateway -r HOST:PORT -p 8000 --workers N ...`: the multi-worker WebSocket gateway. */
import { GATEWAY_DEFAULTS as D, type GatewayOptions, type SlowClientPolicy } from '../gateway/config.js';
import { Gateway } from '../gateway/gateway.js';
import type { LogLevel } from '../log.js';
import { failStart, intFlag, onShutdownSignal, parseFlags } from './common.js';
import { securityOptions } from './security-flags.js';

const PROGRAM = 'tormq-gateway';
const USAGE = `Usage: ${PROGRAM} [options]

  -r, --mpc HOST:PORT          MPC gateway port to subscribe to (repeat for several)  default ${D.mpc.join(',')}
  -p, --port PORT              WebSocket port (all workers share it; 0 = any)        default ${D.port}
      --host ADDR              address to listen on                                  default ${D.host}
      --path PATH              WebSocket path                                        default ${D.path}
  -w, --workers N              worker threads                                        default ${D.workers} (this machine)
      --admin-port PORT        /healthz /metrics /stats ("off" disables)              default ${D.adminPort}
      --admin-host ADDR        admin address                                         default ${D.adminHost}
      --ring-bytes N           shared-memory ring per worker (power of two)          default ${D.ringBytes}
      --upstream-hwm N         messages the MPC link buffers before ZeroMQ drops      default ${D.upstreamHighWaterMark}
      --max-message-bytes N    largest published body accepted                       default ${D.maxMessageBytes}
      --max-frame-bytes N      largest client frame (else close 1009)                default ${D.maxFrameBytes}
      --max-topic-length N     longest topic                                         default ${D.maxTopicLength}
      --max-subscriptions N    subscriptions per connection                          default ${D.maxSubscriptions}
      --max-connections N      connections per gateway, 0 = unlimited (else 503)     default ${D.maxConnections}
      --slow-client-bytes N    outbound bytes buffered per connection before policy  default ${D.slowClientBytes}
      --slow-client-policy P   close (4008) or drop                                  default ${D.slowClientPolicy}
      --heartbeat-ms N         ping interval, 0 = off                                default ${D.heartbeatMs}
      --drain-ms N             spread 1001 closes over this window on shutdown       default ${D.drainMs}
      --client-rate-limit N    client frames per second per connection, 0 = off      default ${D.clientRateLimit}
      --client-rate-burst N    frames at once; this many rejected in a row close 4029 default ${D.clientRateBurst}
      --enable-test-hooks      TEST ONLY: fault-injection endpoints on the admin port (off by default)
      --batch-delay-ms N       coalescing window before a worker drains (latency)    default ${D.batchDelayMs}
      --no-validate-json       forward bodies without a full JSON parse              (validates by default)
      --no-demo-page           do not serve the demo page at /
      --log-level LEVEL        fatal, error, warn, info, debug, trace, silent        default ${D.logLevel}
  Security (README, "Security"):
      --auth-secret SECRET     HS256 secret: every connection needs a JWT (prefer the file or env)
      --auth-secret-file FILE  read the HS256 secret from FILE (or set TORMQ_AUTH_SECRET)
      --auth-public-key FILE   PEM public key (RS256, ES256/384/512, EdDSA) verifying the JWTs
      --auth-subscribe-sub     subscribe each connection to the topic named by its token's sub
      --auth-clock-tolerance S leeway for exp/nbf, seconds                           default ${D.authClockToleranceSec}
      --allowed-origins LIST   comma-separated browser origins (else HTTP 403)        default any
      --curve-server-key KEY   the MPC's CURVE public key (Z85): encrypt the MPC link
      --curve-key-file FILE    this gateway's CURVE key pair (from tormq-keys)
  -h, --help                   this text
`;

const flags = parseFlags(PROGRAM, {
  mpc: { type: 'string', short: 'r', multiple: true },
  port: { type: 'string', short: 'p' },
  host: { type: 'string' },
  path: { type: 'string' },
  workers: { type: 'string', short: 'w' },
  'admin-port': { type: 'string' },
  'admin-host': { type: 'string' },
  'ring-bytes': { type: 'string' },
  'upstream-hwm': { type: 'string' },
  'max-message-bytes': { type: 'string' },
  'max-frame-bytes': { type: 'string' },
  'max-topic-length': { type: 'string' },
  'max-subscriptions': { type: 'string' },
  'max-connections': { type: 'string' },
  'slow-client-bytes': { type: 'string' },
  'slow-client-policy': { type: 'string' },
  'heartbeat-ms': { type: 'string' },
  'drain-ms': { type: 'string' },
  'client-rate-limit': { type: 'string' },
  'client-rate-burst': { type: 'string' },
  'enable-test-hooks': { type: 'boolean' },
  'batch-delay-ms': { type: 'string' },
  'no-validate-json': { type: 'boolean' },
  'no-demo-page': { type: 'boolean' },
  'log-level': { type: 'string' },
  'auth-secret': { type: 'string' },
  'auth-secret-file': { type: 'string' },
  'auth-public-key': { type: 'string' },
  'auth-subscribe-sub': { type: 'boolean' },
  'auth-clock-tolerance': { type: 'string' },
  'allowed-origins': { type: 'string' },
  'curve-server-key': { type: 'string' },
  'curve-key-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
}, USAGE);

const options: GatewayOptions = {
  mpc: flags.mpc?.flatMap((m) => m.split(',')),
  port: intFlag(flags.port),
  host: flags.host,
  path: flags.path,
  workers: intFlag(flags.workers),
  adminPort: flags['admin-port'] === 'off' ? -1 : intFlag(flags['admin-port']),
  adminHost: flags['admin-host'],
  ringBytes: intFlag(flags['ring-bytes']),
  upstreamHighWaterMark: intFlag(flags['upstream-hwm']),
  maxMessageBytes: intFlag(flags['max-message-bytes']),
  maxFrameBytes: intFlag(flags['max-frame-bytes']),
  maxTopicLength: intFlag(flags['max-topic-length']),
  maxSubscriptions: intFlag(flags['max-subscriptions']),
  maxConnections: intFlag(flags['max-connections']),
  slowClientBytes: intFlag(flags['slow-client-bytes']),
  slowClientPolicy: flags['slow-client-policy'] as SlowClientPolicy | undefined,
  heartbeatMs: intFlag(flags['heartbeat-ms']),
  drainMs: intFlag(flags['drain-ms']),
  clientRateLimit: intFlag(flags['client-rate-limit']),
  clientRateBurst: intFlag(flags['client-rate-burst']),
  testHooks: flags['enable-test-hooks'] ? true : undefined,
  batchDelayMs: intFlag(flags['batch-delay-ms']),
  validateJson: flags['no-validate-json'] ? false : undefined,
  demoPage: flags['no-demo-page'] ? false : undefined,
  logLevel: flags['log-level'] as LogLevel | undefined,
  ...securityOptions(PROGRAM, flags),
};

// Signal handlers go in before start, so a SIGTERM right after "gateway ready" (or during start-up)
// always drains instead of killing the process.
const starting = Gateway.start(options);
onShutdownSignal(PROGRAM, async (signal) => {
  const gateway = await starting;
  gateway.log.info({ signal }, 'shutdown requested');
  await gateway.stop();
});
try {
  await starting;
} catch (error) {
  failStart(PROGRAM, error);
}
