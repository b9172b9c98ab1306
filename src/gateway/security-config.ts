/**
 * Validation of the gateway's security options (token authentication, origin allowlist, CURVE link
 * to the MPC). Called by validateGatewayConfig; same `options.x must be …` messages.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { isCurveKey, type CurveClientKeys } from '../protocol/curve.js';
import type { GatewayConfig } from './config.js';

/** Shortest HS256 secret accepted: 256 bits of key for a 256-bit HMAC (RFC 7518 section 3.2). */
export const MIN_AUTH_SECRET_LENGTH = 32;

export type AuthAlgorithm = 'HS256' | 'RS256' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA';

function fail(name: string, must: string, shown: unknown): never {
  const Ctor = typeof shown === 'number' ? RangeError : TypeError;
  throw new Ctor(`options.${name} must be ${must}, got ${JSON.stringify(shown)}`);
}

/**
 * The one JWT algorithm a public key verifies (pinned: a token signed with any other, `none`
 * included, is refused). Throws TypeError for keys tormq does not accept.
 */
export function algorithmForPublicKey(pem: string): AuthAlgorithm {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    fail('authPublicKey', 'a PEM public key (RSA, EC P-256/P-384/P-521 or Ed25519)', '<unreadable key>');
  }
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) fail('authPublicKey', 'an RSA key of at least 2048 bits', '<short RSA key>');
    return 'RS256';
  }
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    if (curve === 'secp521r1') return 'ES512';
    fail('authPublicKey', 'an EC key on P-256, P-384 or P-521', `<EC key on ${curve}>`);
  }
  if (type === 'ed25519') return 'EdDSA';
  fail('authPublicKey', 'a PEM public key (RSA, EC P-256/P-384/P-521 or Ed25519)', `<${type} key>`);
}

/** An origin as browsers send it: `scheme://host[:port]`, no path, no trailing slash. */
function isOrigin(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}

export function checkSecurityOptions(c: GatewayConfig): void {
  if (typeof c.authSecret !== 'string' || (c.authSecret !== '' && c.authSecret.length < MIN_AUTH_SECRET_LENGTH)) {
    // Never echo a secret back, not even a short one.
    fail('authSecret', `'' (off) or a string of at least ${MIN_AUTH_SECRET_LENGTH} characters`, '<redacted>');
  }
  if (typeof c.authPublicKey !== 'string') fail('authPublicKey', 'a PEM string', typeof c.authPublicKey);
  if (c.authSecret !== '' && c.authPublicKey !== '') {
    fail('authPublicKey', "'' when authSecret is set (choose one way to verify tokens)", '<key>');
  }
  if (c.authPublicKey !== '') algorithmForPublicKey(c.authPublicKey);
  if (typeof c.authSubscribeSub !== 'boolean') fail('authSubscribeSub', 'a boolean', c.authSubscribeSub);
  if (c.authSubscribeSub && c.authSecret === '' && c.authPublicKey === '') {
    fail('authSubscribeSub', 'false unless authSecret or authPublicKey is set', c.authSubscribeSub);
  }
  const tolerance = c.authClockToleranceSec;
  if (typeof tolerance !== 'number' || !Number.isInteger(tolerance) || tolerance < 0 || tolerance > 300) {
    fail('authClockToleranceSec', 'an integer from 0 to 300', tolerance);
  }
  if (!Array.isArray(c.allowedOrigins) || !c.allowedOrigins.every(isOrigin)) {
    fail('allowedOrigins', 'a list of origins like "https://app.example.com" (scheme://host[:port])', c.allowedOrigins);
  }
  const curve = [c.curveServerKey, c.curvePublicKey, c.curveSecretKey];
  if (curve.some((k) => k !== '')) {
    if (!isCurveKey(c.curveServerKey)) fail('curveServerKey', "the MPC's 40-character Z85 public key", c.curveServerKey);
    if (!isCurveKey(c.curvePublicKey)) fail('curvePublicKey', 'a 40-character Z85 public key', c.curvePublicKey);
    if (!isCurveKey(c.curveSecretKey)) fail('curveSecretKey', 'a 40-character Z85 secret key', '<redacted>');
  }
}

/** The gateway's CURVE client keys for the MPC link, or null when CURVE is off. */
export function curveKeysOf(c: GatewayConfig): CurveClientKeys | null {
  if (c.curveServerKey === '') return null;
  return { serverKey: c.curveServerKey, publicKey: c.curvePublicKey, secretKey: c.curveSecretKey };
}
