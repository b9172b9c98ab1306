/**
 * gopusher, unchanged, with real processes: one tormq-mpc (`--http 0 --grpc 0`) and two gateways.
 * An independent gRPC client (Python, stubs compiled from proto/rpc.proto at test time) pushes to cards
 * joined on both gateways and reads IsOnline, Group and System for the whole cluster; the grpc-gateway
 * routes answer the same over HTTP; the gopusher README's curl and browser JavaScript run unchanged;
 * joined connections get gopusher's frames byte for byte while TORMQ connections keep theirs; a
 * gateway SIGKILLed drops out of presence; every bad request is refused the same way on both paths
 * and pushes nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { encodeBody } from '../../src/index.js';
import { PythonGrpcClient, type GrpcResult } from '../helpers/grpc-python-client.js';
import { rssBytes, until } from '../helpers/probes.js';
import { postJson, startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';

/** gopusher's answer to a join or a ping: gorilla's WriteJSON(ServerMsg{1, "ok"}), newline included. */
const OK = '{"type":1,"data":"ok"}\n';
/** What a joined connection receives for a push of `content` (a string). */
const frameOf = (content: unknown) => `{"type":1,"data":${JSON.stringify(content).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)}}\n`;

/** Polls `read` until it returns `expected` (presence settles within a few seconds); bounded. */
async function eventually<T>(read: () => Promise<T>, expected: T, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await read();
    try {
      assert.deepEqual(last, expected);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  assert.deepEqual(last, expected, `${what}: not within ${timeoutMs} ms`);
}

describe('gopusher, unchanged', () => {
  let mpc: MpcProcess;
  let gw1: GatewayProcess;
  let gw2: GatewayProcess;
  let grpc: PythonGrpcClient;
  const clients: TestClient[] = [];

  const connect = async (gateway: GatewayProcess) => {
    const client = await TestClient.connect(gateway.url);
    clients.push(client);
    return client;
  };
  /** Connects and joins gopusher's way (no id), waiting for gopusher's answer. */
  const joinOn = async (gateway: GatewayProcess, data: Record<string, unknown>) => {
    const client = await connect(gateway);
    client.send({ event: 'join', data });
    await client.waitFor((m) => m === OK);
    return client;
  };
  const http = async (path: string) => {
    const res = await mpc.http(path);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const ok = (reply: Record<string, unknown>): GrpcResult => ({ reply });

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--http', '0', '--grpc', '0']);
    gw1 = await startGatewayProcess(mpc.gatewayPort);
    gw2 = await startGatewayProcess(mpc.gatewayPort);
    grpc = await PythonGrpcClient.start(mpc.grpcPort!);
  });

  after(async () => {
    grpc?.close();
    await Promise.all(clients.map((c) => c.close()));
    await gw1?.stop();
    await gw2?.stop();
    await mpc?.stop();
  });

  test('a gRPC client pushes to cards joined on two gateways, with and without appID; frames are gopusher\'s, TORMQ ones unchanged', async () => {
    const aliceAny = await joinOn(gw1, { card_id: 'alice' });
    const aliceChat = await joinOn(gw2, { app_id: 'chat', card_id: 'alice' });
    const aliceMail = await joinOn(gw2, { card_id: 'alice', app_id: 'mail' });
    const bobChat = await joinOn(gw1, { card_id: 'bob', app_id: 'chat' });
    const bobNoApp = await joinOn(gw2, { card_id: 'bob', app_id: '' }); // "" is no app, as in gopusher
    // A TORMQ connection on the card's topic: today's frames, byte for byte.
    const tormq = await connect(gw2);
    await tormq.subscribe('alice');

    const hello = 'héllo <b>wörld</b> & ✓ "quoted"';
    assert.deepEqual(await grpc.call('Push', { from: 'sys', to: ['alice', 'bob', 'alice'], content: hello }), ok({ message: 'ok' }));
    assert.deepEqual(await grpc.call('Push', { to: ['alice', 'bob'], appID: 'chat', content: 'chat only' }), ok({ message: 'ok' }));
    assert.deepEqual(await grpc.call('Push', { from: 'sys', to: ['alice', 'bob'], content: 'end' }), ok({ message: 'ok' }));
    const joined = [aliceAny, aliceChat, aliceMail, bobChat, bobNoApp];
    await Promise.all([...joined.map((c) => c.waitFor((m) => m === frameOf('end'))), tormq.waitFor((m) => m.includes('"end"'))]);

    assert.equal(frameOf(hello), '{"type":1,"data":"héllo \\u003cb\\u003ewörld\\u003c/b\\u003e \\u0026 ✓ \\"quoted\\""}\n');
    assert.deepEqual(aliceAny.messages, [OK, frameOf(hello), frameOf('end')]);
    assert.deepEqual(aliceChat.messages, [OK, frameOf(hello), frameOf('chat only'), frameOf('end')]);
    assert.deepEqual(aliceMail.messages, [OK, frameOf(hello), frameOf('end')]);
    assert.deepEqual(bobChat.messages, [OK, frameOf(hello), frameOf('chat only'), frameOf('end')]);
    assert.deepEqual(bobNoApp.messages, [OK, frameOf(hello), frameOf('end')]);
    assert.deepEqual(tormq.bodies(), [encodeBody('alice', { from: 'sys', content: hello }), encodeBody('alice', { from: 'sys', content: 'end' })]);

    // A ping on a joined connection is answered as gopusher does.
    aliceAny.send({ event: 'ping' });
    await aliceAny.waitFor((m) => m === OK, 3);
  });

  test('IsOnline, Group and System count every gateway, over gRPC and the grpc-gateway routes alike', async () => {
    // From the test before: alice 3 connections (gw1: 1, gw2: 2), bob 2 (one on each).
    const presence = async () => ({
      alice: [await grpc.call('IsOnline', { cardID: 'alice' }), await grpc.call('Group', { cardID: 'alice' })],
      bob: await grpc.call('Group', { cardID: 'bob' }),
      carol: [await grpc.call('IsOnline', { cardID: 'carol' }), await grpc.call('Group', { cardID: 'carol' })],
    });
    await eventually(presence, {
      alice: [ok({ result: 'yes' }), ok({ clientNum: '3' })],
      bob: ok({ clientNum: '2' }),
      carol: [ok({ result: 'no' }), ok({ clientNum: '-1' })],
    }, 'presence over gRPC');
    const connections = (await gw1.stats()).connections + (await gw2.stats()).connections;
    assert.equal(connections, clients.length);
    const system = await grpc.call('System');
    assert.ok('reply' in system);
    assert.deepEqual({ ...system.reply, cpuNum: 'n' }, { cpuNum: 'n', goroutineNum: '4', clientNum: String(connections), groupNum: '2' });

    assert.deepEqual(await http('/isOnline?cardID=alice'), { status: 200, body: { result: 'yes' } });
    assert.deepEqual(await http('/isOnline?cardID=carol'), { status: 200, body: { result: 'no' } });
    assert.deepEqual(await http('/group?cardID=alice'), { status: 200, body: { clientNum: '3' } });
    assert.deepEqual(await http('/group?card_id=bob'), { status: 200, body: { clientNum: '2' } });
    assert.deepEqual(await http('/group?cardID=carol'), { status: 200, body: { clientNum: '-1' } });
    const httpSystem = await http('/system');
    assert.deepEqual({ ...httpSystem.body, cpuNum: 'n' }, { cpuNum: 'n', goroutineNum: '4', clientNum: String(connections), groupNum: '2' });
    assert.match(String(httpSystem.body.cpuNum), /^[1-9]\d*$/);

    // A close on one gateway, a join on the other: both seen cluster-wide.
    const aliceOnGw1 = clients[0]!;
    await aliceOnGw1.close();
    const carol = await joinOn(gw1, { card_id: 'carol' });
    await eventually(async () => [await grpc.call('Group', { cardID: 'alice' }), await grpc.call('IsOnline', { cardID: 'carol' })], [ok({ clientNum: '2' }), ok({ result: 'yes' })], 'after a close and a join');
    await carol.close();
    await eventually(() => grpc.call('Group', { cardID: 'carol' }), ok({ clientNum: '-1' }), 'after carol left');
  });

  test('the gopusher README\'s client JavaScript and curl work unchanged', async (t) => {
    if (spawnSync('curl', ['--version']).status !== 0) {
      t.skip('curl is not installed');
      return;
    }
    // The README's client, verbatim but for the gateway's address (it ran in browsers; here ws plays the browser's WebSocket).
    const readmeClient = `
var ws = new WebSocket("ws://127.0.0.1:8080/ws");
ws.onopen = function()
{
	// Bind card_id and app_id to connecton
    ws.send(JSON.stringify({"event":"join","data":{"app_id":"alibaba","card_id":"mayun"}}));
};

ws.onmessage = function (evt) 
{ 
    var msg = evt.data;
    console.log(msg)
};

ws.onclose = function()
{ 
    console.log("closed.")
};
`.replace('127.0.0.1:8080', `127.0.0.1:${gw1.port}`);
    const dir = await mkdtemp(join(tmpdir(), 'tormq-gopusher-'));
    const script = join(dir, 'client.mjs');
    await writeFile(script, `import { WebSocket } from ${JSON.stringify(import.meta.resolve('ws'))};\nglobalThis.WebSocket = WebSocket;\n${readmeClient}`);
    const browser = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    const printed: string[] = [];
    const waiters = new Set<() => void>();
    createInterface({ input: browser.stdout }).on('line', (line) => {
      if (line !== '') printed.push(line); // console.log adds a newline after gopusher's own
      for (const w of waiters) w();
    });
    const printedCount = (n: number) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the README client printed ${JSON.stringify(printed)}`)), 15_000);
      const check = () => {
        if (printed.length >= n) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        }
      };
      waiters.add(check);
      check();
    });
    try {
      await printedCount(1);
      assert.deepEqual(printed, ['{"type":1,"data":"ok"}']);
      const wuzhc1 = await joinOn(gw2, { card_id: 'wuzhc_1' });
      const wuzhc2 = await joinOn(gw1, { card_id: 'wuzhc_2', app_id: 'x' });
      // The README's curl, verbatim but for the port (the HTTP ingress serves gopusher's grpc-gateway routes).
      const curl = (body: string) => spawnSync('curl', ['-sS', '-X', 'POST', '-k', `http://127.0.0.1:${mpc.httpPort}/push`, '-d', body], { encoding: 'utf8' });
      const pushed = curl('{"from":"xxx","to":["wuzhc_1","wuzhc_2"], "content":"hellwo world"}');
      assert.equal(pushed.stdout, '{"message":"ok"}', pushed.stderr);
      await Promise.all([wuzhc1, wuzhc2].map((c) => c.waitFor((m) => m === '{"type":1,"data":"hellwo world"}\n', 1)));
      assert.equal(curl('{"from":"xxx","to":["mayun"], "appID":"alibaba", "content":"hi jack"}').stdout, '{"message":"ok"}');
      await printedCount(2);
      assert.deepEqual(printed, ['{"type":1,"data":"ok"}', '{"type":1,"data":"hi jack"}']);
    } finally {
      browser.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('every bad request: gRPC INVALID_ARGUMENT and HTTP 400 with the same message, nothing pushed', async () => {
    const victim = await joinOn(gw1, { card_id: 'victim' });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ from: 'f', to: [], content: 'x' }, 'to must name at least one card id'],
      [{ from: 'f', content: 'x' }, 'to must name at least one card id'],
      [{ to: ['victim', ''], content: 'x' }, 'to[1]: must not be empty'],
      [{ to: ['victim', 'a:b'], content: 'x' }, 'to[1] must not contain ":"'],
      [{ to: ['victim', 'a\u0007'], content: 'x' }, 'to[1]: must not contain control characters'],
      [{ to: ['victim'], appID: 'x:y', content: 'x' }, 'appID must not contain ":"'],
      [{ to: ['victim', ...Array.from({ length: 1000 }, (_, i) => `c${i}`)], content: 'x' }, 'to may name at most 1000 card ids'],
      [{ to: ['victim', `c${'x'.repeat(200)}`], appID: 'y'.repeat(60), content: 'x' }, 'to[1]: card id and appID together must be at most 256 characters'],
      // Over the MPC's message limit, under the HTTP body limit (both 1 MiB).
      [{ to: ['victim'], content: 'x'.repeat(1_048_540) }, `the message to victim would be ${Buffer.byteLength(encodeBody('victim', { from: '', content: 'x'.repeat(1_048_540) }))} bytes, over the MPC's limit of 1048576`],
    ];
    for (const [request, message] of cases) {
      assert.deepEqual(await grpc.call('Push', request), { code: 'INVALID_ARGUMENT', details: message }, message);
      assert.deepEqual(await postJson(mpc, '/push', request), { status: 400, body: { error: message, code: 3, message } }, message);
    }
    for (const [method, cardID, message] of [['IsOnline', '', 'cardID: must not be empty'], ['Group', 'a:b', 'cardID must not contain ":"'], ['IsOnline', 'a\u0001', 'cardID: must not contain control characters']]) {
      assert.deepEqual(await grpc.call(method!, { cardID }), { code: 'INVALID_ARGUMENT', details: message });
      assert.deepEqual(await http(`/${method === 'IsOnline' ? 'isOnline' : 'group'}?cardID=${encodeURIComponent(cardID!)}`), { status: 400, body: { error: message, code: 3, message } });
    }
    // What only JSON can get wrong.
    const httpOnly: Array<[unknown, string]> = [
      ['[1]', 'body must be a JSON object {"from", "to", "appID", "content"}'],
      [{ from: 7, to: ['victim'] }, 'from must be a string'],
      [{ to: 'victim' }, 'to must be a list of card ids'],
      [{ to: ['victim', 5] }, 'to[1] must be a string'],
      [{ to: ['victim'], appID: 'a', app_id: 'b' }, 'appID and app_id differ (give one)'],
      ['{"to": ["victim"]', 'body is not valid JSON'],
    ];
    for (const [body, message] of httpOnly) assert.deepEqual(await postJson(mpc, '/push', body), { status: 400, body: { error: message, code: 3, message } }, message);

    // Nothing of any of them arrived: the next message is this one.
    assert.deepEqual(await grpc.call('Push', { to: ['victim'], content: 'only this' }), ok({ message: 'ok' }));
    await victim.waitFor((m) => m === frameOf('only this'), 1);
    assert.deepEqual(victim.messages, [OK, frameOf('only this')]);
  });

  test('a gateway SIGKILLed: its cards go offline within its heartbeat window', async () => {
    const gw3 = await startGatewayProcess(mpc.gatewayPort);
    const doomed = await TestClient.connect(gw3.url);
    doomed.send({ event: 'join', data: { card_id: 'kim' } });
    await doomed.waitFor((m) => m === OK);
    const both = await TestClient.connect(gw3.url);
    both.send({ event: 'join', data: { card_id: 'bob' } });
    await both.waitFor((m) => m === OK);
    await eventually(async () => [await grpc.call('IsOnline', { cardID: 'kim' }), await grpc.call('Group', { cardID: 'bob' })], [ok({ result: 'yes' }), ok({ clientNum: '3' })], 'kim online');
    const expiredBefore = (await mpc.stats()).presence.expiredGateways;

    gw3.child.kill('SIGKILL'); // by PID: no drain, no bye
    await gw3.exited;
    await Promise.all([doomed.closed, both.closed]);
    await eventually(async () => [await grpc.call('IsOnline', { cardID: 'kim' }), await grpc.call('Group', { cardID: 'kim' }), await grpc.call('Group', { cardID: 'bob' })],
      [ok({ result: 'no' }), ok({ clientNum: '-1' }), ok({ clientNum: '2' })], 'kim offline after the SIGKILL');
    assert.equal((await mpc.stats()).presence.expiredGateways, expiredBefore + 1, 'expired (it could not say bye)');
    const system = await grpc.call('System');
    assert.ok('reply' in system && system.reply.goroutineNum === '4', 'the dead gateway\'s workers are gone too');
  });

  test('a gateway stopped cleanly says bye: dropped at once, not expired', async () => {
    const gw4 = await startGatewayProcess(mpc.gatewayPort, ['--drain-ms', '100']);
    const lee = await TestClient.connect(gw4.url);
    lee.send({ event: 'join', data: { card_id: 'lee' } });
    await lee.waitFor((m) => m === OK);
    await eventually(async () => (await mpc.stats()).presence.gateways, 3, 'gw4 reporting');
    const expiredBefore = (await mpc.stats()).presence.expiredGateways;
    assert.equal(await gw4.stop(), 0);
    await lee.closed;
    await eventually(async () => [(await mpc.stats()).presence.gateways, await grpc.call('IsOnline', { cardID: 'lee' })], [2, ok({ result: 'no' })], 'gw4 gone');
    assert.equal((await mpc.stats()).presence.expiredGateways, expiredBefore, 'it said bye');
  });

  test('GET /online on a gateway\'s admin port still counts that gateway\'s connections', async () => {
    const daves = await Promise.all(Array.from({ length: 6 }, (_, i) => joinOn(gw2, i % 2 === 0 ? { card_id: 'dave' } : { card_id: 'dave', app_id: 'chat' })));
    const online = async (query: string) => (await (await gw2.admin(`/online?${query}`)).json()) as Record<string, unknown>;
    assert.deepEqual(await online('card_id=dave'), { card_id: 'dave', online: true, connections: 6 });
    assert.deepEqual(await online('card_id=dave&app_id=chat'), { card_id: 'dave', app_id: 'chat', online: true, connections: 3 });
    // Leaving (unsubscribe, acknowledged) is counted at once.
    assert.equal((await daves[1]!.request({ event: 'unsubscribe' })).event, 'ack');
    assert.equal((await online('card_id=dave')).connections, 5);
    assert.equal((await online('card_id=dave&app_id=chat')).connections, 2);
  });
});

