/**
 * HTTP publishing on the MPC (`tormq-mpc --http PORT`), for languages without a ZeroMQ binding:
 *
 * - `POST /publish` `{"topic": "ehr:api", "data": …}` or an array of them -> 202 `{"accepted": n}`
 * - `POST /push` `{"from"?: "F", "to": ["C1", "C2"], "content": …, "appID"?: "A"}` (gopusher; `app_id`
 *   accepted too, "" = no app) -> 200 `{"message": "ok"}` as gopusher's grpc-gateway answers: one message per card id, on the identity's topic (protocol/identity.ts), whose
 *   body is `{"topic": "C1", "data": {"from": "F", "content": …}}`
 * - `GET /ready?topic=T&timeout_ms=N` -> 200 once the MPC takes messages on T (tormq-mpc takes every
 *   topic, for history), else 503
 * - `GET /healthz` -> 200 with counters
 *
 * Every message goes through the ordinary {@link Publisher}, connected to the MPC's own publisher port,
 * so it is byte for byte what the Node SDK sends. 202 means "handed to the MPC", which stamps it and
 * keeps it in history for clients that recover; not "delivered".
 *
 * @example
 * ```ts
 * const ingress = await startHttpIngress({ port: 8080, publisherHost: '127.0.0.1', publisherPort: 5559 });
 * // curl -X POST localhost:8080/publish -d '{"topic":"ehr:api","data":"hello"}'
 * await ingress.close();
 * ```
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { ErrorCodes, TormqError } from '../errors.js';
import { listenOrFail } from '../listen.js';
import type { Logger } from '../log.js';
import { isLoopbackHost } from '../loopback.js';
import { anyString, boolean, defineOptions, int, nonEmptyString, satisfies, type InputOf } from '../options/options.js';
import { describeCertificate, readTlsFiles, tlsPairProblem } from '../tls-files.js';
import { isCurveKey, type CurveClientKeys } from '../zmq/curve.js';
import { identityIdError, identityTopic } from '../protocol/identity.js';
import { rootOf, topicError } from '../protocol/topic.js';
import { Publisher, encodeBody } from '../sdk/publisher.js';

export const HTTP_INGRESS_OPTIONS = defineOptions('an HTTP ingress', {
  host: { default: '127.0.0.1', check: nonEmptyString, help: 'address to bind' },
  port: { default: 0, check: int(0, 65535), help: 'port to bind; 0 picks a free one' },
  /** Where the MPC's publisher port (XSUB) is reachable from this process. */
  publisherHost: { default: '127.0.0.1', check: nonEmptyString, help: "host of the MPC's publisher port" },
  publisherPort: { default: 5559, check: int(1, 65535), help: "the MPC's publisher port" },
  token: {
    default: undefined as string | undefined,
    check: satisfies<string | undefined>('a non-empty string', (v) => v === undefined || (typeof v === 'string' && v.length > 0)),
    secret: true,
    help: 'when set, every request except GET /healthz needs `Authorization: Bearer <token>` (401 otherwise)',
  },
  maxBodyBytes: { default: 1_048_576, check: int(1), help: 'largest request body accepted (bytes); larger ones get 413' },
  maxMessagesPerRequest: { default: 1000, check: int(1), help: 'most messages one request may carry (array items for /publish, card ids for /push)' },
  // JSON.parse takes any depth, but encoding a body recurses: past ~1000–5000 levels (Node 20) it threw,
  // and the request was answered 503 ERR_PUBLISHER_QUEUE_FULL, which clients retry forever. Common JSON
  // parsers of the clients stop far earlier (serde_json at 128, Python's json near 1000).
  maxDataDepth: { default: 100, check: int(1, 1000), help: 'deepest nesting of arrays and objects in a message\'s data; deeper: 400' },
  tlsCert: { default: '', check: anyString, help: 'serve https:// with this PEM certificate chain (file; re-read by reloadTls)' },
  tlsKey: { default: '', check: anyString, help: 'the PEM private key of tlsCert (file)' },
  curve: {
    default: undefined as CurveClientKeys | undefined,
    check: satisfies<CurveClientKeys | undefined>(
      '{ serverKey, publicKey, secretKey }, each a 40-character Z85 key',
      (v) => v === undefined || (typeof v === 'object' && v !== null && [(v as CurveClientKeys).serverKey, (v as CurveClientKeys).publicKey, (v as CurveClientKeys).secretKey].every(isCurveKey)),
    ),
    secret: true,
    help: "CURVE keys for the link to the MPC's publisher port, when the MPC runs with CURVE",
  },
  insecure: {
    default: false,
    check: boolean,
    help: 'allow publishing without a token on a non-loopback address (anyone who reaches the port can publish)',
  },
}, (c, fail, name) => {
  const tls = tlsPairProblem(c.tlsCert, c.tlsKey);
  if (tls !== null) fail(tls.key === 'cert' ? 'tlsCert' : 'tlsKey', tls.must.replace('the key', name('tlsKey')).replace('the certificate', name('tlsCert')));
  if (c.token === undefined && !c.insecure && !isLoopbackHost(c.host)) {
    fail('token', `set when ${name('host')} is ${c.host} (not loopback): anyone who reaches the port could publish; or set ${name('insecure')}`, null);
  }
});

