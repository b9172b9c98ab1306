#!/usr/bin/env node
/** `tormq-gateway -r HOST:PORT -p 8000 --workers N ...`: the multi-worker WebSocket gateway. */
import { Gateway } from '../gateway/main/gateway.js';
import { failStart, onShutdownSignal } from './common.js';
import { parseCommandLine } from './flags.js';
import { GATEWAY_CLI, PROGRAM } from './gateway-flags.js';

const config = parseCommandLine(GATEWAY_CLI);

// Signal handlers go in before start, so a SIGTERM right after "gateway ready" (or during start-up)
// always drains instead of killing the process.
const starting = Gateway.start(config);
onShutdownSignal(PROGRAM, async (signal) => {
  const gateway = await starting;
  gateway.log.info({ signal }, 'shutdown requested');
  await gateway.stop();
});
// SIGHUP re-reads --tls-cert/--tls-key and hands them to every worker; no connection is dropped.
process.on('SIGHUP', () => void starting.then((gateway) => gateway.reloadTls(), () => {}));
try {
  await starting;
} catch (error) {
  failStart(PROGRAM, error);
}
