/**
 * A real browser (Debian's chromium, driven by playwright-core) against the real MPC and gateway:
 * the gateway's demo page loads the client the gateway serves (`/tormq-client.js`), subscribes with
 * recovery and shows each message with its offset; the gateway is SIGKILLed and restarted under it,
 * and the test reads the messages back from the DOM. A second page script joins a card the gopusher
 * way and receives an HTTP push.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Publisher } from '../../src/index.js';
import { postJson, startGatewayProcess, startMpcProcess, waitHttpReady, type GatewayProcess, type MpcProcess } from '../helpers/processes.js';

const CHROMIUM = '/usr/bin/chromium';

/** What the page functions below use of the browser's globals (the project compiles without the DOM lib). */
interface PageGlobals {
  document: { getElementById(id: string): { textContent: string | null } | null; querySelectorAll(selector: string): { length: number } };
  WebSocket: new (url: string) => { onopen: () => void; onmessage: (event: { data: string }) => void; send(text: string): void };
  received: string[];
  joined: Promise<void>;
}

describe('a real browser (chromium)', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let publisher: Publisher;
  let profile: string;
  let context: BrowserContext;

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--http', '0']);
    gateway = await startGatewayProcess(mpc.gatewayPort);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
    // A fresh profile per run: nothing cached or remembered from another run.
    profile = await mkdtemp(join(tmpdir(), 'tormq-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await publisher?.close();
    await gateway?.stop();
    await mpc?.stop();
  });

  const pageErrors: string[] = [];
  const openPage = async (): Promise<Page> => {
    const page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    return page;
  };

  test('the gateway serves the client as one ES module, the compiled file byte for byte', async () => {
    const res = await fetch(`http://127.0.0.1:${gateway.port}/tormq-client.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    const served = Buffer.from(await res.arrayBuffer());
    assert.ok(served.equals(await readFile(fileURLToPath(new URL('../../src/client/tormq-client.js', import.meta.url)))));
    // Self-contained: no static import a browser would have to resolve.
    assert.doesNotMatch(served.toString(), /^\s*import\s/m);
  });

  test('the demo page (the served client) survives a gateway restart and shows messages 1..N, none missing or repeated', async () => {
    const page = await openPage();
    await page.goto(`http://127.0.0.1:${gateway.port}/?topic=${encodeURIComponent('browser:room')}`);
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('subscription')?.textContent === 'browser:room');
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.getElementById('state')?.textContent), 'connected');
    await publisher.ready({ topic: 'browser:room', timeoutMs: 15_000 });
    const N = 60;
    const shown = (n: number) => page.waitForFunction((k) => (globalThis as unknown as PageGlobals).document.querySelectorAll('li.message').length >= k, n, { timeout: 30_000 });
    let i = 1;
    for (; i <= N / 3; i++) await publisher.send('browser:room', { i, text: `héllo ✓ 🚀 <b>${i}</b>` });
    await shown(N / 3);
    await gateway.stop('SIGKILL');
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('state')?.textContent !== 'connected');
    for (; i <= (2 * N) / 3; i++) await publisher.send('browser:room', { i, text: `héllo ✓ 🚀 <b>${i}</b>` }); // while no gateway runs
    gateway = await startGatewayProcess(mpc.gatewayPort, ['-p', String(gateway.port)]);
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('subscription')?.textContent === 'browser:room (recovered)', undefined, { timeout: 30_000 });
    for (; i <= N; i++) await publisher.send('browser:room', { i, text: `héllo ✓ 🚀 <b>${i}</b>` });
    await shown(N);
    // The page prepends: newest first.
    const items = await page.$$eval('li.message', (lis) => lis.map((li) => ({ offset: Number((li as unknown as { dataset: Record<string, string> }).dataset.offset), data: li.querySelector('.data')?.textContent ?? '' })));
    items.reverse();
    assert.deepEqual(items.map((m) => m.offset), Array.from({ length: N }, (_, k) => k + 1));
    assert.deepEqual(items.map((m) => JSON.parse(m.data) as unknown), Array.from({ length: N }, (_, k) => ({ i: k + 1, text: `héllo ✓ 🚀 <b>${k + 1}</b>` })));
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('li.notice').length), 0);
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.getElementById('state')?.textContent), 'connected');
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  test('a page script joins a card (gopusher) and receives a POST /push', async () => {
    const page = await openPage();
    await page.goto(`http://127.0.0.1:${gateway.port}/`);
    const url = gateway.url;
    // What a gopusher web client does: connect, join in onopen, read onmessage.
    await page.evaluate((wsUrl) => {
      const w = globalThis as unknown as PageGlobals;
      w.received = [];
      w.joined = new Promise((resolve) => {
        const ws = new w.WebSocket(wsUrl);
        ws.onopen = () => ws.send(JSON.stringify({ event: 'join', data: { card_id: 'webcard', app_id: 'web' }, id: 'j1' }));
        ws.onmessage = (event) => {
          // A join with an id is acknowledged (tormq's request protocol); pushes follow in gopusher's frame.
          if (JSON.parse(event.data).event === 'ack') resolve();
          else w.received.push(event.data);
        };
      });
    }, url);
    await page.evaluate(() => (globalThis as unknown as PageGlobals).joined);
    await waitHttpReady(mpc, 'webcard');
    const push = { from: 'server', to: ['webcard'], content: { title: 'Grüße', body: 'ünïcødé 🚀' } };
    assert.deepEqual(await postJson(mpc, '/push', push), { status: 200, body: { message: 'ok' } });
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).received.length >= 1, undefined, { timeout: 15_000 });
    const received = await page.evaluate(() => (globalThis as unknown as PageGlobals).received);
    // gopusher's frame, byte for byte (gorilla's WriteJSON ends it with a newline).
    assert.deepEqual(received, [`{"type":1,"data":${JSON.stringify(push.content)}}\n`]);
    const online = (await (await gateway.admin('/online?card_id=webcard')).json()) as Record<string, unknown>;
    assert.deepEqual(online, { card_id: 'webcard', online: true, connections: 1 });
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  test('with authentication on, the demo page asks for ?token= instead of connecting without one; refused, its client backs off', async () => {
    const secret = 'the-demo-page-secret-of-32-chars!!';
    const secured = await startGatewayProcess(mpc.gatewayPort, ['--auth-secret', secret]);
    const pages: Page[] = [];
    try {
      const stateIs = async (page: Page, pattern: RegExp) => {
        await page.waitForFunction((source) => new RegExp(source).test((globalThis as unknown as PageGlobals).document.getElementById('state')?.textContent ?? ''), pattern.source, { timeout: 15_000 });
      };
      const base = `http://127.0.0.1:${secured.port}/`;
      const noToken = await openPage();
      pages.push(noToken);
      await noToken.goto(base);
      await stateIs(noToken, /^this gateway requires a token \(authentication is on\): open this page with \?token=<JWT>$/);
      const stats = (await (await secured.admin('/stats')).json()) as { totals: Record<string, number> };
      assert.equal(stats.totals.authFailures, 0, 'without a token the page does not even try');

      // A bad token: the served client is refused (1006 in a browser) and backs off instead of looping.
      const badToken = await openPage();
      pages.push(badToken);
      await badToken.goto(`${base}?token=not-a-jwt`);
      await secured.admin('/stats'); // the page is loading; count its refusals over the next 3 s
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const refused = ((await (await secured.admin('/stats')).json()) as { totals: Record<string, number> }).totals.authFailures!;
      assert.ok(refused >= 1 && refused <= 6, `refused attempts in 3 s: ${refused} (backoff, not a tight loop)`);
      await stateIs(badToken, /^(connecting|disconnected)$/);

      const token = await new SignJWT({ topics: ['secure'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('viewer').setExpirationTime('10m')
        .sign(new TextEncoder().encode(secret));
      const withToken = await openPage();
      pages.push(withToken);
      await withToken.goto(`${base}?token=${token}&topic=secure:room`);
      await stateIs(withToken, /^connected$/);
      // Subscribed means acknowledged, and an ack means routed: published before it, the message could
      // reach the MPC before this gateway's subscription did (the MPC takes every message, so ready()
      // below does not wait for a gateway) and be missed. That race failed this test once in CI on Node 24.
      await withToken.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('subscription')?.textContent === 'secure:room', undefined, { timeout: 15_000 });
      await publisher.ready({ topic: 'secure', timeoutMs: 15_000 });
      await publisher.send('secure:room', 'for token holders');
      await withToken.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('li.message').length >= 1, undefined, { timeout: 15_000 });
      assert.deepEqual(await withToken.$$eval('li.message .data', (items) => items.map((li) => li.textContent ?? '')), [JSON.stringify('for token holders')]);
    } finally {
      for (const page of pages) await page.close();
      await secured.stop();
    }
  });
});
