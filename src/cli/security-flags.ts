/** Maps the gateway's security flags onto GatewayOptions, reading the files they name. */
import { readFileSync } from 'node:fs';
import type { GatewayOptions } from '../gateway/config.js';
import { readCurveKeyFile } from '../protocol/curve.js';
import { die, ExitCodes, intFlag } from './common.js';

export interface SecurityFlags {
  'auth-secret'?: string;
  'auth-secret-file'?: string;
  'auth-public-key'?: string;
  'auth-subscribe-sub'?: boolean;
  'auth-clock-tolerance'?: string;
  'allowed-origins'?: string;
  'curve-server-key'?: string;
  'curve-key-file'?: string;
}

/** Environment variable holding the HS256 secret (kept out of `ps` output, unlike a flag). */
export const AUTH_SECRET_ENV = 'TORMQ_AUTH_SECRET';

export function securityOptions(program: string, flags: SecurityFlags): GatewayOptions {
  const read = (flag: string, path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      die(program, `--${flag}: cannot read ${path}: ${(error as Error).message}`, ExitCodes.USAGE);
    }
  };
  const secrets = [flags['auth-secret'], flags['auth-secret-file'], process.env[AUTH_SECRET_ENV]].filter((v) => v !== undefined && v !== '');
  if (secrets.length > 1) die(program, `use one of --auth-secret, --auth-secret-file and ${AUTH_SECRET_ENV}`, ExitCodes.USAGE);
  let authSecret = flags['auth-secret'] ?? process.env[AUTH_SECRET_ENV] ?? undefined;
  // A trailing newline is what `echo secret > file` leaves; it is not part of the secret.
  if (flags['auth-secret-file'] !== undefined) authSecret = read('auth-secret-file', flags['auth-secret-file']).replace(/\r?\n$/, '');
  const options: GatewayOptions = {
    authSecret: authSecret === '' ? undefined : authSecret,
    authPublicKey: flags['auth-public-key'] === undefined ? undefined : read('auth-public-key', flags['auth-public-key']),
    authSubscribeSub: flags['auth-subscribe-sub'] ? true : undefined,
    authClockToleranceSec: intFlag(flags['auth-clock-tolerance']),
    allowedOrigins: flags['allowed-origins']?.split(',').map((o) => o.trim()).filter((o) => o !== ''),
    curveServerKey: flags['curve-server-key'],
  };
  if (flags['curve-key-file'] !== undefined) {
    try {
      const pair = readCurveKeyFile(flags['curve-key-file']);
      options.curvePublicKey = pair.publicKey;
      options.curveSecretKey = pair.secretKey;
    } catch (error) {
      die(program, `--curve-key-file: ${(error as Error).message}`, ExitCodes.USAGE);
    }
  }
  return options;
}