export const HTTP_INGRESS_DEFAULTS = HTTP_INGRESS_OPTIONS.defaults;
/** Longest wait `GET /ready` accepts (`timeout_ms`). */
const MAX_READY_WAIT_MS = 30_000;

export type HttpIngressOptions = InputOf<typeof HTTP_INGRESS_OPTIONS.specs> & {
  /** Where refused requests and publish failures are logged. */
  log?: Logger;
};

export interface HttpIngressStats {
  /** Messages handed to the MPC. */
  accepted: number;
  /** Requests answered 4xx (bad input, auth, size) or 503 (publisher queue full). */
  rejected: number;
}

export interface HttpIngress {
  readonly port: number;
  /** `http` or `https` (with `tlsCert`). */
  readonly scheme: 'http' | 'https';
  readonly stats: Readonly<HttpIngressStats>;
  /**
   * Re-reads `tlsCert`/`tlsKey` for new connections (SIGHUP of tormq-mpc); open ones are untouched.
   * Throws TypeError (and keeps the old certificate) when the files are not a matching pair; resolves
   * with a description of the new certificate.
   */
  reloadTls(): { subject: string; validTo: string; fingerprint256: string };
  close(): Promise<void>;
}

/** One message to publish, validated. */
export interface IngressMessage {
  topic: string;
  data: unknown;
}

export type ParsedRequest = { ok: true; messages: IngressMessage[] } | { ok: false; error: string };

function bad(error: string): ParsedRequest {
  return { ok: false, error };
}

