/** The ingresses' bearer token (`--http-token`): `Authorization: Bearer <token>`, HTTP header or gRPC metadata. */
import { createHash, timingSafeEqual } from 'node:crypto';

/** Constant-time bearer token check (hashing first makes the comparison independent of length too). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? header.slice(7) : '';
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}