/** gRPC status codes (grpc/status.h), as numbers on the wire. */
const grpcStatus = { RESOURCE_EXHAUSTED: 8, UNAUTHENTICATED: 16 } as const;

describe('gopusher with a token', () => {
  let mpc: MpcProcess;
  let grpc: PythonGrpcClient;
  before(async () => {
    mpc = await startMpcProcess(undefined, ['--http', '0', '--grpc', '0', '--http-token', 's3cret']);
    grpc = await PythonGrpcClient.start(mpc.grpcPort!);
  });
  after(async () => {
    grpc?.close();
    await mpc?.stop();
  });

  test('gRPC calls need the metadata "authorization: Bearer <token>"; HTTP routes the header', async () => {
    const unauthenticated = { code: 'UNAUTHENTICATED', details: 'missing or wrong bearer token (metadata "authorization: Bearer <token>")' };
    assert.deepEqual(await grpc.call('Push', { to: ['nobody'], content: 'x' }), unauthenticated);
    assert.deepEqual(await grpc.call('IsOnline', { cardID: 'nobody' }, [['authorization', 'Bearer wrong']]), unauthenticated);
    assert.deepEqual(await grpc.call('Push', { to: ['nobody'], content: 'x' }, [['authorization', 'Bearer s3cret']]), { reply: { message: 'ok' } });
    assert.deepEqual(await grpc.call('Group', { cardID: 'nobody' }, [['authorization', 'Bearer s3cret']]), { reply: { clientNum: '-1' } });
    assert.equal((await mpc.http('/isOnline?cardID=nobody')).status, 401);
    const res = await mpc.http('/isOnline?cardID=nobody', { headers: { authorization: 'Bearer s3cret' } });
    assert.deepEqual([res.status, await res.json()], [200, { result: 'no' }]);
  });

  test('a message sent in one-byte HTTP/2 DATA frames is cut before grpc-js holds it; real clients\' large pushes pass; open calls per connection are bounded', async (t) => {
    const before = rssBytes(mpc.child.pid!);
    // grpc-js would hold every frame (≈ 450 bytes each) until the announced 1 MB was whole. With the
    // token: a call without it is answered at its metadata, and grpc-js drops what follows.
    const session = http2.connect(`http://127.0.0.1:${mpc.grpcPort!}`);
    session.on('error', () => {});
    const stream = session.request({ ':method': 'POST', ':path': '/proto.Rpc/Push', 'content-type': 'application/grpc', te: 'trailers', authorization: 'Bearer s3cret' });
    stream.on('error', () => {});
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(1 << 20, 1);
    stream.write(prefix);
    let sent = 0;
    while (sent < 20_000 && !stream.destroyed && !session.destroyed) {
      await new Promise((resolve) => stream.write(Buffer.from([0x0a]), resolve)); // one DATA frame per write
      sent++;
    }
    session.destroy();
    const grown = rssBytes(mpc.child.pid!) - before;
    t.diagnostic(`cut after ${sent} one-byte frames; MPC RSS grew by ${(grown / 1024 / 1024).toFixed(1)} MB`);
    assert.ok(sent < 1000, `the connection took ${sent} one-byte DATA frames`);
    await until('the cut counted', async () => ((await mpc.stats()) as unknown as { grpc: { fragmentedCuts: number } }).grpc.fragmentedCuts === 1);
    await mpc.waitForLog((line) => typeof line.msg === 'string' && line.msg.startsWith('gRPC connection cut'));
    // A real client (python grpcio) sends a 600 KB push in full frames: served, not cut.
    const auth: Array<[string, string]> = [['authorization', 'Bearer s3cret']];
    assert.deepEqual(await grpc.call('Push', { to: ['nobody'], content: 'p'.repeat(600_000) }, auth), { reply: { message: 'ok' } });
    for (let i = 0; i < 50; i++) assert.deepEqual(await grpc.call('Group', { cardID: `c${i}` }, auth), { reply: { clientNum: '-1' } });
    assert.equal(((await mpc.stats()) as unknown as { grpc: { fragmentedCuts: number } }).grpc.fragmentedCuts, 1);
    // Open calls per connection are bounded too (each holds its first frames): the server says 100.
    const probe = http2.connect(`http://127.0.0.1:${mpc.grpcPort!}`);
    try {
      await new Promise((resolve) => probe.once('remoteSettings', resolve));
      assert.equal(probe.remoteSettings.maxConcurrentStreams, 100);
    } finally {
      probe.destroy();
    }
  });

  test('a call is answered before its message when it cannot succeed: no token (UNAUTHENTICATED), or a message larger than any push (RESOURCE_EXHAUSTED)', async () => {
    // Each call announces a 4 MB message and sends 64 KB of it, then waits. grpc-js buffers a message
    // whole before the handler runs: before, the token was checked only then, and grpc-js's 4 MB limit
    // let one call hold 4 MB (100 calls per connection), with or without the token.
    const session = http2.connect(`http://127.0.0.1:${mpc.grpcPort!}`);
    session.on('error', () => {});
    const unfinishedCall = (headers: Record<string, string>) => new Promise<string>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/proto.Rpc/Push', 'content-type': 'application/grpc', te: 'trailers', ...headers });
      stream.on('error', () => {});
      stream.resume();
      // grpc-js answers an error before any reply as a trailers-only response (one HEADERS frame).
      stream.on('response', (h) => resolve(`${h['grpc-status']} ${decodeURIComponent(String(h['grpc-message']))}`));
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(4_000_000, 1);
      stream.write(Buffer.concat([prefix, Buffer.alloc(65_536, 0x61)]));
    });
    try {
      assert.equal(await unfinishedCall({}), `${grpcStatus.UNAUTHENTICATED} missing or wrong bearer token (metadata "authorization: Bearer <token>")`);
      const tooLarge = await unfinishedCall({ authorization: 'Bearer s3cret' });
      assert.match(tooLarge, new RegExp(`^${grpcStatus.RESOURCE_EXHAUSTED} Received message larger than max \\(4000000 vs \\d+\\)$`));
    } finally {
      session.destroy();
    }
    // The largest push the MPC takes (its --max-message-bytes, 1 MiB) still goes through.
    const auth: Array<[string, string]> = [['authorization', 'Bearer s3cret']];
    assert.deepEqual(await grpc.call('Push', { to: ['nobody'], content: 'p'.repeat(1_000_000) }, auth), { reply: { message: 'ok' } });
  });
});

