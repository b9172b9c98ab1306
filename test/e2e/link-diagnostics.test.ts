/**
 * Logs that tell the truth: a gateway whose MPC link is not up `--mpc-warn-ms` after start, or after
 * it dropped, warns with the endpoint and the likely cause (refused, unresolvable, CURVE mismatch on
 * either side, wrong server key, key not on the allowlist); a CURVE MPC logs plain peers it refused;
 * refused client frames are logged at debug with the connection id and the code; the ready lines say
 * what is listened on and how to open a loopback-only port.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Publisher, generateCurveKeyPair } from '../../src/index.js';
import { startCli, startGatewayProcess, startMpcProcess, type Started } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';

/** A port nothing listens on: bound by the OS, then released. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const started: Started[] = [];
function gatewayCli(mpc: string, extra: string[] = []): Started {
  const gateway = startCli('gateway', ['-r', mpc, '-p', '0', '--admin-port', 'off', '--workers', '1', '--mpc-warn-ms', '300', ...extra]);
  started.push(gateway);
  return gateway;
}
/**
 * Both ends detect a plain/CURVE mismatch and whichever closes first leaves the other a bare EPIPE,
 * so the MPC reports a plain peer as one or the other (see src/zmq/handshake-failures.ts).
 */
const plainPeerLog = (l: Record<string, unknown>) =>
  (l.msg === `plain (non-CURVE) ${l.role} refused` && l.code === 'ERR_ZMTP_MECHANISM_MISMATCH') ||
  (l.msg === `${l.role} hung up during the CURVE handshake` && l.code === 'EPIPE');
const notUp = (gateway: Started, cause: string) => gateway.waitForLog((l) => l.msg === 'MPC link not up' && l.cause === cause);

describe('gateway: why an MPC link is not up', () => {
  after(async () => {
    for (const p of started.splice(0)) await p.stop();
  });

  test('nothing listens on the port: refused, naming the endpoint; the ready line says it is loopback only', async () => {
    const port = await deadPort();
    const gateway = gatewayCli(`127.0.0.1:${port}`);
    const ready = await gateway.waitForLog((l) => l.msg === 'gateway ready');
    assert.match(String(ready.hint), /only this machine can connect \(127\.0\.0\.1\); use --host 0\.0\.0\.0/);
    const warning = await notUp(gateway, 'refused');
    assert.equal(warning.level, 40);
    assert.equal(warning.mpc, `tcp://127.0.0.1:${port}`);
    assert.equal(warning.since, 'start');
    assert.match(String(warning.reason), new RegExp(`connection refused: nothing listens on 127\\.0\\.0\\.1:${port}`));
  });

  test('a host name that does not resolve', async () => {
    // A label over 63 characters fails inside the resolver library, without a DNS query leaving the machine.
    const host = `${'a'.repeat(70)}.invalid`;
    const gateway = gatewayCli(`${host}:5560`);
    const warning = await notUp(gateway, 'unresolvable');
    assert.equal(warning.mpc, `tcp://${host}:5560`);
    assert.match(String(warning.reason), new RegExp(`cannot resolve ${host} \\(ENOTFOUND\\)`));
  });

  test('the link drops and stays down: warned with the cause after the drop', async () => {
    const mpc = await startMpcProcess();
    const gateway = await startGatewayProcess(mpc.gatewayPort, ['--mpc-warn-ms', '300']);
    started.push(gateway);
    assert.equal(gateway.logs.some((l) => l.msg === 'MPC link not up'), false, 'no warning while the link is up');
    await mpc.stop();
    await gateway.waitForLog((l) => l.msg === 'MPC link down; reconnecting');
    const warning = await gateway.waitForLog((l) => l.msg === 'MPC link not up' && l.since === 'disconnect');
    assert.equal(warning.cause, 'refused');
    assert.equal(warning.mpc, `tcp://127.0.0.1:${mpc.gatewayPort}`);
  });
});

