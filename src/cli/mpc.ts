#!/usr/bin/env node
/** `tormq-mpc -s 5559 -p 5560 [--host ADDR]`: the ZeroMQ hub between publishers and gateways. */
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { HTTP_INGRESS_DEFAULTS, startHttpIngress, type HttpIngress } from '../mpc/http-ingress.js';
import { MPC_DEFAULTS, startMpc } from '../mpc/mpc.js';
import { die, ExitCodes, failStart, intFlag, onShutdownSignal, parseFlags } from './common.js';

const PROGRAM = 'tormq-mpc';
const USAGE = `Usage: ${PROGRAM} [-s PORT] [-p PORT] [--host ADDR] [--http PORT [--http-host ADDR] [--http-token TOKEN]
                 [--http-max-body BYTES]] [--log-level LEVEL]

  -s, --sub-port PORT   port publishers connect to (XSUB)         default ${MPC_DEFAULTS.publisherPort}
  -p, --pub-port PORT   port gateways connect to (XPUB)           default ${MPC_DEFAULTS.gatewayPort}
      --host ADDR       address to bind; 0.0.0.0 for remote use   default ${MPC_DEFAULTS.host}
      --http PORT       also accept POST /publish and /push over HTTP  default off
      --http-host ADDR  address of the HTTP port                   default --host
      --http-token TOKEN  require "Authorization: Bearer TOKEN"     default none
                        (or set TORMQ_HTTP_TOKEN, which keeps it out of the process list)
      --http-max-body BYTES  largest request body, else 413      default ${HTTP_INGRESS_DEFAULTS.maxBodyBytes}
      --log-level LEVEL ${LOG_LEVELS.join(', ')}           default info
  -h, --help            this text
Port 0 picks a free port (printed in the "mpc ready" log line).
`;

const flags = parseFlags(PROGRAM, {
  'sub-port': { type: 'string', short: 's' },
  'pub-port': { type: 'string', short: 'p' },
  host: { type: 'string' },
  http: { type: 'string' },
  'http-host': { type: 'string' },
  'http-token': { type: 'string' },
  'http-max-body': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
}, USAGE);

const level = (flags['log-level'] ?? 'info') as LogLevel;
if (!LOG_LEVELS.includes(level)) die(PROGRAM, `--log-level must be one of ${LOG_LEVELS.join(', ')}`, ExitCodes.USAGE);
const log = createLogger(PROGRAM, level);

try {
  const mpc = await startMpc({
    host: flags.host,
    publisherPort: intFlag(flags['sub-port']) ?? MPC_DEFAULTS.publisherPort,
    gatewayPort: intFlag(flags['pub-port']) ?? MPC_DEFAULTS.gatewayPort,
  });
  let ingress: HttpIngress | null = null;
  if (flags.http !== undefined) {
    const host = flags.host ?? MPC_DEFAULTS.host;
    try {
      ingress = await startHttpIngress({
        host: flags['http-host'] ?? host,
        port: intFlag(flags.http)!,
        // The ingress publishes through the MPC's own publisher port, like any other publisher.
        publisherHost: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host,
        publisherPort: mpc.publisherPort,
        token: flags['http-token'] ?? (process.env.TORMQ_HTTP_TOKEN || undefined),
        maxBodyBytes: intFlag(flags['http-max-body']),
        log,
      });
    } catch (error) {
      await mpc.close();
      throw error;
    }
  }
  log.info(
    { publisherPort: mpc.publisherPort, gatewayPort: mpc.gatewayPort, publisherEndpoint: mpc.publisherEndpoint, gatewayEndpoint: mpc.gatewayEndpoint, httpPort: ingress?.port ?? null },
    'mpc ready',
  );
  onShutdownSignal(PROGRAM, async (signal) => {
    log.info({ signal }, 'stopping');
    await ingress?.close();
    await mpc.close();
  });
} catch (error) {
  failStart(PROGRAM, error);
}