describe('gopusher: calls not yet whole, all connections together', () => {
  const LIMIT = 2 * 1024 * 1024;
  const AUTH = { authorization: 'Bearer s3cret' };
  let mpc: MpcProcess;
  before(async () => {
    mpc = await startMpcProcess(undefined, ['--grpc', '0', '--http-token', 's3cret', '--grpc-max-unfinished-bytes', String(LIMIT)]);
  });
  after(async () => {
    await mpc?.stop();
  });

  type GrpcStats = { grpc: { unfinishedBytes: number; unfinishedCuts: number } };
  const grpcStats = async () => ((await mpc.stats()) as unknown as GrpcStats).grpc;

  /** Opens `calls` Push calls on a new connection, each announcing 1 MB and sending `bytes` of it. */
  function unfinishedCalls(calls: number, bytes: number, headers: Record<string, string>): { session: http2.ClientHttp2Session; streams: http2.ClientHttp2Stream[] } {
    const session = http2.connect(`http://127.0.0.1:${mpc.grpcPort!}`);
    session.on('error', () => {});
    const streams = Array.from({ length: calls }, () => {
      const stream = session.request({ ':method': 'POST', ':path': '/proto.Rpc/Push', 'content-type': 'application/grpc', te: 'trailers', ...headers });
      stream.on('error', () => {});
      stream.resume();
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(1 << 20, 1);
      stream.write(Buffer.concat([prefix, Buffer.alloc(bytes - 5, 0x0a)]));
      return stream;
    });
    return { session, streams };
  }

  test('past --grpc-max-unfinished-bytes the connection holding the most is cut, counted and logged; the others and new calls are served', async () => {
    // grpc-js holds a message until it is whole: before, 100 calls of 1.3 MB, each a byte short, held
    // 134 MB on one connection, times as many connections as the port took.
    const big = unfinishedCalls(3, 512 * 1024, AUTH).session;
    await until('the big connection\'s bytes held', async () => (await grpcStats()).unfinishedBytes === 3 * 512 * 1024);
    const bigClosed = new Promise<void>((resolve) => big.once('close', () => resolve()));
    const small = unfinishedCalls(1, 768 * 1024, AUTH).session;
    try {
      await bigClosed;
      await until('the small connection\'s bytes are what is held', async () => (await grpcStats()).unfinishedBytes === 768 * 1024);
      assert.equal(small.destroyed, false, 'the connection holding less stays');
      assert.equal((await grpcStats()).unfinishedCuts, 1);
      await mpc.waitForLog((line) => typeof line.msg === 'string' && line.msg.startsWith('gRPC connection cut: the port held more than its limit'));
      const grpc = await PythonGrpcClient.start(mpc.grpcPort!);
      try {
        assert.deepEqual(await grpc.call('Push', { to: ['nobody'], content: 'x'.repeat(100_000) }, Object.entries(AUTH)), { reply: { message: 'ok' } });
      } finally {
        grpc.close();
      }
    } finally {
      small.destroy();
      big.destroy();
    }
    await until('nothing held once the connections are gone', async () => (await grpcStats()).unfinishedBytes === 0);
  });

  test('calls answered before their message is whole (no token) hold nothing, however much their clients still send', async () => {
    // grpc-js drops what follows its answer; the count reads the server's answers too. Counted from
    // the client's bytes alone, these 9 MB would have gone past the 2 MiB limit and cut connections.
    const cutsBefore = (await grpcStats()).unfinishedCuts;
    const refused = [0, 1, 2].map(() => unfinishedCalls(3, 1 << 20, {}));
    try {
      const streams = refused.flatMap((r) => r.streams);
      await until('every byte sent', async () => streams.every((stream) => stream.bufferSize === 0));
      const stats = await grpcStats();
      assert.deepEqual([stats.unfinishedBytes, stats.unfinishedCuts - cutsBefore], [0, 0], JSON.stringify(stats));
      assert.ok(refused.every((r) => !r.session.destroyed), 'no connection was cut');
    } finally {
      for (const r of refused) r.session.destroy();
    }
  });
});
