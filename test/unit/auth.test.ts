/** Unit tests for auth.ts (token verification, grants, token extraction) and the security options. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import type http from 'node:http';
import { SignJWT, UnsecuredJWT, importPKCS8 } from 'jose';
import { curveKeyPair } from 'zeromq';
import { isGranted, selectProtocol, tokenOf, TokenVerifier, type Grants } from '../../src/gateway/worker/auth.js';
import { validateGatewayConfig } from '../../src/gateway/shared/config.js';

const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
const key = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);

function hs256(claims: Record<string, unknown>, alg = 'HS256', secret = key): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(secret);
}

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ecPublicPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const ecPrivatePem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPrivatePem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('TokenVerifier (HS256)', async () => {
  const verifier = await TokenVerifier.create({ secret: SECRET, subscribeSub: true, clockToleranceSec: 0 });

  test('a valid token yields its grants, sub included and auto-subscribed', async () => {
    const exp = now() + 60;
    const result = await verifier.verify(await hs256({ sub: 'user:42', topics: ['news', 'ehr:api'], exp }));
    assert.ok(result.ok);
    assert.deepEqual(result.grants, { sub: 'user:42', prefixes: ['news', 'ehr:api', 'user:42'], autoSubscribe: 'user:42', expiresAt: exp * 1000 });
  });

  test('an absent topics claim grants nothing but sub', async () => {
    const result = await verifier.verify(await hs256({ sub: 'user:1', exp: now() + 60 }));
    assert.ok(result.ok);
    assert.deepEqual(result.grants.prefixes, ['user:1']);
  });

  test('refuses alg none, a bad signature, another HMAC size, expired, not yet valid', async () => {
    const unsecured = new UnsecuredJWT({ sub: 'u', exp: now() + 60 }).encode();
    assert.deepEqual(await verifier.verify(unsecured), { ok: false, reason: 'invalid' });
    const other = new TextEncoder().encode('another-secret-0123456789-abcdefghij');
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u', exp: now() + 60 }, 'HS256', other)), { ok: false, reason: 'invalid' });
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u', exp: now() + 60 }, 'HS384')), { ok: false, reason: 'invalid' });
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u', exp: now() - 10 })), { ok: false, reason: 'expired' });
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u', exp: now() + 60, nbf: now() + 30 })), { ok: false, reason: 'not-yet-valid' });
    assert.deepEqual(await verifier.verify('not.a.jwt'), { ok: false, reason: 'invalid' });
    assert.deepEqual(await verifier.verify(''), { ok: false, reason: 'missing' });
    assert.deepEqual(await verifier.verify('x'.repeat(9000)), { ok: false, reason: 'too-long' });
  });

  test('refuses tokens without sub or exp, and malformed topics', async () => {
    assert.deepEqual(await verifier.verify(await hs256({ exp: now() + 60 })), { ok: false, reason: 'bad-claims' });
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u' })), { ok: false, reason: 'bad-claims' });
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u', exp: now() + 60, topics: 'news' })), { ok: false, reason: 'bad-claims' });
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'u', exp: now() + 60, topics: ['ok', 'bad::topic'] })), { ok: false, reason: 'bad-claims' });
    // With authSubscribeSub the identity must be a valid topic.
    assert.deepEqual(await verifier.verify(await hs256({ sub: 'a::b', exp: now() + 60 })), { ok: false, reason: 'bad-claims' });
  });

  test('with authSubscribeSub, a sub deeper than maxTopicDepth is refused: it could not be subscribed to', async () => {
    const shallow = await TokenVerifier.create({ secret: SECRET, subscribeSub: true, maxTopicDepth: 3 });
    assert.equal((await shallow.verify(await hs256({ sub: 'a:b:c', exp: now() + 60 }))).ok, true);
    assert.deepEqual(await shallow.verify(await hs256({ sub: 'a:b:c:d', exp: now() + 60 })), { ok: false, reason: 'bad-claims' });
  });

  test('clock tolerance extends exp and the expiry deadline alike', async () => {
    const lenient = await TokenVerifier.create({ secret: SECRET, clockToleranceSec: 30 });
    const exp = now() - 5;
    const result = await lenient.verify(await hs256({ sub: 'u', exp }));
    assert.ok(result.ok);
    assert.equal(result.grants.expiresAt, (exp + 30) * 1000);
    assert.deepEqual(result.grants.prefixes, []);
    assert.equal(result.grants.autoSubscribe, null);
  });
});

describe('TokenVerifier (public key)', async () => {
  const verifier = await TokenVerifier.create({ publicKey: ecPublicPem });

  test('pins the algorithm to the key: ES256 verifies', async () => {
    assert.equal(verifier.algorithm, 'ES256');
    const token = await new SignJWT({ sub: 'u', topics: ['a'] }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('1m')
      .sign(await importPKCS8(ecPrivatePem, 'ES256'));
    const result = await verifier.verify(token);
    assert.ok(result.ok);
    assert.deepEqual(result.grants.prefixes, ['a']);
  });

  test('refuses HS256 signed with the public key as secret (algorithm confusion) and RS256', async () => {
    const confused = await hs256({ sub: 'u', exp: now() + 60 }, 'HS256', new TextEncoder().encode(ecPublicPem));
    assert.deepEqual(await verifier.verify(confused), { ok: false, reason: 'invalid' });
    const rs = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'RS256' }).setExpirationTime('1m')
      .sign(await importPKCS8(rsaPrivatePem, 'RS256'));
    assert.deepEqual(await verifier.verify(rs), { ok: false, reason: 'invalid' });
  });

  test('an HS256 verifier refuses an ES256 token', async () => {
    const hsVerifier = await TokenVerifier.create({ secret: SECRET });
    const token = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('1m')
      .sign(await importPKCS8(ecPrivatePem, 'ES256'));
    assert.deepEqual(await hsVerifier.verify(token), { ok: false, reason: 'invalid' });
  });
});

describe('isGranted', () => {
  const grants: Grants = { sub: 'u', prefixes: ['ehr', 'news:sport'], autoSubscribe: null, expiresAt: null };
  test('S == P or S starts with P + ":"', () => {
    assert.equal(isGranted(grants, 'ehr'), true);
    assert.equal(isGranted(grants, 'ehr:api:1'), true);
    assert.equal(isGranted(grants, 'news:sport'), true);
    assert.equal(isGranted(grants, 'news:sport:live'), true);
  });
  test('not a sibling with the same prefix, not a parent, not elsewhere', () => {
    assert.equal(isGranted(grants, 'ehrx'), false);
    assert.equal(isGranted(grants, 'news'), false);
    assert.equal(isGranted(grants, 'news:sports'), false);
    assert.equal(isGranted(grants, 'other'), false);
    assert.equal(isGranted({ ...grants, prefixes: [] }, 'ehr'), false);
  });
});

describe('tokenOf and selectProtocol', () => {
  const req = (headers: Record<string, string>, url = '/ws') => ({ headers, url }) as unknown as http.IncomingMessage;
  test('reads Authorization: Bearer, then a bearer. subprotocol, then ?token=', () => {
    assert.equal(tokenOf(req({ authorization: 'Bearer abc.def.ghi' })), 'abc.def.ghi');
    assert.equal(tokenOf(req({ authorization: 'bearer  abc' })), 'abc');
    assert.equal(tokenOf(req({ 'sec-websocket-protocol': 'tormq, bearer.abc.def.ghi' })), 'abc.def.ghi');
    assert.equal(tokenOf(req({}, '/ws?x=1&token=abc.def')), 'abc.def');
    assert.equal(tokenOf(req({ authorization: 'Bearer h' }, '/ws?token=q')), 'h');
    assert.equal(tokenOf(req({ 'sec-websocket-protocol': 'bearer.p' }, '/ws?token=q')), 'p');
  });
  test('no token, or a non-Bearer Authorization, is empty', () => {
    assert.equal(tokenOf(req({})), '');
    assert.equal(tokenOf(req({}, '/ws?other=1')), '');
    assert.equal(tokenOf(req({ authorization: 'Basic dXNlcjpwYXNz' }, '/ws?token=q')), '');
    assert.equal(tokenOf(req({ 'sec-websocket-protocol': 'tormq' })), '');
  });
  test('selects tormq, else the first other entry, never a bearer entry', () => {
    assert.equal(selectProtocol(new Set(['tormq', 'bearer.abc'])), 'tormq');
    assert.equal(selectProtocol(new Set(['bearer.abc'])), false);
    assert.equal(selectProtocol(new Set(['bearer.abc', 'chat'])), 'chat');
    assert.equal(selectProtocol(new Set(['chat', 'tormq'])), 'tormq');
  });
});

describe('security options', () => {
  const rejects = (options: Parameters<typeof validateGatewayConfig>[0], pattern: RegExp) =>
    assert.throws(() => validateGatewayConfig(options), (e: Error) => e instanceof TypeError || e instanceof RangeError ? pattern.test(e.message) : false);

  test('accepts a secret, a public key, origins, CURVE keys', () => {
    const keys = curveKeyPair();
    const c = validateGatewayConfig({ authSecret: SECRET, authSubscribeSub: true, allowedOrigins: ['https://app.example.com', 'http://localhost:3000'] });
    assert.equal(c.authSubscribeSub, true);
    assert.ok(Object.isFrozen(c.allowedOrigins));
    assert.equal(validateGatewayConfig({ authPublicKey: ecPublicPem }).authPublicKey, ecPublicPem);
    const server = curveKeyPair();
    assert.equal(validateGatewayConfig({ curveServerKey: server.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey }).curveServerKey, server.publicKey);
  });

  test('each invalid value gets its options.x message, secrets never echoed', () => {
    rejects({ authSecret: 'short' }, /^options\.authSecret must be .* at least 32 characters, got "<redacted>"$/);
    rejects({ authSecret: SECRET, authPublicKey: ecPublicPem }, /^options\.authPublicKey must be '' when options\.authSecret is set/);
    rejects({ authPublicKey: 'not a pem' }, /^options\.authPublicKey must be a PEM public key/);
    rejects({ authPublicKey: generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString() }, /RSA key of at least 2048 bits/);
    rejects({ authSubscribeSub: true }, /^options\.authSubscribeSub must be false unless/);
    rejects({ authClockToleranceSec: -1 }, /^options\.authClockToleranceSec must be an integer from 0 to 300/);
    rejects({ allowedOrigins: ['https://app.example.com/'] }, /^options\.allowedOrigins must be a list of origins/);
    rejects({ allowedOrigins: ['*'] }, /^options\.allowedOrigins must be/);
    rejects({ curveServerKey: 'short' }, /^options\.curveServerKey must be/);
    const keys = curveKeyPair();
    rejects({ curveServerKey: keys.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: 'x' }, /^options\.curveSecretKey must be .*"<redacted>"$/);
  });
});
