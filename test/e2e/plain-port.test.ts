/**
 * Mixed fleets during a migration: an original TORMQ gateway reads the MPC's plain port, where every
 * valid message is the original two frames `[root, body]`, byte for byte, while tormq gateways read the
 * gateway port. Driven by Debian's python3-zmq with the original gateway's way of reading.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { XPublisher } from 'zeromq';
import { encodeBody, Publisher } from '../../src/index.js';
import { SYSTEM_PYTHON } from '../helpers/python-publisher.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';
import { TestClient } from '../helpers/ws-client.js';

const HUB = fileURLToPath(new URL('../../../test/fixtures/original_gateway_hub.py', import.meta.url));

describe('the plain port (--plain-port) for original TORMQ gateways', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let publisher: Publisher;
  let hub: ChildProcess | undefined;
  const lines: Array<Record<string, unknown>> = [];

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--plain-port', '0']);
    assert.ok(mpc.plainPort !== null && mpc.plainPort > 0, 'the ready line names the plain port');
    gateway = await startGatewayProcess(mpc.gatewayPort);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
    await publisher.ready({ timeoutMs: 10_000 });
  });
  after(async () => {
    hub?.kill();
    await publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('the original gateway gets [root, body] byte for byte; bad messages never reach it; tormq clients get the same bodies', async () => {
    const COUNT = 6;
    hub = spawn(SYSTEM_PYTHON, [HUB, `tcp://127.0.0.1:${mpc.plainPort}`, String(COUNT + 1)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    hub.stderr!.on('data', (d) => (stderr += d));
    const waiters = new Set<() => void>();
    createInterface({ input: hub.stdout! }).on('line', (line) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
      for (const w of waiters) w();
    });
    const exited = new Promise<number | null>((resolve) => hub!.once('exit', (code) => {
      resolve(code);
      for (const w of waiters) w();
    }));
    const until = (what: string, check: () => boolean) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not within 15 s; got ${JSON.stringify(lines)}; stderr ${stderr}`)), 15_000);
      const test = () => {
        if (check()) {
          clearTimeout(timer);
          waiters.delete(test);
          resolve();
        }
      };
      waiters.add(test);
      test();
    });
    // ZeroMQ's slow joiner: probe until the hub's subscription has reached the MPC.
    let probes = 0;
    const probing = setInterval(() => void publisher.send('probe', ++probes), 50);
    try {
      await until('a probe reached the original hub', () => lines.some((l) => l.topic === 'probe'));
    } finally {
      clearInterval(probing);
    }
    const client = await TestClient.connect(gateway.url);
    await client.subscribe('ehr:x', 'ehr:api:1', 'ehr:api:2'); // each receives its ancestors' messages too
    // A garbage message from a raw publisher: the MPC drops it, on both outputs.
    const raw = new XPublisher({ linger: 0 });
    raw.connect(`tcp://127.0.0.1:${mpc.publisherPort}`);
    for await (const [subscription] of raw) if (subscription![0] === 1) break;
    await raw.send(['ehr', 'not json', 'three frames']);
    await raw.send(['ehr', '{"topic": "ehr:x", "data": "caf\\u00e9 ✓"}']); // another publisher's spacing, kept
    // Two publishers have no order between them: the SDK's messages go once the raw one has arrived.
    await until('the raw publisher\'s message reached the hub', () => lines.some((l) => l.topic === 'ehr:x'));
    raw.close();
    const sent = [
      encodeBody('ehr:x', 'caf\u00e9 ✓').replace('"caf\u00e9 ✓"', '"caf\\u00e9 ✓"'),
      ...['ehr', 'ehr:api', 'ehr:api:1', 'ehr', 'ehr:api:2'].map((topic, i) => {
        void publisher.send(topic, { i, text: 'héllo' });
        return encodeBody(topic, { i, text: 'héllo' });
      }),
    ];
    const messages = () => lines.filter((l) => l.error !== undefined || (l.body !== undefined && l.topic !== 'probe'));
    await until('every message reached the original hub', () => messages().length >= COUNT || lines.some((l) => l.error));
    const got = messages();
    assert.deepEqual(got.filter((l) => l.error), [], 'every message unpacked as exactly two frames');
    assert.deepEqual(got.map((l) => l.body), sent, 'byte for byte, in order');
    assert.deepEqual(got.map((l) => l.root), ['ehr', 'ehr', 'ehr', 'ehr', 'ehr', 'ehr']);
    await client.waitFor((m) => m.includes('"i":4'));
    assert.deepEqual(client.bodies(), sent, 'the tormq gateway delivers the same bodies');
    await client.close();
    // One more after the probes end the hub (it was told COUNT + 1 messages).
    await publisher.send('done', 'bye');
    assert.equal(await exited, 0, stderr);
  });
});
