/**
 * CURVE (CurveZMQ) keys for the ZeroMQ links: publishers -> MPC and MPC -> gateways. Keys are the
 * 40-character Z85 text form libzmq and zeromq.js use (`curveKeyPair()`); a key file is the JSON
 * `{"publicKey": "...", "secretKey": "..."}` that `tormq-keys` writes.
 */
import { readFileSync } from 'node:fs';
import { zeromq } from './zeromq.js';

export interface CurveKeyPair {
  readonly publicKey: string;
  readonly secretKey: string;
}

/** What a CURVE client (publisher, gateway) needs: its own pair and the server's public key. */
export interface CurveClientKeys extends CurveKeyPair {
  readonly serverKey: string;
}

const Z85_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** `true` for a 40-character Z85 string (the text form of a 32-byte CURVE key). */
export function isCurveKey(value: unknown): value is string {
  return typeof value === 'string' && Z85_KEY.test(value);
}

/** Z85-encodes bytes whose length is a multiple of 4 (ZAP hands over client keys as 32 raw bytes). */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new RangeError('z85Encode needs a multiple of 4 bytes');
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = ((bytes[i]! << 24) >>> 0) + (bytes[i + 1]! << 16) + (bytes[i + 2]! << 8) + bytes[i + 3]!;
    let chunk = '';
    for (let j = 0; j < 5; j++) {
      chunk = Z85_CHARS[value % 85]! + chunk;
      value = Math.floor(value / 85);
    }
    out += chunk;
  }
  return out;
}

/** Throws a clear error when this zeromq build cannot do CURVE (it needs libsodium/tweetnacl). */
export function assertCurveAvailable(): void {
  if (!zeromq().capability.curve) throw new Error('this zeromq build has no CURVE support (zeromq.capability.curve is false)');
}

/** A fresh key pair (Z85). */
export function generateCurveKeyPair(): CurveKeyPair {
  assertCurveAvailable();
  const { publicKey, secretKey } = zeromq().curveKeyPair();
  return { publicKey, secretKey };
}

/** Reads a `tormq-keys` JSON key file. Throws TypeError naming the file when it is not one. */
export function readCurveKeyFile(path: string): CurveKeyPair {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new TypeError(`${path} is not a readable JSON key file: ${(error as Error).message}`);
  }
  const { publicKey, secretKey } = (parsed ?? {}) as Record<string, unknown>;
  if (!isCurveKey(publicKey) || !isCurveKey(secretKey)) {
    throw new TypeError(`${path} must hold {"publicKey": Z85, "secretKey": Z85} (40 characters each)`);
  }
  return { publicKey, secretKey };
}

/**
 * Reads a list of public keys: one Z85 key per line; blank lines, lines starting with `# ` and anything
 * after whitespace + `#` are comments, so the file can say whose key each line is.
 */
export function readCurveKeyList(path: string): string[] {
  const keys: string[] = [];
  const lines = readFileSync(path, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    // Z85 keys may themselves contain '#': a key is the line's first word, a comment follows whitespace.
    const [first = '', ...rest] = lines[i]!.trim().split(/\s+/);
    if (isCurveKey(first) && (rest.length === 0 || rest[0]!.startsWith('#'))) keys.push(first);
    else if (first !== '' && !first.startsWith('#')) throw new TypeError(`${path}:${i + 1}: not a 40-character Z85 public key`);
  }
  return keys;
}

/** zeromq.js socket options that make a socket a CURVE client of `keys.serverKey`. */
export function curveClientOptions(keys: CurveClientKeys): { curveServerKey: string; curvePublicKey: string; curveSecretKey: string } {
  assertCurveAvailable();
  return { curveServerKey: keys.serverKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey };
}
