/**
 * TLS served by tormq itself: wss:// on the gateway (--tls-cert/--tls-key) and https:// on the HTTP
 * ingress (--http-tls-cert/--http-tls-key), with self-signed certificates made by openssl in the
 * test, real TLS clients that trust only that certificate, and SIGHUP reloads that switch new
 * handshakes to a renewed certificate while open connections carry on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Publisher } from '../../src/index.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { httpsRequest, install, makeCertificate, type TestCertificate } from '../helpers/tls.js';
import { TestClient } from '../helpers/ws-client.js';

const peerFingerprint = (client: TestClient) => ((client.ws as unknown as { _socket: TLSSocket })._socket.getPeerX509Certificate()?.fingerprint256 ?? '');

describe('TLS on the gateway: wss://', () => {
  let dir: string;
  let first: TestCertificate;
  let renewed: TestCertificate;
  let certPath: string;
  let keyPath: string;
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let publisher: Publisher;
  let wss: string;
  const clients: TestClient[] = [];
  const connect = async (ca: string) => {
    const client = await TestClient.connect(wss, { ca });
    clients.push(client);
    return client;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tormq-tls-'));
    first = makeCertificate(dir, 'first');
    renewed = makeCertificate(dir, 'renewed');
    certPath = join(dir, 'server.cert.pem');
    keyPath = join(dir, 'server.key.pem');
    install(first, certPath, keyPath);
    mpc = await startMpcProcess();
    gateway = await startGatewayProcess(mpc.gatewayPort, ['--tls-cert', certPath, '--tls-key', keyPath]);
    wss = `wss://127.0.0.1:${gateway.port}/ws`;
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the ready line says wss://; a client trusting the certificate subscribes and receives', async () => {
    const ready = await gateway.waitForLog((l) => l.msg === 'gateway ready');
    assert.deepEqual(ready.listening, [wss]);
    const client = await connect(first.cert);
    assert.equal(peerFingerprint(client), first.fingerprint256);
    await client.subscribe('tls:a');
    await publisher.ready({ topic: 'tls:a', timeoutMs: 10_000 });
    await publisher.send('tls:a', 'over tls ✓');
    assert.equal(await client.waitFor((m) => m.includes('over tls')), '{"topic": "tls:a", "data": "over tls ✓"}');
    // Really TLS: a client that does not trust the self-signed certificate, and a plain ws:// client, fail.
    await assert.rejects(TestClient.connect(wss), /self[- ]signed certificate/);
    await assert.rejects(TestClient.connect(`ws://127.0.0.1:${gateway.port}/ws`));
    const page = await httpsRequest(`https://127.0.0.1:${gateway.port}/`, first.cert);
    assert.equal(page.status, 200);
    assert.match(page.body, /tormq demo/);
  });

  test('SIGHUP: every worker serves the renewed certificate to new connections; open ones carry on', async () => {
    const old = await connect(first.cert);
    await old.subscribe('tls:b');
    install(renewed, certPath, keyPath);
    gateway.child.kill('SIGHUP');
    const reloaded = await gateway.waitForLog((l) => l.msg === 'TLS certificate reloaded' && l.worker === undefined);
    assert.equal(reloaded.fingerprint256, renewed.fingerprint256);
    assert.equal(reloaded.workers, 2);
    for (const worker of [0, 1]) await gateway.waitForLog((l) => l.msg === 'TLS certificate reloaded' && l.worker === worker);

    // New handshakes (whichever worker the kernel picks) present the renewed certificate only.
    for (let i = 0; i < 4; i++) {
      const fresh = await connect(renewed.cert);
      assert.equal(peerFingerprint(fresh), renewed.fingerprint256);
    }
    await assert.rejects(TestClient.connect(wss, { ca: first.cert }));
    const fresh = await connect(renewed.cert);
    await fresh.subscribe('tls:b');
    await publisher.ready({ topic: 'tls:b', timeoutMs: 10_000 });
    await publisher.send('tls:b', 'after reload');
    await old.waitFor((m) => m.includes('after reload'));
    await fresh.waitFor((m) => m.includes('after reload'));
    assert.equal(old.closeCode, null, 'the connection made before the reload is still open');
    assert.equal(peerFingerprint(old), first.fingerprint256);
  });

  test('a reload from broken files is logged and keeps the current certificate', async () => {
    writeFileSync(certPath, 'not a certificate\n');
    gateway.child.kill('SIGHUP');
    const failed = await gateway.waitForLog((l) => l.msg === 'TLS reload failed; still serving the previous certificate');
    assert.match(String(failed.err), /server\.cert\.pem and .*server\.key\.pem are not a PEM certificate and its private key/);
    const client = await connect(renewed.cert);
    assert.equal(peerFingerprint(client), renewed.fingerprint256);
  });
});

describe('TLS on the HTTP ingress: https://', () => {
  let dir: string;
  let first: TestCertificate;
  let renewed: TestCertificate;
  let certPath: string;
  let keyPath: string;
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let client: TestClient | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tormq-tls-'));
    first = makeCertificate(dir, 'first');
    renewed = makeCertificate(dir, 'renewed');
    certPath = join(dir, 'http.cert.pem');
    keyPath = join(dir, 'http.key.pem');
    install(first, certPath, keyPath);
    mpc = await startMpcProcess(undefined, ['--http', '0', '--http-tls-cert', certPath, '--http-tls-key', keyPath, '--http-token', 's3cret']);
    gateway = await startGatewayProcess(mpc.gatewayPort);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await mpc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('POST /publish over https reaches a subscriber; SIGHUP switches new connections to the renewed certificate', async () => {
    const ready = await mpc.waitForLog((l) => l.msg === 'mpc ready');
    const base = `https://127.0.0.1:${mpc.httpPort}`;
    assert.ok((ready.listening as string[]).includes(base), JSON.stringify(ready.listening));
    client = await TestClient.connect(gateway.url);
    await client.subscribe('web:tls');
    const auth = { authorization: 'Bearer s3cret', 'content-type': 'application/json' };
    const wait = await httpsRequest(`${base}/ready?topic=web:tls&timeout_ms=10000`, first.cert, { headers: auth });
    assert.equal(wait.status, 200, wait.body);
    assert.equal(wait.fingerprint256, first.fingerprint256);
    const published = await httpsRequest(`${base}/publish`, first.cert, { method: 'POST', headers: auth, body: '{"topic": "web:tls", "data": "via https"}' });
    assert.equal(published.status, 202, published.body);
    await client.waitFor((m) => m === '{"topic": "web:tls", "data": "via https"}');

    install(renewed, certPath, keyPath);
    mpc.child.kill('SIGHUP');
    const reloaded = await mpc.waitForLog((l) => l.msg === 'HTTP TLS certificate reloaded');
    assert.equal(reloaded.fingerprint256, renewed.fingerprint256);
    const after = await httpsRequest(`${base}/healthz`, renewed.cert);
    assert.equal(after.status, 200);
    assert.equal(after.fingerprint256, renewed.fingerprint256);
    await assert.rejects(httpsRequest(`${base}/healthz`, first.cert));
  });
});
