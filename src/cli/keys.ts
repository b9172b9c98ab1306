#!/usr/bin/env node
/** `tormq-keys [--out FILE]`: a fresh CURVE key pair for tormq-mpc, tormq-gateway or a Publisher. */
import { writeFileSync } from 'node:fs';
import { anyString, defineOptions } from '../options/options.js';
import { generateCurveKeyPair } from '../zmq/curve.js';
import { die, ExitCodes, parseCommandLine } from './flags.js';

const PROGRAM = 'tormq-keys';
const flags = parseCommandLine({
  program: PROGRAM,
  synopsis: '[--out FILE]',
  table: defineOptions('a tormq-keys', {
    out: { default: '', check: anyString, help: 'write the pair to FILE (mode 0600, never overwriting)', cli: { flag: 'out', short: 'o', arg: 'FILE' } },
  }),
  footer: `Prints a new CURVE key pair as JSON {"publicKey": Z85, "secretKey": Z85}. With --out, writes it to
FILE and prints only the public key, for the other side's allowlist or --curve-server-key.`,
});
let pair;
try {
  pair = generateCurveKeyPair();
} catch (error) {
  die(PROGRAM, (error as Error).message, ExitCodes.FAILURE);
}
const json = `${JSON.stringify(pair, null, 2)}\n`;
if (flags.out === '') {
  process.stdout.write(json);
} else {
  try {
    writeFileSync(flags.out, json, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    die(PROGRAM, `cannot write ${flags.out}: ${(error as Error).message}`, ExitCodes.FAILURE);
  }
  process.stdout.write(`${pair.publicKey}\n`);
}