/** `true` when `value` nests arrays and objects deeper than `max` levels (a scalar is 0, `[]` is 1). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  // Iterative: a recursive walk would hit the very stack limit this guards against.
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (item === null || typeof item !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** Validates a `/publish` body (already JSON-parsed): one `{topic, data}` object or an array of them. */
export function parsePublishRequest(
  body: unknown,
  maxMessages: number = HTTP_INGRESS_OPTIONS.defaults.maxMessagesPerRequest,
  maxDataDepth: number = HTTP_INGRESS_OPTIONS.defaults.maxDataDepth,
): ParsedRequest {
  const single = !Array.isArray(body);
  const items = single ? [body] : (body as unknown[]);
  if (items.length === 0) return bad('body must not be an empty array');
  if (items.length > maxMessages) return bad(`a request may carry at most ${maxMessages} messages`);
  const messages: IngressMessage[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const where = single ? '' : `[${i}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return bad(`body${where} must be an object {"topic", "data"}`);
    const { topic, data } = item as Record<string, unknown>;
    if (topic === undefined) return bad(`body${where} needs a "topic"`);
    const problem = topicError(topic);
    if (problem !== null) return bad(`body${where}: ${problem}`);
    if (data === undefined) return bad(`body${where} needs a "data" (any JSON value)`);
    if (nestedDeeperThan(data, maxDataDepth)) return bad(`body${where}: data must not nest arrays and objects deeper than ${maxDataDepth} levels`);
    messages.push({ topic: topic as string, data });
  }
  return { ok: true, messages };
}

/**
 * Validates a gopusher `/push` body: `{"from": "F", "to": ["C1", …], "content": …, "app_id"?: "A"}`.
 * Each distinct card id becomes one message on `C` (or `C:A`) with data `{"from", "content"}`.
 */
export function parsePushRequest(
  body: unknown,
  maxMessages: number = HTTP_INGRESS_OPTIONS.defaults.maxMessagesPerRequest,
  maxDataDepth: number = HTTP_INGRESS_OPTIONS.defaults.maxDataDepth,
): ParsedRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return bad('body must be an object {"from", "to", "content"}');
  const fields = body as Record<string, unknown>;
  const { to, content } = fields;
  // gopusher's proto3 fields: `from` optional (zero value ""), `appID` (grpc-gateway's JSON name; `app_id`
  // accepted too) with "" meaning no app.
  const from = fields.from ?? '';
  if (typeof from !== 'string') return bad('from must be a string');
  if (fields.appID !== undefined && fields.app_id !== undefined && fields.appID !== fields.app_id) return bad('appID and app_id differ');
  const rawApp = fields.appID ?? fields.app_id;
  const appId = rawApp === '' ? undefined : rawApp;
  if (!Array.isArray(to) || to.length === 0) return bad('to must be a non-empty array of card ids');
  if (to.length > maxMessages) return bad(`to may name at most ${maxMessages} card ids`);
  if (content === undefined) return bad('content is required (any JSON value)');
  // The message's data is {"from", "content"}: content sits one level down.
  if (nestedDeeperThan(content, maxDataDepth - 1)) return bad(`content must not nest arrays and objects deeper than ${maxDataDepth - 1} levels`);
  if (appId !== undefined && appId !== null) {
    const problem = identityIdError(appId, 'app_id');
    if (problem !== null) return bad(problem);
  }
  const messages: IngressMessage[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < to.length; i++) {
    const problem = identityIdError(to[i], 'card_id');
    if (problem !== null) return bad(`to[${i}]: ${problem}`);
    const topic = identityTopic(to[i] as string, appId as string | null | undefined);
    if (topicError(topic) !== null) return bad(`to[${i}]: card_id and app_id together are too long`);
    if (seen.has(topic)) continue;
    seen.add(topic);
    messages.push({ topic, data: { from, content } });
  }
  return { ok: true, messages };
}

/** Constant-time bearer token check (hashing first makes the comparison independent of length too). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? header.slice(7) : '';
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/** Starts the HTTP ingress; resolves once it listens. */
export async function startHttpIngress(options: HttpIngressOptions = {}): Promise<HttpIngress> {
  const { log, ...rest } = options;
  const config = HTTP_INGRESS_OPTIONS.validate(rest);
  const publisher = new Publisher(config.publisherHost, config.publisherPort, {
    // Room for a few full requests in flight; beyond it a request gets 503 instead of queueing unboundedly.
    maxQueue: config.maxMessagesPerRequest * 16,
    ...(config.curve === undefined ? {} : { curve: config.curve }),
  });
  const stats: HttpIngressStats = { accepted: 0, rejected: 0 };

  const reply = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) => {
    if (status >= 400) {
      stats.rejected++;
      // Bad requests are the caller's problem: counted (GET /healthz) and logged only at debug.
      if (status < 500) log?.debug({ status, error: (body as { error?: string }).error }, 'http request refused');
    }
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };

  async function publishAll(res: http.ServerResponse, parsed: ParsedRequest, gopusher = false): Promise<void> {
    if (!parsed.ok) {
      reply(res, 400, { error: parsed.error });
      return;
    }
    // Every body is encoded before any is sent: a message that cannot be is the caller's error (400),
    // and the request is refused whole.
    const bodies: string[] = [];
    for (const [i, message] of parsed.messages.entries()) {
      try {
        bodies.push(encodeBody(message.topic, message.data));
      } catch (error) {
        reply(res, 400, { error: `message ${i}: data cannot be encoded: ${(error as Error).message}` });
        return;
      }
    }
    // Sends are queued synchronously in order, so when the queue overflows the refused ones are a
    // suffix: the first `accepted` messages went out and the caller can retry the rest.
    const results = await Promise.allSettled(parsed.messages.map((m, i) => publisher.sendRaw(rootOf(m.topic), bodies[i]!)));
    const accepted = results.filter((r) => r.status === 'fulfilled').length;
    stats.accepted += accepted;
    if (accepted === results.length) {
      // gopusher's /push answers as grpc-gateway v1 does (the zero `code` omitted).
      if (gopusher) reply(res, 200, { message: 'ok' });
      else reply(res, 202, { accepted });
      return;
    }
    const failure = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error;
    log?.warn({ accepted, refused: results.length - accepted, err: failure.message }, 'http publish refused messages');
    // Only a full queue (or a publisher closing at shutdown) is worth retrying.
    if (failure instanceof TormqError) reply(res, 503, { accepted, error: failure.message, code: failure.code }, { 'retry-after': '1' });
    else reply(res, 500, { accepted, error: `publish failed: ${failure.message}` });
  }

  async function ready(res: http.ServerResponse, query: URLSearchParams): Promise<void> {
    const topic = query.get('topic');
    const problem = topicError(topic ?? undefined);
    if (problem !== null) {
      reply(res, 400, { error: problem });
      return;
    }
    const rawTimeout = query.get('timeout_ms') ?? '0';
    const timeoutMs = /^\d+$/.test(rawTimeout) ? Number(rawTimeout) : NaN;
    if (!(timeoutMs <= MAX_READY_WAIT_MS)) {
      reply(res, 400, { error: `timeout_ms must be an integer from 0 to ${MAX_READY_WAIT_MS}` });
      return;
    }
    const isReady = timeoutMs === 0
      ? publisher.hasSubscribers(topic!)
      : await publisher.ready({ topic: topic!, timeoutMs }).then(() => true, () => false);
    res.writeHead(isReady ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ topic, ready: isReady }));
  }

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
    if (path === '/healthz' && req.method === 'GET') {
      reply(res, 200, { status: 'ok', ...stats });
      return;
    }
    if (config.token !== undefined && !bearerMatches(req.headers.authorization, config.token)) {
      reply(res, 401, { error: 'missing or wrong bearer token' }, { 'www-authenticate': 'Bearer' });
      req.resume();
      return;
    }
    const route = ROUTES[path];
    if (route === undefined) {
      reply(res, 404, { error: 'not found', paths: Object.keys(ROUTES) });
      req.resume();
      return;
    }
    if (req.method !== route) {
      reply(res, 405, { error: `${path} takes ${route}` }, { allow: route });
      req.resume();
      return;
    }
    if (route === 'GET') {
      void ready(res, query);
      return;
    }
    void readJson(req, config.maxBodyBytes).then((body) => {
      if (!body.ok) {
        reply(res, body.status, { error: body.error });
        return;
      }
      const parse = path === '/publish' ? parsePublishRequest : parsePushRequest;
      return publishAll(res, parse(body.value, config.maxMessagesPerRequest, config.maxDataDepth), path === '/push');
    }).catch((error: Error) => {
      log?.error({ err: error }, 'http ingress request failed');
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
    });
  };
  const tls = config.tlsCert === '' ? null : readTlsFiles(config.tlsCert, config.tlsKey);
  const server: http.Server = tls === null ? http.createServer(onRequest) : https.createServer({ ...tls }, onRequest);
  // Keep-alive clients (most HTTP libraries) must not hold close() open forever.
  server.keepAliveTimeout = 5_000;

  const port = await listenOrFail(server, config.host, config.port, 'HTTP').catch(async (error: unknown) => {
    await publisher.close();
    throw error;
  });

  let closing: Promise<void> | null = null;
  return {
    port,
    scheme: tls === null ? 'http' : 'https',
    stats,
    reloadTls() {
      if (!(server instanceof https.Server)) throw new TormqError(ErrorCodes.TLS_NOT_ENABLED, 'the HTTP ingress serves plain http:// (no tlsCert)');
      const material = readTlsFiles(config.tlsCert, config.tlsKey);
      server.setSecureContext({ ...material });
      return describeCertificate(material);
    },
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          // Requests in flight get a moment to finish; a long GET /ready must not hold shutdown for 30 s.
          setTimeout(() => server.closeAllConnections(), 1000).unref();
        });
        await publisher.close();
      })();
      return closing;
    },
  };
}

const ROUTES: Record<string, 'GET' | 'POST'> = { '/publish': 'POST', '/push': 'POST', '/ready': 'GET' };

type JsonBody = { ok: true; value: unknown } | { ok: false; status: 400 | 413; error: string };

function readJson(req: http.IncomingMessage, maxBytes: number): Promise<JsonBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    // A declared length over the limit is refused without buffering a byte of it.
    let size = Number(req.headers['content-length']) > maxBytes ? maxBytes + 1 : 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Over the limit the rest is read and discarded (memory stays bounded) so the 413 reaches a
      // client still sending, instead of a reset on unread data.
      if (size <= maxBytes) chunks.push(chunk);
      else chunks.length = 0;
    });
    req.once('error', reject);
    req.once('end', () => {
      if (size > maxBytes) {
        resolve({ ok: false, status: 413, error: `body is larger than ${maxBytes} bytes` });
        return;
      }
      try {
        resolve({ ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      } catch {
        resolve({ ok: false, status: 400, error: 'body is not valid JSON' });
      }
    });
  });
}
