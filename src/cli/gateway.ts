#!/usr/bin/env node
/** `tormq-gateway -r HOST:PORT -p 8000 --workers N ...`: the multi-worker WebSocket gateway. */
import { readFileSync } from 'node:fs';
import { GATEWAY_OPTIONS, type GatewayOptions } from '../gateway/shared/config.js';
import { Gateway } from '../gateway/main/gateway.js';
import { readCurveKeyFile } from '../zmq/curve.js';
import { failStart, onShutdownSignal } from './common.js';
import { parseCommandLine, UsageError, type ExtraFlag } from './flags.js';

const PROGRAM = 'tormq-gateway';
/** Environment variable holding the HS256 secret (kept out of `ps` output, unlike a flag). */
export const AUTH_SECRET_ENV = 'TORMQ_AUTH_SECRET';
const SECURITY = 'Security (README, "Security")';

const extras: Array<ExtraFlag<GatewayOptions>> = [
  {
    flag: 'auth-secret-file',
    arg: 'FILE',
    help: `read the HS256 secret from FILE (or set ${AUTH_SECRET_ENV})`,
    section: SECURITY,
    apply(path, input) {
      // A trailing newline is what `echo secret > file` leaves; it is not part of the secret.
      input.authSecret = readText(path).replace(/\r?\n$/, '');
    },
  },
  {
    flag: 'curve-key-file',
    arg: 'FILE',
    help: "this gateway's CURVE key pair (from tormq-keys)",
    section: SECURITY,
    apply(path, input) {
      const pair = readCurveKeyFile(path);
      input.curvePublicKey = pair.publicKey;
      input.curveSecretKey = pair.secretKey;
    },
  },
];

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

const given = (flag: string) => process.argv.some((a) => a === flag || a.startsWith(`${flag}=`));
const secretSources = [given('--auth-secret'), given('--auth-secret-file'), (process.env[AUTH_SECRET_ENV] ?? '') !== ''];
if (secretSources.filter(Boolean).length > 1) {
  process.stderr.write(`${PROGRAM}: use one of --auth-secret, --auth-secret-file and ${AUTH_SECRET_ENV}\n`);
  process.exit(2);
}
const config = parseCommandLine({
  program: PROGRAM,
  synopsis: '[options]',
  table: GATEWAY_OPTIONS,
  extras,
  footer: 'Port 0 picks a free port (printed in the "gateway ready" log line).',
});

// Signal handlers go in before start, so a SIGTERM right after "gateway ready" (or during start-up)
// always drains instead of killing the process.
const starting = Gateway.start(config);
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
