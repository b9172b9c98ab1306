/**
 * Hardening, publisher side: raw ZeroMQ sockets connected to the MPC's publisher port send every kind
 * of malformed message. The MPC is the one place that checks what publishers send: each is dropped and
 * counted by reason in its /metrics, never stamped or forwarded, nothing crashes or sticks, and the
 * next valid message is delivered.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XPublisher } from 'zeromq';
import { metricValue } from '../helpers/probes.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';

describe('hardening: bad input from publishers', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let raw: XPublisher;
  let client: TestClient;
  let sequence = 0;

  const REASONS = ['bad_frames', 'oversized', 'not_utf8', 'not_json', 'no_topic', 'invalid_topic', 'root_mismatch'];
  const drops = async () => {
    const text = await (await fetch(`http://127.0.0.1:${mpc.adminPort}/metrics`)).text();
    const byReason: Record<string, number> = {};
    for (const reason of REASONS) byReason[reason] = metricValue(text, 'tormq_mpc_publish_drops_total', { reason }) ?? NaN;
    return byReason;
  };

  /** Sends `bad`, then a valid message; the valid one arrives, and exactly `reason` was counted once. */
  const rejects = async (reason: string, bad: Array<string | Buffer>) => {
    const before = await drops();
    const valid = `valid-${++sequence}`;
    const from = client.messages.length;
    await raw.send(bad);
    await raw.send(['pub', `{"topic": "pub:x", "data": "${valid}"}`]);
    // Same socket, same MPC, same gateway SUB: ZeroMQ keeps order, so the bad one was processed first.
    await client.waitFor((m) => m.includes(valid), from);
    const after = await drops();
    const expected = { ...before, [reason]: before[reason]! + 1 };
    assert.deepEqual(after, expected, `only ${reason} grew`);
    assert.deepEqual(client.messages.slice(from), [`{"topic": "pub:x", "data": "${valid}"}`], 'the bad message reached nobody');
  };

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--max-message-bytes', '4096', '--max-topic-length', '32']);
    gateway = await startGatewayProcess(mpc.gatewayPort);
    client = await TestClient.connect(gateway.url);
    await client.subscribe('pub:x'); // a message on M reaches subscriptions M and below
    client.messages.length = 0; // drop the ack: from here on only bodies
    raw = new XPublisher({ linger: 0 });
    raw.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
    // An XPUB sees the MPC's subscription (to everything): once it is there, nothing sent is lost.
    for await (const [subscription] of raw) {
      if (subscription![0] === 1 && subscription!.length === 1) break;
    }
  });

  after(async () => {
    await client?.close();
    raw?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('a single frame is dropped as bad_frames', async () => {
    await rejects('bad_frames', ['pub {"topic": "pub:x", "data": 1}']);
  });

  test('three frames are dropped as bad_frames', async () => {
    await rejects('bad_frames', ['pub', '{"topic": "pub:x", "data": 1}', 'extra']);
  });

  test('a body that is valid JSON but holds bytes that are not UTF-8 is dropped as not_utf8: no client ever sees it', async () => {
    // {"topic": "pub:x", "data": "caf\xe9"}: JSON.parse would read U+FFFD; clients would fail the frame (1007).
    await rejects('not_utf8', ['pub', Buffer.concat([Buffer.from('{"topic": "pub:x", "data": "caf'), Buffer.from([0xe9]), Buffer.from('"}')])]);
    await rejects('not_utf8', ['pub', Buffer.from([0x7b, 0xc3, 0x28, 0x7d])]);
    // A Python publisher's surrogate escapes are ASCII, valid UTF-8 and valid JSON: delivered as sent.
    const escaped = '{"topic": "pub:x", "data": "\\ud83d\\ude80 and a lone \\ud800"}';
    const from = client.messages.length;
    await raw.send(['pub', escaped]);
    await client.waitFor((m) => m === escaped, from);
  });

  test('a body that is not JSON is dropped as not_json', async () => {
    await rejects('not_json', ['pub', 'hello, not json']);
  });

  test('a body with a valid topic prefix but broken JSON after it is dropped as not_json', async () => {
    await rejects('not_json', ['pub', '{"topic": "pub:x", "data": {broken']);
  });

  test('no topic, or a topic that is not a string, is dropped as no_topic', async () => {
    await rejects('no_topic', ['pub', '{"data": 1}']);
    await rejects('no_topic', ['pub', '{"topic": 5, "data": 1}']);
    await rejects('no_topic', ['pub', '{"topic": null}']);
    await rejects('no_topic', ['pub', '["pub:x"]']);
  });

  test('an invalid topic is dropped as invalid_topic', async () => {
    await rejects('invalid_topic', ['pub', '{"topic": "pub::x", "data": 1}']);
    await rejects('invalid_topic', ['pub', `{"topic": "pub:${'x'.repeat(40)}", "data": 1}`]);
    await rejects('invalid_topic', ['pub', '{"topic": "pub:\\u0001", "data": 1}']);
  });

  test('a root frame that disagrees with the topic is dropped as root_mismatch', async () => {
    await rejects('root_mismatch', ['pub', '{"topic": "other:x", "data": 1}']);
    // "pubx" passes ZeroMQ's prefix filter for "pub", but its topic's root is "pubx", not "pub".
    await rejects('root_mismatch', ['pub', '{"topic": "pubx", "data": 1}']);
  });

  test('a body over --max-message-bytes is dropped as oversized; one at the limit is delivered', async () => {
    await rejects('oversized', ['pub', `{"topic": "pub:x", "data": "${'y'.repeat(5000)}"}`]);
    const head = '{"topic": "pub:x", "data": "';
    const exact = `${head}${'z'.repeat(4096 - head.length - 2)}"}`;
    assert.equal(Buffer.byteLength(exact), 4096);
    const from = client.messages.length;
    await raw.send(['pub', exact]);
    await client.waitFor((m) => m === exact, from);
  });

  test('a burst of garbage never sticks anything; every reason is visible in the MPC\'s /metrics and /stats, and logged', async () => {
    const before = await drops();
    for (let i = 0; i < 500; i++) await raw.send(['pub', Buffer.from(`not json ${i}`)]);
    const from = client.messages.length;
    await raw.send(['pub', '{"topic": "pub:x", "data": "after the burst"}']);
    await client.waitFor((m) => m.includes('after the burst'), from);
    const after = await drops();
    assert.equal(after.not_json! - before.not_json!, 500);
    assert.deepEqual({ ...after, not_json: 0 }, { ...before, not_json: 0 }, 'nothing else counted');
    const stats = await mpc.stats();
    for (const [reason, value] of Object.entries(after)) assert.equal(stats.publishDrops[reason], value, reason);
    // Logged once per reason per minute, with a sample: visible without flooding the log.
    const lines = mpc.logs.filter((l) => l.msg === 'publisher message dropped' && l.reason === 'not_json');
    assert.equal(lines.length, 1);
    assert.equal((await gateway.admin('/healthz')).status, 200);
    assert.equal(gateway.child.exitCode, null);
    assert.equal(mpc.child.exitCode, null);
    // The gateway saw none of it.
    assert.equal((await gateway.stats()).messagesIn, (await mpc.stats()).forwarded);
  });
});
