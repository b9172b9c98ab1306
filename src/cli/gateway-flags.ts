/** The `tormq-gateway` command line: the gateway's option table plus the flags that read files. */
import { readFileSync } from 'node:fs';
import { GATEWAY_OPTIONS, type GatewayOptions } from '../gateway/shared/config.js';
import { readCurveKeyFile } from '../zmq/curve.js';
import { UsageError, type CliDefinition, type ExtraFlag } from './flags.js';

export const PROGRAM = 'tormq-gateway';
/** Environment variable holding the HS256 secret (kept out of `ps` output, unlike a flag). */
export const AUTH_SECRET_ENV = 'TORMQ_AUTH_SECRET';
const SECURITY = 'Security (README, "Security")';

const extras: Array<ExtraFlag<GatewayOptions>> = [
  {
    flag: 'auth-secret-file',
    arg: 'FILE',
    help: `read the HS256 secret from FILE (or set ${AUTH_SECRET_ENV})`,
    section: SECURITY,
    apply(path, input, name) {
      // Within one source; across sources the precedence rule picks one (flag > environment > file).
      if (input.authSecret !== undefined) throw new UsageError(`give the secret once: ${name('auth-secret')} or ${name('auth-secret-file')}`);
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

export const GATEWAY_CLI: CliDefinition<typeof GATEWAY_OPTIONS.specs> = {
  program: PROGRAM,
  synopsis: '[options]',
  table: GATEWAY_OPTIONS,
  extras,
  footer: 'Port 0 picks a free port (printed in the "gateway ready" log line).',
};
