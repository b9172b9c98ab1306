/**
 * HTTP publishing on the MPC (`tormq-mpc --http PORT`), for languages without a ZeroMQ binding:
 *
 * - `POST /publish` `{"topic": "ehr:api", "data": …}` or an array of them -> 202 `{"accepted": n}`
 * - gopusher's grpc-gateway routes, answered as grpc-gateway v1 did (gopusher/gateway-json.ts), served
 *   by the same code as the gRPC service (gopusher/service.ts):
 *   - `POST /push` `{"from": "F", "to": ["C1", "C2"], "appID": "A", "content": "…"}` (`app_id` too) ->
 *     200 `{"message":"ok"}`: one message per card id, on the identity's topic (protocol/identity.ts),
 *     whose body is `{"topic": "C1", "data": {"from": "F", "content": …}}`
 *   - `GET /system`, `GET /isOnline?cardID=C`, `GET /group?cardID=C`: the cluster's presence (needs
 *     `presence`, which tormq-mpc gives; without it 501)
 *   - a bad request: 400 `{"error": m, "code": 3, "message": m}`, m the gRPC INVALID_ARGUMENT message
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
import http from 'node:http';
import https from 'node:https';
import { budgetHttpServer, HTTP_REQUEST_TIMEOUTS, type ConnectionBudget } from '../descriptors.js';
import { ErrorCodes, TormqError } from '../errors.js';
import { listenOrFail } from '../listen.js';
import type { Logger } from '../log.js';
import { isLoopbackHost } from '../loopback.js';
import { anyString, boolean, defineOptions, int, nonEmptyString, satisfies, type InputOf } from '../options/options.js';
import { describeCertificate, readTlsFiles, tlsPairProblem } from '../tls-files.js';
import { isCurveKey, type CurveClientKeys } from '../zmq/curve.js';
import { errorBody, httpStatusOf, INT64_FIELDS, marshalReply } from '../gopusher/gateway-json.js';
import { GopusherError, GopusherService, GrpcStatus } from '../gopusher/service.js';
import type { PresenceView } from '../mpc/presence.js';
import { nestedDeeperThan } from '../protocol/json-depth.js';
import { rootOf, topicError } from '../protocol/topic.js';
import { Publisher, encodeBody } from '../sdk/publisher.js';
import { appendGrowing } from '../append-growing.js';
import { bearerMatches } from './bearer.js';

export { bearerMatches, nestedDeeperThan };

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
  maxMessageBytes: { default: 1024 * 1024, check: int(1), help: "the MPC's --max-message-bytes: a /push whose message would be larger is refused (400)" },
  maxTopicLength: { default: 256, check: int(1, 65535), help: "the MPC's --max-topic-length (card id, ':' and app id of a /push together)" },
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
  /** The MPC's presence table, for gopusher's `/system`, `/isOnline` and `/group` (501 without it). */
  presence?: PresenceView;
  /** Caps the port's connections (the MPC's share for it, src/descriptors.ts); none without it. */
  budget?: ConnectionBudget | undefined;
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

