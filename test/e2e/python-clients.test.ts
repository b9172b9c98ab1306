/**
 * Real Python programs against the real MPC and gateway: the original publisher's wire behaviour under
 * a burst of non-ASCII messages, and an independent WebSocket client implementation (Python
 * `websockets`), so nothing depends on Node or `ws` quirks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeBody } from '../../src/index.js';
import { publishFromPython, SYSTEM_PYTHON } from '../helpers/python-publisher.js';
import { useSystem } from '../helpers/system.js';

const WS_CLIENT = fileURLToPath(new URL('../../../test/fixtures/websockets_client.py', import.meta.url));
const BURST = 5000;
/** Strings whose JSON escaping Python's json.dumps(ensure_ascii=False) and JSON.stringify agree on. */
const SAMPLES = ['héllo wörld', '日本語のテキスト', '🚀 emoji 👩‍👩‍👧 family', 'quote " backslash \\ newline \n tab \t', 'e\u0301 combining, \u2028 separator, \u0001 control'];

describe('Python clients', () => {
  const sys = useSystem();
  const connect = async (...topics: string[]) => {
    const client = await sys.connect();
    await client.subscribe(...topics);
    return client;
  };

  test(`the original Python publisher: a burst of ${BURST} non-ASCII messages all arrive, in order, byte for byte`, async () => {
    const probe = await connect('pyburstprobe');
    // Under both topics below: a message on `burst` and one on `burst:ünï` both reach it.
    const reader = await connect('burst:ünï');
    const messages = Array.from({ length: BURST }, (_, i) => ({
      topic: i % 2 === 0 ? 'burst:ünï' : 'burst',
      data: i % 3 === 0 ? `${i} ${SAMPLES[i % SAMPLES.length]}` : { i, text: SAMPLES[i % SAMPLES.length] },
    }));
    // The Python PUB's own send high-water mark is raised above the burst: at ZeroMQ's default (1000) a
    // PUB socket drops inside the publisher process when its I/O thread falls behind (seen on a busy
    // 2-core machine), which no MPC or gateway can prevent. Frames and bytes are the original SDK's.
    const result = await publishFromPython(sys.mpc.publisherPort, 'pyburstprobe', probe, messages, { sendHighWaterMark: 100_000 });
    assert.equal(result.sent, BURST);
    // What Python's json.dumps(..., ensure_ascii=False) writes: ": " and ", " separators everywhere.
    const python = (m: (typeof messages)[number]) =>
      typeof m.data === 'string'
        ? `{"topic": ${JSON.stringify(m.topic)}, "data": ${JSON.stringify(m.data)}}`
        : `{"topic": ${JSON.stringify(m.topic)}, "data": {"i": ${m.data.i}, "text": ${JSON.stringify(m.data.text)}}}`;
    await reader.waitForCount(1 + BURST, 20_000).catch(async (error: Error) => {
      // Say where messages went missing: before the gateway (messagesIn) or inside it (drops).
      const stats = await sys.gateway.stats();
      const got = new Set(reader.bodies());
      const missing = messages.flatMap((m, i) => (got.has(python(m)) ? [] : [i]));
      throw new Error(`${error.message}; missing indices ${missing.length > 20 ? `${missing.slice(0, 10)} … ${missing.slice(-10)}` : missing}; gateway messagesIn ${stats.messagesIn}, drops ${JSON.stringify(stats.publishDrops)}, workers ${JSON.stringify(stats.workers)}, reader close ${reader.closeCode}`);
    });
    const bodies = reader.bodies();
    assert.equal(bodies.length, BURST);
    for (let i = 0; i < BURST; i++) assert.equal(bodies[i], python(messages[i]!), `message ${i}`);
    const stats = await sys.gateway.stats();
    assert.deepEqual(stats.publishDrops, Object.fromEntries(Object.keys(stats.publishDrops).map((k) => [k, 0])), 'nothing dropped');
    assert.ok(stats.workers.every((w) => w.ringDrops === 0));
  });

  test('Python websockets (an independent client): subscribe+ack, ping/pong, error with id, bodies byte for byte', async () => {
    const count = 200;
    const child = spawn(SYSTEM_PYTHON, [WS_CLIENT, sys.gateway.url, 'pyws:room', String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const events: Array<Record<string, unknown>> = [];
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const waiters = new Set<() => void>();
    createInterface({ input: child.stdout }).on('line', (line) => {
      events.push(JSON.parse(line) as Record<string, unknown>);
      for (const w of waiters) w();
    });
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => {
      resolve(code);
      for (const w of waiters) w();
    }));
    try {
      await new Promise<void>((resolve, reject) => {
        const check = () => {
          if (events.some((e) => e.ready === true)) resolve();
          else if (child.exitCode !== null) reject(new Error(`python client exited ${child.exitCode}: ${stderr}`));
        };
        const timer = setTimeout(() => reject(new Error(`python client not ready within 15 s: ${stderr}`)), 15_000);
        waiters.add(() => { check(); });
        check();
        void exited.finally(() => clearTimeout(timer));
      });
      assert.deepEqual(events.slice(0, 3), [
        { ack: { event: 'ack', id: 'sub-1' } },
        { pong: { event: 'pong', id: 7 } },
        { error: { event: 'error', id: 'bad', code: 'ERR_INVALID_TOPIC', message: 'topic: topic must not have empty segments' } },
      ]);

      await sys.publisher.ready({ topic: 'pyws', timeoutMs: 15_000 });
      const sent: string[] = [];
      for (let i = 0; i < count; i++) {
        // Publishing on the parent topic reaches the client too (prefix semantics).
        const topic = i % 2 === 0 ? 'pyws:room' : 'pyws';
        const data = { i, text: SAMPLES[i % SAMPLES.length] };
        await sys.publisher.send(topic, data);
        sent.push(encodeBody(topic, data));
      }
      const timeout = new Promise<never>((_, reject) => {
        const timer = setTimeout(() => reject(new Error(`python client did not finish within 20 s; got ${events.length - 4} bodies; ${stderr}`)), 20_000);
        void exited.finally(() => clearTimeout(timer));
      });
      assert.equal(await Promise.race([exited, timeout]), 0, stderr);
      const bodies = events.filter((e) => 'body' in e);
      assert.deepEqual(bodies.map((e) => e.body), sent);
      assert.deepEqual(bodies.map((e) => e.bytes), sent.map((s) => Buffer.byteLength(s)));
      assert.deepEqual(events.at(-1), { closed: 1000 });
    } finally {
      child.kill();
    }
  });
});
