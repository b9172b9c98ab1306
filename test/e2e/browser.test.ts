/**
 * A real browser (Debian's chromium, driven by playwright-core) against the real MPC and gateway:
 * the gateway's demo page opens a WebSocket the way the original README snippet does (subscribe in
 * onopen, read onmessage) and shows each message; the test reads them back from the DOM. A second
 * page script joins a card the gopusher way and receives an HTTP push.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Publisher, encodeBody } from '../../src/index.js';
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

  test('the demo page subscribes in onopen and shows every message, bytes exact', async () => {
    const page = await openPage();
    await page.goto(`http://127.0.0.1:${gateway.port}/?topic=${encodeURIComponent('browser:room')}`);
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('state')?.textContent === 'open');
    // The page subscribed (no id, like the original snippet, so no ack): the gateway's subscription
    // reaching the MPC is the signal that it was applied.
    await publisher.ready({ topic: 'browser', timeoutMs: 15_000 });
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const topic = i % 2 === 0 ? 'browser:room' : 'browser';
      const data = i % 3 === 0 ? `héllo ✓ 日本語 🚀 #${i}` : { i, html: '<b>not markup</b> & "quotes"' };
      await publisher.send(topic, data);
      sent.push(encodeBody(topic, data));
    }
    await publisher.send('browser:other', 'not for this page');
    await page.waitForFunction((n) => (globalThis as unknown as PageGlobals).document.querySelectorAll('li.message').length >= n, sent.length, { timeout: 15_000 });
    // The page prepends: newest first.
    const shown = await page.$$eval('li.message', (items) => items.map((li) => li.textContent ?? ''));
    assert.deepEqual(shown.reverse(), sent);
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
          if (JSON.parse(event.data).event === 'ack') resolve();
          else w.received.push(event.data);
        };
      });
    }, url);
    await page.evaluate(() => (globalThis as unknown as PageGlobals).joined);
    await waitHttpReady(mpc, 'webcard');
    const push = { from: 'server', to: ['webcard'], content: { title: 'Grüße', body: 'ünïcødé 🚀' } };
    assert.deepEqual(await postJson(mpc, '/push', push), { status: 202, body: { accepted: 1 } });
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).received.length >= 1, undefined, { timeout: 15_000 });
    const received = await page.evaluate(() => (globalThis as unknown as PageGlobals).received);
    assert.deepEqual(received, [encodeBody('webcard', { from: 'server', content: push.content })]);
    const online = (await (await gateway.admin('/online?card_id=webcard')).json()) as Record<string, unknown>;
    assert.deepEqual(online, { card_id: 'webcard', online: true, connections: 1 });
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  test('with authentication on, the demo page asks for ?token= instead of looping on 1006, and backs off when refused', async () => {
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

      const badToken = await openPage();
      pages.push(badToken);
      await badToken.goto(`${base}?token=not-a-jwt`);
      await stateIs(badToken, /^refused \(1006\) before opening: the token is invalid or expired, or the origin is not allowed; retrying in 2 s$/);

      const token = await new SignJWT({ topics: ['secure'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('viewer').setExpirationTime('10m')
        .sign(new TextEncoder().encode(secret));
      const withToken = await openPage();
      pages.push(withToken);
      await withToken.goto(`${base}?token=${token}&topic=secure:room`);
      await stateIs(withToken, /^open$/);
      await publisher.ready({ topic: 'secure', timeoutMs: 15_000 });
      await publisher.send('secure:room', 'for token holders');
      await withToken.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('li.message').length >= 1, undefined, { timeout: 15_000 });
      assert.deepEqual(await withToken.$$eval('li.message', (items) => items.map((li) => li.textContent ?? '')), [encodeBody('secure:room', 'for token holders')]);
    } finally {
      for (const page of pages) await page.close();
      await secured.stop();
    }
  });
});
