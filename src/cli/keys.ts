#!/usr/bin/env node
/** `tormq-keys [--out FILE]`: a fresh CURVE key pair for tormq-mpc, tormq-gateway or a Publisher. */
import { writeFileSync } from 'node:fs';
import { generateCurveKeyPair } from '../protocol/curve.js';
import { die, ExitCodes, parseFlags } from './common.js';

const PROGRAM = 'tormq-keys';
const USAGE = `Usage: ${PROGRAM} [--out FILE]

Prints a new CURVE key pair as JSON {"publicKey": Z85, "secretKey": Z85}. With --out, writes it to
FILE (mode 0600, never overwriting) and prints only the public key, for the other side's allowlist
or --curve-server-key.

  -o, --out FILE   write the pair to FILE
  -h, --help       this text
`;

const flags = parseFlags(PROGRAM, { out: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } }, USAGE);
let pair;
try {
  pair = generateCurveKeyPair();
} catch (error) {
  die(PROGRAM, (error as Error).message, ExitCodes.FAILURE);
}
const json = `${JSON.stringify(pair, null, 2)}\n`;
if (flags.out === undefined) {
  process.stdout.write(json);
} else {
  try {
    writeFileSync(flags.out, json, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    die(PROGRAM, `cannot write ${flags.out}: ${(error as Error).message}`, ExitCodes.FAILURE);
  }
  process.stdout.write(`${pair.publicKey}\n`);
}
