/**
 * Admin HTTP of a tormq process (the gateway's main thread, the MPC): `/healthz`, `/metrics`
 * (Prometheus text), `/stats` (JSON), and the gateway's optional routes. Never touches client sockets.
 */
import http from 'node:http';
import type { Registry } from 'prom-client';

export interface AdminHandlers {
  healthy(): { ok: boolean; detail: Record<string, unknown> };
  stats(): Record<string, unknown>;
  metrics: Registry;
  /** Present only with `--enable-test-hooks`: `POST /test-hooks/worker/INDEX/ACTION`. */
  testHook?: (worker: number, action: string) => Promise<void>;
  /** `GET /online?card_id=C[&app_id=A]` (gopusher's online query), see online.ts. */
  online?(query: URLSearchParams): Promise<{ status: number; body: unknown }>;
}

export function createAdminServer(handlers: AdminHandlers): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (req.method === 'POST' && handlers.testHook && path.startsWith('/test-hooks/')) {
      const match = /^\/test-hooks\/worker\/(\d+)\/([a-z]+)$/.exec(path);
      if (match === null) {
        sendJson(res, 404, { error: 'POST /test-hooks/worker/INDEX/(crash|exit|stall|release)' });
        return;
      }
      handlers.testHook(Number(match[1]), match[2]!).then(
        () => sendJson(res, 200, { ok: true }),
        (error: Error) => sendJson(res, 400, { error: error.message }),
      );
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/online' && handlers.online) {
      handlers.online(new URLSearchParams((req.url ?? '').slice(path.length + 1))).then(
        ({ status, body }) => sendJson(res, status, body),
        (error: Error) => sendJson(res, 503, { error: `online query failed: ${error.message}` }),
      );
      return;
    }
    switch (path) {
      case '/healthz': {
        const { ok, detail } = handlers.healthy();
        sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unavailable', ...detail });
        return;
      }
      case '/stats':
        sendJson(res, 200, handlers.stats());
        return;
      case '/metrics':
        handlers.metrics.metrics().then(
          (text) => res.writeHead(200, { 'content-type': handlers.metrics.contentType }).end(text),
          (error: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${error.message}\n`),
        );
        return;
      default:
        sendJson(res, 404, { error: 'not found', paths: ['/healthz', '/metrics', '/stats', ...(handlers.online ? ['/online'] : [])] });
    }
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