/** Starts the HTTP ingress; resolves once it listens. */
export async function startHttpIngress(options: HttpIngressOptions = {}): Promise<HttpIngress> {
  const { log, presence, budget, ...rest } = options;
  const config = HTTP_INGRESS_OPTIONS.validate(rest);
  const publisher = new Publisher(config.publisherHost, config.publisherPort, {
    // Room for a few full requests in flight; beyond it a request gets 503 instead of queueing unboundedly.
    maxQueue: config.maxMessagesPerRequest * 16,
    ...(config.curve === undefined ? {} : { curve: config.curve }),
  });
  const stats: HttpIngressStats = { accepted: 0, rejected: 0 };
  const gopusher = new GopusherService({
    send: (root, body) => publisher.sendRaw(root, body),
    presence: presence ?? null,
    limits: {
      maxCardsPerPush: config.maxMessagesPerRequest,
      maxMessageBytes: config.maxMessageBytes,
      maxTopicLength: config.maxTopicLength,
      // The message's data is {"from", "content"}: content sits one level down.
      maxContentDepth: config.maxDataDepth - 1,
    },
  });

  const reply = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) => {
    if (status >= 400) {
      stats.rejected++;
      // Bad requests are the caller's problem: counted (GET /healthz) and logged only at debug.
      if (status < 500) log?.debug({ status, error: (body as { error?: string }).error }, 'http request refused');
    }
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };

  async function publishAll(res: http.ServerResponse, parsed: ParsedRequest): Promise<void> {
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
      reply(res, 202, { accepted });
      return;
    }
    const failure = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error;
    log?.warn({ accepted, refused: results.length - accepted, err: failure.message }, 'http publish refused messages');
    // Only a full queue (or a publisher closing at shutdown) is worth retrying.
    if (failure instanceof TormqError) reply(res, 503, { accepted, error: failure.message, code: failure.code }, { 'retry-after': '1' });
    else reply(res, 500, { accepted, error: `publish failed: ${failure.message}` });
  }

  /** A gopusher call, answered as grpc-gateway v1 did: its reply as JSONPb, or its status and error body. */
  async function gopusherCall(res: http.ServerResponse, call: () => Record<string, string | number> | Promise<Record<string, string | number>>, int64: readonly string[]): Promise<void> {
    const pushedBefore = gopusher.pushed;
    try {
      const answer = await call();
      stats.accepted += gopusher.pushed - pushedBefore;
      reply(res, 200, marshalReply(answer, int64));
    } catch (error) {
      if (!(error instanceof GopusherError)) throw error;
      stats.accepted += gopusher.pushed - pushedBefore;
      if (error.status === GrpcStatus.UNAVAILABLE) log?.warn({ err: error.message }, 'http push refused messages');
      reply(res, httpStatusOf(error.status), errorBody(error.status, error.message), error.status === GrpcStatus.UNAVAILABLE ? { 'retry-after': '1' } : {});
    }
  }

  /** gopusher's push over HTTP: the PushRequest as JSON (`appID`, or `app_id` as tormq's /push took it). */
  function push(res: http.ServerResponse, body: unknown): Promise<void> {
    return gopusherCall(res, () => {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new GopusherError(GrpcStatus.INVALID_ARGUMENT, 'body must be a JSON object {"from", "to", "appID", "content"}');
      }
      const fields = body as Record<string, unknown>;
      if (fields.appID !== undefined && fields.app_id !== undefined && fields.appID !== fields.app_id) {
        throw new GopusherError(GrpcStatus.INVALID_ARGUMENT, 'appID and app_id differ (give one)');
      }
      return gopusher.push({ from: fields.from, to: fields.to, appID: fields.appID ?? fields.app_id, content: fields.content });
    }, INT64_FIELDS.PushReply);
  }

  /** gopusher's presence routes: GET /system, /isOnline?cardID=C, /group?cardID=C (`card_id` too). */
  function presenceRoute(res: http.ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const cardID = query.get('cardID') ?? query.get('card_id') ?? '';
    if (path === '/system') return gopusherCall(res, () => ({ ...gopusher.system() }), INT64_FIELDS.SystemReply);
    if (path === '/isOnline') return gopusherCall(res, () => gopusher.isOnline(cardID), INT64_FIELDS.IsOnlineReply);
    return gopusherCall(res, () => gopusher.group(cardID), INT64_FIELDS.GroupReply);
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
    const done = route === 'POST' ? readJson(req, config.maxBodyBytes).then((body) => {
      if (!body.ok) {
        // /push answers in grpc-gateway's shape, with gRPC's code for the condition.
        reply(res, body.status, path === '/push' ? errorBody(body.status === 413 ? GrpcStatus.RESOURCE_EXHAUSTED : GrpcStatus.INVALID_ARGUMENT, body.error) : { error: body.error });
        return;
      }
      if (path === '/push') return push(res, body.value);
      return publishAll(res, parsePublishRequest(body.value, config.maxMessagesPerRequest, config.maxDataDepth));
    }) : path === '/ready' ? ready(res, query) : presenceRoute(res, path, query);
    done.catch((error: Error) => {
      log?.error({ err: error }, 'http ingress request failed');
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
    });
  };
  const tls = config.tlsCert === '' ? null : readTlsFiles(config.tlsCert, config.tlsKey);
  // Publishers post at most --max-body-bytes over a data-centre network: 30 s is plenty.
  const server: http.Server = tls === null ? http.createServer(HTTP_REQUEST_TIMEOUTS, onRequest) : https.createServer({ ...tls, ...HTTP_REQUEST_TIMEOUTS }, onRequest);
  // Keep-alive clients (most HTTP libraries) must not hold close() open forever.
  server.keepAliveTimeout = 5_000;
  if (budget !== undefined) budgetHttpServer(server, budget);

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

const ROUTES: Record<string, 'GET' | 'POST'> = {
  '/publish': 'POST',
  '/push': 'POST',
  '/ready': 'GET',
  '/system': 'GET',
  '/isOnline': 'GET',
  '/group': 'GET',
};

const EMPTY_BODY = Buffer.alloc(0);

type JsonBody = { ok: true; value: unknown } | { ok: false; status: 400 | 413; error: string };

function readJson(req: http.IncomingMessage, maxBytes: number): Promise<JsonBody> {
  return new Promise((resolve, reject) => {
    // The body's reads go into one buffer that doubles, never past maxBytes (append-growing.ts: a body
    // dripped one byte per TCP segment, 100 KB, grew the MPC's RSS by 23 MB when kept as a list).
    let body: Buffer = EMPTY_BODY;
    let length = 0;
    // A declared length over the limit is refused without buffering a byte of it.
    let size = Number(req.headers['content-length']) > maxBytes ? maxBytes + 1 : 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Over the limit the rest is read and discarded (memory stays bounded) so the 413 reaches a
      // client still sending, instead of a reset on unread data.
      if (size > maxBytes) {
        body = EMPTY_BODY;
        length = 0;
        return;
      }
      body = appendGrowing(body, length, chunk, maxBytes, 16 * 1024);
      length += chunk.length;
    });
    req.once('error', reject);
    req.once('end', () => {
      if (size > maxBytes) {
        resolve({ ok: false, status: 413, error: `body is larger than ${maxBytes} bytes` });
        return;
      }
      try {
        resolve({ ok: true, value: JSON.parse(body.toString('utf8', 0, length)) });
      } catch {
        resolve({ ok: false, status: 400, error: 'body is not valid JSON' });
      }
    });
  });
}
