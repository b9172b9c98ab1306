#!/usr/bin/env node
/** `tormq-mpc -s 5559 -p 5560 [--host ADDR]`: the ZeroMQ hub between publishers and gateways. */
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { MPC_DEFAULTS, startMpc } from '../mpc/mpc.js';
import { die, ExitCodes, failStart, intFlag, onShutdownSignal, parseFlags } from './common.js';

const PROGRAM = 'tormq-mpc';
const USAGE = `Usage: ${PROGRAM} [-s PORT] [-p PORT] [--host ADDR] [--log-level LEVEL]

  -s, --sub-port PORT   port publishers connect to (XSUB)         default ${MPC_DEFAULTS.publisherPort}
  -p, --pub-port PORT   port gateways connect to (XPUB)           default ${MPC_DEFAULTS.gatewayPort}
      --host ADDR       address to bind; 0.0.0.0 for remote use   default ${MPC_DEFAULTS.host}
      --log-level LEVEL ${LOG_LEVELS.join(', ')}           default info
  -h, --help            this text
Port 0 picks a free port (printed in the "mpc ready" log line).
`;

const flags = parseFlags(PROGRAM, {
  'sub-port': { type: 'string', short: 's' },
  'pub-port': { type: 'string', short: 'p' },
  host: { type: 'string' },
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
  log.info({ publisherPort: mpc.publisherPort, gatewayPort: mpc.gatewayPort, publisherEndpoint: mpc.publisherEndpoint, gatewayEndpoint: mpc.gatewayEndpoint }, 'mpc ready');
  onShutdownSignal(PROGRAM, async (signal) => {
    log.info({ signal }, 'stopping');
    await mpc.close();
  });
} catch (error) {
  failStart(PROGRAM, error);
}
