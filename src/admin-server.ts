/**
 * Admin HTTP of a tormq process (the gateway's main thread, the MPC): `/healthz`, `/metrics`
 * (Prometheus text), `/stats` (JSON), and the gateway's optional routes. Never touches client sockets.
 */
import http from 'node:http';
import type { Registry } from 'prom-client';
import { budgetHttpServer, ConnectionBudget, HTTP_REQUEST_TIMEOUTS, type OnConnectionClosed } from './descriptors.js';

/**
 * Connections the admin port holds at once, within --fd-reserve (64), which it lives on: Prometheus
 * and health checks need a few. Before, it had no cap: when exposed for scraping, a flood of it could
 * take the descriptors the process keeps for other things (and, past the reserve, its ports' own).
 */
export const ADMIN_MAX_CONNECTIONS = 32;

/** What the admin port's cap is, for logConnectionsClosed. */
export const ADMIN_CAP = 'its cap, within --fd-reserve';

/** The admin port's connection budget; `onRefused` is told of each connection closed at the cap. */
export function adminConnectionBudget(onRefused?: OnConnectionClosed): ConnectionBudget {
  const budget = new ConnectionBudget('admin', onRefused);
  budget.limit = ADMIN_MAX_CONNECTIONS;
  return budget;
}

export interface AdminHandlers {
  healthy(): { ok: boolean; detail: Record<string, unknown> };
  stats(): Record<string, unknown>;
  metrics: Registry;
  /** Present only with `--enable-test-hooks`: `POST /test-hooks/worker/INDEX/ACTION`. */
  testHook?: (worker: number, action: string) => Promise<void>;
  /** `GET /online?card_id=C[&app_id=A]` (gopusher's online query), see online.ts. */
  online?(query: URLSearchParams): Promise<{ status: number; body: unknown }>;
}

/** The admin server; its connections on `budget` when given (adminConnectionBudget). */
export function createAdminServer(handlers: AdminHandlers, budget?: ConnectionBudget): http.Server {
  const server = http.createServer(HTTP_REQUEST_TIMEOUTS, (req, res) => {
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
  if (budget !== undefined) budgetHttpServer(server, budget);
  return server;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
