/**
 * The rules behind the gateway's security options (token verification keys, origins, CURVE keys), used
 * by the options table (config.ts) and by the worker's token verifier.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { CurveClientKeys } from '../../zmq/curve.js';

/** Shortest HS256 secret accepted: 256 bits of key for a 256-bit HMAC (RFC 7518 section 3.2). */
export const MIN_AUTH_SECRET_LENGTH = 32;

export type AuthAlgorithm = 'HS256' | 'RS256' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA';

const PUBLIC_KEY_MUST = 'a PEM public key (RSA, EC P-256/P-384/P-521 or Ed25519)';

/**
 * The one JWT algorithm a public key verifies (pinned: a token signed with any other, `none` included,
 * is refused), or what is wrong with the key.
 */
function inspectPublicKey(pem: string): { algorithm: AuthAlgorithm } | { must: string; shown: string } {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    return { must: PUBLIC_KEY_MUST, shown: '<unreadable key>' };
  }
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return { must: 'an RSA key of at least 2048 bits', shown: '<short RSA key>' };
    return { algorithm: 'RS256' };
  }
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { algorithm: 'ES256' };
    if (curve === 'secp384r1') return { algorithm: 'ES384' };
    if (curve === 'secp521r1') return { algorithm: 'ES512' };
    return { must: 'an EC key on P-256, P-384 or P-521', shown: `<EC key on ${curve}>` };
  }
  if (type === 'ed25519') return { algorithm: 'EdDSA' };
  return { must: PUBLIC_KEY_MUST, shown: `<${type} key>` };
}

/** What is wrong with a PEM public key for token verification, or null when it is usable. */
export function publicKeyProblem(pem: string): { must: string; shown: string } | null {
  const result = inspectPublicKey(pem);
  return 'algorithm' in result ? null : result;
}

/** The algorithm a public key pins; throws TypeError for a key tormq does not accept. */
export function algorithmForPublicKey(pem: string): AuthAlgorithm {
  const result = inspectPublicKey(pem);
  if ('algorithm' in result) return result.algorithm;
  throw new TypeError(`options.publicKey must be ${result.must}, got ${JSON.stringify(result.shown)}`);
}

/** An origin as browsers send it: `scheme://host[:port]`, no path, no trailing slash. */
export function isOrigin(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}

/** The gateway's CURVE client keys for the MPC link, or null when CURVE is off. */
export function curveKeysOf(c: { curveServerKey: string; curvePublicKey: string; curveSecretKey: string }): CurveClientKeys | null {
  if (c.curveServerKey === '') return null;
  return { serverKey: c.curveServerKey, publicKey: c.curvePublicKey, secretKey: c.curveSecretKey };
}