describe('CURVE mismatches, logged on both sides', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tormq-links-'));
  const mpcKeys = generateCurveKeyPair();
  const gatewayKeys = generateCurveKeyPair();
  const otherKeys = generateCurveKeyPair();
  let curveMpc: Awaited<ReturnType<typeof startMpcProcess>>;
  let plainMpc: Awaited<ReturnType<typeof startMpcProcess>>;
  const publishers: Publisher[] = [];

  before(async () => {
    writeFileSync(join(dir, 'mpc.json'), JSON.stringify(mpcKeys));
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify(gatewayKeys));
    writeFileSync(join(dir, 'gateways.txt'), `${otherKeys.publicKey}\n`);
    curveMpc = await startMpcProcess(['-s', '0', '-p', '0', '--curve-key-file', join(dir, 'mpc.json')]);
    plainMpc = await startMpcProcess();
  });

  after(async () => {
    await Promise.all(publishers.map((p) => p.close()));
    for (const p of started.splice(0)) await p.stop();
    await curveMpc?.stop();
    await plainMpc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a plain gateway against a CURVE MPC: the gateway says CURVE is required, the MPC logs the plain peer', async () => {
    const gateway = gatewayCli(`127.0.0.1:${curveMpc.gatewayPort}`);
    const warning = await notUp(gateway, 'curve-required');
    assert.match(String(warning.reason), /the MPC requires CURVE .* --curve-server-key/);
    const refused = await curveMpc.waitForLog((l) => l.role === 'gateway' && plainPeerLog(l));
    assert.equal(refused.level, 40);
    await gateway.stop();
  });

  test('a plain publisher against a CURVE MPC is logged by the MPC', async () => {
    const publisher = new Publisher('127.0.0.1', curveMpc.publisherPort);
    publishers.push(publisher);
    const refused = await curveMpc.waitForLog((l) => l.role === 'publisher' && plainPeerLog(l));
    assert.equal(refused.level, 40);
    assert.match(String(refused.hint), /without CURVE/);
  });

  test('a CURVE gateway against a plain MPC', async () => {
    const gateway = gatewayCli(`127.0.0.1:${plainMpc.gatewayPort}`, ['--curve-server-key', mpcKeys.publicKey, '--curve-key-file', join(dir, 'gateway.json')]);
    const warning = await notUp(gateway, 'curve-not-offered');
    assert.match(String(warning.reason), /the MPC does not: start tormq-mpc with --curve-key-file/);
    await gateway.stop();
  });

  test('a CURVE gateway with the wrong server key: both sides say so', async () => {
    const gateway = gatewayCli(`127.0.0.1:${curveMpc.gatewayPort}`, ['--curve-server-key', otherKeys.publicKey, '--curve-key-file', join(dir, 'gateway.json')]);
    const warning = await notUp(gateway, 'curve-server-key');
    assert.match(String(warning.reason), /--curve-server-key is probably not this MPC's public key/);
    const failed = await curveMpc.waitForLog((l) => l.msg === 'CURVE handshake failed' && l.role === 'gateway' && l.code === 'ERR_ZMTP_CRYPTOGRAPHIC');
    assert.match(String(failed.hint), /server key is not this MPC's public key/);
    await gateway.stop();
  });

  test("a gateway key not on the MPC's allowlist", async () => {
    const strict = await startMpcProcess(['-s', '0', '-p', '0', '--curve-key-file', join(dir, 'mpc.json'), '--curve-allow-gateways', join(dir, 'gateways.txt')]);
    started.push(strict);
    const gateway = gatewayCli(`127.0.0.1:${strict.gatewayPort}`, ['--curve-server-key', mpcKeys.publicKey, '--curve-key-file', join(dir, 'gateway.json')]);
    const warning = await notUp(gateway, 'curve-key-refused');
    assert.match(String(warning.reason), /add its public key to the MPC's --curve-allow-gateways file/);
  });
});

describe('refused client frames are logged at debug with the connection id and the code', () => {
  let mpc: Awaited<ReturnType<typeof startMpcProcess>>;
  let gateway: Awaited<ReturnType<typeof startGatewayProcess>>;
  let client: TestClient;

  before(async () => {
    mpc = await startMpcProcess();
    gateway = await startGatewayProcess(mpc.gatewayPort, ['--log-level', 'debug', '--workers', '1']);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('a frame without an id is not answered, but is logged', async () => {
    const ready = await mpc.waitForLog((l) => l.msg === 'mpc ready');
    assert.deepEqual(ready.listening, [`tcp://127.0.0.1:${mpc.publisherPort}`, `tcp://127.0.0.1:${mpc.gatewayPort}`]);
    assert.match(String(ready.hint), /use --host 0\.0\.0\.0/);
    client = await TestClient.connect(gateway.url);
    client.send({ event: 'subscribe', topic: 'typo::topic' });
    client.send('{not json');
    const invalid = await gateway.waitForLog((l) => l.msg === 'client frame refused' && l.code === 'ERR_INVALID_TOPIC');
    const badJson = await gateway.waitForLog((l) => l.msg === 'client frame refused' && l.code === 'ERR_BAD_JSON');
    assert.equal(invalid.level, 20);
    assert.equal(typeof invalid.conn, 'number');
    assert.equal(invalid.conn, badJson.conn, 'both frames came from the same connection');
    assert.equal(invalid.worker, 0);
    assert.equal(await client.request({ event: 'ping' }).then((r) => r.event), 'pong', 'nothing was answered before');
    assert.equal(client.messages.length, 1);
  });
});
