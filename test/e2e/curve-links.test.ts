/**
 * CURVE on the ZeroMQ links end to end: tormq-mpc with a key pair and allowlists, tormq-gateway and
 * Publishers with their own keys. A publisher with a key not on the list is refused at the
 * handshake (ZAP), so nothing it sends arrives, while a correctly keyed one's messages do.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, Publisher, encodeBody, generateCurveKeyPair, type CurveKeyPair, type PublisherOptions } from '../../src/index.js';
import { postJson, startCli, startGatewayProcess, startMpcProcess, waitHttpReady, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';

const KEYS_CLI = fileURLToPath(new URL('../../src/cli/keys.js', import.meta.url));

describe('security: CURVE between publishers, MPC and gateway', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tormq-curve-'));
  let mpcKeys: CurveKeyPair;
  const gatewayKeys = generateCurveKeyPair();
  const goodKeys = generateCurveKeyPair();
  const wrongKeys = generateCurveKeyPair();
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  const publishers: Publisher[] = [];
  let client: TestClient;

  const publisher = (curve?: PublisherOptions['curve']) => {
    const p = new Publisher('127.0.0.1', mpc.publisherPort, curve === undefined ? {} : { curve });
    publishers.push(p);
    return p;
  };

  before(async () => {
    // The MPC's pair comes from the key-generation CLI, as an operator would make it.
    const mpcKeyFile = join(dir, 'mpc.json');
    const printed = execFileSync(process.execPath, [KEYS_CLI, '--out', mpcKeyFile], { encoding: 'utf8' }).trim();
    mpcKeys = JSON.parse(readFileSync(mpcKeyFile, 'utf8')) as CurveKeyPair;
    assert.equal(printed, mpcKeys.publicKey);
    assert.equal(statSync(mpcKeyFile).mode & 0o777, 0o600);
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify(gatewayKeys));
    writeFileSync(join(dir, 'publishers.txt'), `# the billing service\n${goodKeys.publicKey}\n`);
    writeFileSync(join(dir, 'gateways.txt'), `${gatewayKeys.publicKey}  # gateway 1\n`);
    mpc = await startMpcProcess(['-s', '0', '-p', '0', '--curve-key-file', mpcKeyFile,
      '--curve-allow-publishers', join(dir, 'publishers.txt'), '--curve-allow-gateways', join(dir, 'gateways.txt')]);
    // startGatewayProcess waits for "MPC link up", which with CURVE means the handshake succeeded.
    gateway = await startGatewayProcess(mpc.gatewayPort, ['--curve-server-key', mpcKeys.publicKey, '--curve-key-file', join(dir, 'gateway.json')]);
    client = await TestClient.connect(gateway.url);
    await client.subscribe('billing');
  });

  after(async () => {
    await client?.close();
    await Promise.all(publishers.map((p) => p.close()));
    await gateway?.stop();
    await mpc?.stop();
  });

  test('a publisher with an allowed key delivers; one with a wrong key is refused and delivers nothing', async () => {
    const wrong = publisher({ serverKey: mpcKeys.publicKey, ...wrongKeys });
    const refusal = await mpc.waitForLog((l) => l.msg === 'CURVE handshake refused' && l.publicKey === wrongKeys.publicKey);
    assert.equal(refusal.role, 'publisher');
    assert.equal(refusal.level, 40); // warn
    const plain = publisher(); // no CURVE at all: the mechanisms do not match, no link
    for (let i = 0; i < 3; i++) {
      await wrong.send('billing', `wrong key ${i}`);
      await plain.send('billing', `plain ${i}`);
    }

    const good = publisher({ serverKey: mpcKeys.publicKey, ...goodKeys });
    await good.ready({ topic: 'billing', timeoutMs: 10_000 });
    await good.send('billing', 'invoice 1');
    await good.send('billing', 'end');
    await client.waitFor((m) => m.includes('"end"'));
    assert.deepEqual(client.bodies(), [encodeBody('billing', 'invoice 1'), encodeBody('billing', 'end')]);

    // The gateway's subscription reached the good publisher but never the refused ones.
    assert.equal(good.hasSubscribers('billing'), true);
    assert.equal(wrong.hasSubscribers('billing'), false);
    assert.equal(plain.hasSubscribers('billing'), false);
    const stats = await gateway.stats();
    assert.equal(stats.messagesIn, 2);
  });

  test('a publisher that has the allowed key pair but the wrong server key gets no link', async () => {
    const impostorServer = generateCurveKeyPair();
    const misdirected = publisher({ serverKey: impostorServer.publicKey, ...goodKeys });
    await assert.rejects(misdirected.ready({ topic: 'billing', timeoutMs: 3000 }), (e: Error & { code?: string }) => e.code === ErrorCodes.READY_TIMEOUT);
  });

  test('a gateway whose key is not on the list gets no MPC link', async () => {
    const strangerKeys = generateCurveKeyPair();
    writeFileSync(join(dir, 'stranger.json'), JSON.stringify(strangerKeys));
    const stranger = startCli('gateway', ['-r', `127.0.0.1:${mpc.gatewayPort}`, '-p', '0', '--admin-port', '0', '--workers', '1',
      '--curve-server-key', mpcKeys.publicKey, '--curve-key-file', join(dir, 'stranger.json')]);
    try {
      const refused = await mpc.waitForLog((l) => l.msg === 'CURVE handshake refused' && l.publicKey === strangerKeys.publicKey);
      assert.equal(refused.role, 'gateway');
      await stranger.waitForLog((l) => l.msg === 'MPC link handshake failed');
      assert.equal(stranger.logs.some((l) => l.msg === 'MPC link up'), false);
    } finally {
      await stranger.stop();
    }
  });

  test('bad key material is a usage error (exit 2)', async () => {
    writeFileSync(join(dir, 'bad.txt'), 'not-a-key\n');
    const mpcBad = startCli('mpc', ['-s', '0', '-p', '0', '--curve-key-file', join(dir, 'mpc.json'), '--curve-allow-publishers', join(dir, 'bad.txt')]);
    assert.equal(await mpcBad.exited, 2);
    assert.match(mpcBad.stderr.join('\n'), /bad\.txt:1: not a 40-character Z85 public key/);
    const gatewayBad = startCli('gateway', ['-p', '0', '--admin-port', '0', '--workers', '1', '--curve-server-key', 'nope', '--curve-key-file', join(dir, 'gateway.json')]);
    assert.equal(await gatewayBad.exited, 2);
    assert.match(gatewayBad.stderr.join('\n'), /--curve-server-key must be/);
    assert.throws(() => new Publisher('127.0.0.1', 5559, { curve: { serverKey: 'x', publicKey: 'y', secretKey: 'z' } }), /options\.curve must be/);
  });
});

describe('HTTP publishing into a CURVE MPC', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tormq-curve-http-'));
  const mpcKeys = generateCurveKeyPair();
  const gatewayKeys = generateCurveKeyPair();
  let mpc: MpcProcess | undefined;
  let gateway: GatewayProcess | undefined;
  let client: TestClient | undefined;

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('the ingress publishes with the MPC\'s own key pair, admitted by a publisher allowlist that does not name it', async () => {
    writeFileSync(join(dir, 'mpc.json'), JSON.stringify(mpcKeys));
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify(gatewayKeys));
    writeFileSync(join(dir, 'publishers.txt'), `${generateCurveKeyPair().publicKey}\n`);
    mpc = await startMpcProcess(['-s', '0', '-p', '0', '--curve-key-file', join(dir, 'mpc.json'), '--curve-allow-publishers', join(dir, 'publishers.txt'), '--http', '0']);
    gateway = await startGatewayProcess(mpc.gatewayPort, ['--curve-server-key', mpcKeys.publicKey, '--curve-key-file', join(dir, 'gateway.json')]);
    client = await TestClient.connect(gateway.url);
    await client.subscribe('web');
    // Before, the ingress's publisher connected without CURVE and was refused: /ready never turned 200.
    await waitHttpReady(mpc, 'web');
    assert.deepEqual(await postJson(mpc, '/publish', { topic: 'web', data: 'through CURVE' }), { status: 202, body: { accepted: 1 } });
    assert.equal(await client.waitFor((m) => m.includes('through CURVE')), encodeBody('web', 'through CURVE'));
    assert.equal(mpc.logs.some((l) => l.role === 'publisher' && /refused|hung up/.test(String(l.msg))), false, 'the MPC refused no publisher');
  });
});
