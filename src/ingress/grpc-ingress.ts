/**
 * gopusher's gRPC service on the MPC (`tormq-mpc --grpc PORT`): `service Rpc { Push, System,
 * IsOnline, Group }` of proto/rpc.proto (package `proto`, loaded at run time with
 * @grpc/proto-loader), so clients generated from gopusher's proto, in any language, work unchanged.
 * Like the HTTP ingress it is a publisher client of the MPC (pushes go through its own
 * {@link Publisher} into the MPC's publisher port); IsOnline, Group and System read the MPC's
 * presence table (mpc/presence.ts) in process.
 *
 * With a token, every call needs the metadata `authorization: Bearer <token>` (UNAUTHENTICATED
 * otherwise). A bad request fails with INVALID_ARGUMENT and a message saying what is wrong, and
 * pushes nothing; a full publisher queue with UNAVAILABLE (retry).
 *
 * @example
 * ```ts
 * const grpc = await startGrpcIngress({ port: 9002, publisherPort: mpc.publisherPort, presence: mpc.presence });
 * // any gopusher client: grpc.Dial("127.0.0.1:9002") … NewRpcClient(conn).Push(…)
 * await grpc.close();
 * ```
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ConnectionBudget } from '../descriptors.js';
import { listenOrFail } from '../listen.js';
import type { Logger } from '../log.js';
import { isLoopbackHost } from '../loopback.js';
import type { PresenceView } from '../mpc/presence.js';
import { boolean, defineOptions, int, nonEmptyString, satisfies, type InputOf } from '../options/options.js';
import { Publisher } from '../sdk/publisher.js';
import { isCurveKey, type CurveClientKeys } from '../zmq/curve.js';
import { GopusherError, GopusherService, GrpcStatus } from '../gopusher/service.js';
import { bearerMatches } from './bearer.js';
import { guardDataFrames, UnfinishedBytes, type CutReason } from './http2-data-guard.js';

/** Calls one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); more are refused (REFUSED_STREAM, which clients retry). */
const MAX_CONCURRENT_CALLS = 100;
/** Bytes a Push request may carry beyond its message and card ids (field tags, from, appID). */
const REQUEST_SLACK_BYTES = 64 * 1024;
/**
 * Every connection is asked to go (GOAWAY) after this long, ±10 %, and closed after the grace: a
 * client that sends one whole call and then keeps another open without finishing it holds its slot of
 * the port's cap no longer (gRPC clients reconnect by themselves; no call of this service runs long).
 */
const MAX_CONNECTION_AGE_MS = 10 * 60_000;
const MAX_CONNECTION_AGE_GRACE_MS = 30_000;

/** gopusher's proto, shipped with the package (package.json "files"). */
export const PROTO_PATH = fileURLToPath(new URL('../../../proto/rpc.proto', import.meta.url));

export const GRPC_INGRESS_OPTIONS = defineOptions('a gRPC ingress', {
  host: { default: '127.0.0.1', check: nonEmptyString, help: 'address to bind' },
  port: { default: 0, check: int(0, 65535), help: 'port to bind; 0 picks a free one' },
  publisherHost: { default: '127.0.0.1', check: nonEmptyString, help: "host of the MPC's publisher port" },
  publisherPort: { default: 5559, check: int(1, 65535), help: "the MPC's publisher port" },
  token: {
    default: undefined as string | undefined,
    check: satisfies<string | undefined>('a non-empty string', (v) => v === undefined || (typeof v === 'string' && v.length > 0)),
    secret: true,
    help: 'when set, every call needs the metadata `authorization: Bearer <token>` (UNAUTHENTICATED otherwise)',
  },
  insecure: { default: false, check: boolean, help: 'allow calls without a token on a non-loopback address' },
  idleMs: { default: 300_000, check: int(1), help: 'a connection with no call open this long is closed (GOAWAY; clients reconnect for their next call)' },
  maxUnfinishedBytes: {
    default: 256 * 1024 * 1024,
    check: int(1),
    help: 'request bytes of calls not yet whole the port holds, all connections together; past it the connection holding the most is cut',
  },
  maxCardsPerPush: { default: 1000, check: int(1), help: 'most card ids one push may name' },
  maxMessageBytes: { default: 1024 * 1024, check: int(1), help: "the MPC's --max-message-bytes: a push whose message would be larger is refused" },
  maxTopicLength: { default: 256, check: int(1, 65535), help: "the MPC's --max-topic-length" },
  curve: {
    default: undefined as CurveClientKeys | undefined,
    check: satisfies<CurveClientKeys | undefined>(
      '{ serverKey, publicKey, secretKey }, each a 40-character Z85 key',
      (v) => v === undefined || (typeof v === 'object' && v !== null && [(v as CurveClientKeys).serverKey, (v as CurveClientKeys).publicKey, (v as CurveClientKeys).secretKey].every(isCurveKey)),
    ),
    secret: true,
    help: "CURVE keys for the link to the MPC's publisher port, when the MPC runs with CURVE",
  },
}, (c, fail, name) => {
  if (c.token === undefined && !c.insecure && !isLoopbackHost(c.host)) {
    fail('token', `set when ${name('host')} is ${c.host} (not loopback): anyone who reaches the port could push; or set ${name('insecure')}`, null);
  }
});

export type GrpcIngressOptions = InputOf<typeof GRPC_INGRESS_OPTIONS.specs> & {
  /** The MPC's presence table (IsOnline, Group, System); without it those calls are UNIMPLEMENTED. */
  presence?: PresenceView;
  log?: Logger;
  /** Caps the port's connections (the MPC's share for it, src/descriptors.ts); none without it. */
  budget?: ConnectionBudget | undefined;
  /** Told of each connection cut (http2-data-guard.ts): a message in too many DATA frames, or the most of the port's unfinished bytes past their limit. */
  onCut?: (address: string, reason: CutReason) => void;
};

export interface GrpcIngress {
  readonly port: number;
  /**
   * `fragmentedCuts`: connections cut for sending messages in too many DATA frames; `unfinishedBytes`:
   * request bytes of calls not yet whole, `unfinishedCuts`: connections cut past their limit (http2-data-guard.ts).
   */
  readonly stats: () => { pushed: number; refused: number; unauthenticated: number; fragmentedCuts: number; unfinishedBytes: number; unfinishedCuts: number };
  close(): Promise<void>;
}

/** Loads proto/rpc.proto: the `proto.Rpc` service definition. */
export function loadRpcService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { proto: { Rpc: grpc.ServiceClientConstructor } };
  return loaded.proto.Rpc.service;
}

/** Starts the gRPC server; resolves once it listens. */
export async function startGrpcIngress(options: GrpcIngressOptions = {}): Promise<GrpcIngress> {
  const { presence, log, budget, onCut, ...rest } = options;
  const config = GRPC_INGRESS_OPTIONS.validate(rest);
  const publisher = new Publisher(config.publisherHost, config.publisherPort, {
    // Room for a few full pushes in flight; beyond it a push fails with UNAVAILABLE instead of queueing.
    maxQueue: config.maxCardsPerPush * 16,
    ...(config.curve === undefined ? {} : { curve: config.curve }),
  });
  const service = new GopusherService({
    send: (root, body) => publisher.sendRaw(root, body),
    presence: presence ?? null,
    limits: { maxCardsPerPush: config.maxCardsPerPush, maxMessageBytes: config.maxMessageBytes, maxTopicLength: config.maxTopicLength },
  });
  let unauthenticated = 0;
  const token = config.token;
  /**
   * The token is checked on a call's metadata, before its message: grpc-js buffers a message whole
   * before the handler runs, and a client without the token made the MPC hold what it sent (+143 MB for
   * 137 MB sent on one connection in 45 s, up to 4 MB × 100 calls per connection).
   */
  const authenticate: grpc.ServerInterceptor = (_method, call) => new grpc.ServerInterceptingCall(call, {
    start: (next) => next(new grpc.ServerListenerBuilder().withOnReceiveMetadata((metadata, pass) => {
      const header = metadata.get('authorization')[0];
      if (token === undefined || bearerMatches(typeof header === 'string' ? header : undefined, token)) {
        pass(metadata);
        return;
      }
      unauthenticated++;
      call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'missing or wrong bearer token (metadata "authorization: Bearer <token>")' });
    }).build()),
  });

  /** Wraps one method: the service call, its errors as gRPC statuses. */
  const unary = <Req, Res>(method: (request: Req) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> => (call, callback) => {
    Promise.resolve()
      .then(() => method(call.request))
      .then(
        (reply) => callback(null, reply),
        (error: unknown) => {
          if (error instanceof GopusherError) {
            if (error.status !== GrpcStatus.INVALID_ARGUMENT) log?.warn({ status: error.status, err: error.message }, 'gRPC call failed');
            callback({ code: error.status, details: error.message });
          } else {
            log?.error({ err: error }, 'gRPC call failed');
            callback({ code: grpc.status.INTERNAL, details: 'internal error' });
          }
        },
      );
  };

  // Calls are unary: a client needs few at once. Unbounded, one connection held 2,000 calls open, each
  // with its first bytes (≈ 10 KB of the MPC's memory a call).
  const server = new grpc.Server({
    interceptors: [authenticate],
    'grpc.max_concurrent_streams': MAX_CONCURRENT_CALLS,
    // The largest request a push can be: its message, its card ids and room for the rest. grpc-js's
    // default, 4 MB, let one call make the MPC hold 4 MB for a push it would refuse anyway.
    'grpc.max_receive_message_length': config.maxMessageBytes + config.maxCardsPerPush * (config.maxTopicLength + 8) + REQUEST_SLACK_BYTES,
    // grpc-js's defaults are "never": a connection that made one call could idle in its slot for good.
    'grpc.max_connection_idle_ms': config.idleMs,
    'grpc.max_connection_age_ms': MAX_CONNECTION_AGE_MS,
    'grpc.max_connection_age_grace_ms': MAX_CONNECTION_AGE_GRACE_MS,
  });
  server.addService(loadRpcService(), {
    Push: unary((request: { from: string; to: string[]; appID: string; content: string }) => service.push(request)),
    System: unary(() => service.system()),
    IsOnline: unary((request: { cardID: string }) => service.isOnline(request.cardID)),
    Group: unary((request: { cardID: string }) => service.group(request.cardID)),
  });
  // The port is ours, its connections handed to grpc-js: so that they can be counted against the
  // budget at accept and their DATA frames read before grpc-js holds them, neither of which grpc-js's
  // own bind offers.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  let fragmentedCuts = 0;
  const unfinished = new UnfinishedBytes(config.maxUnfinishedBytes);
  const listener = net.createServer((socket) => {
    if (budget !== undefined && !budget.admit(socket)) return;
    const address = `${socket.remoteAddress}:${socket.remotePort}`;
    injector.injectConnection(
      guardDataFrames(
        socket,
        (reason) => {
          if (reason === 'fragmented') fragmentedCuts++;
          onCut?.(address, reason);
        },
        // A connection that has sent a whole call is no longer the first to go at the cap (one that
        // starts a call and sends its message slowly still is).
        () => budget?.established(socket),
        unfinished,
      ),
    );
  });
  let port: number;
  try {
    port = await listenOrFail(listener, config.host, config.port, 'gRPC');
  } catch (error) {
    injector.destroy();
    await publisher.close();
    throw error;
  }

  let closing: Promise<void> | null = null;
  return {
    port,
    stats: () => ({ pushed: service.pushed, refused: service.refused, unauthenticated, fragmentedCuts, unfinishedBytes: unfinished.held, unfinishedCuts: unfinished.cuts }),
    close() {
      closing ??= (async () => {
        listener.close();
        await new Promise<void>((resolve) => {
          // Calls in flight get a moment to finish; then the rest are cut.
          const timer = setTimeout(() => server.forceShutdown(), 1000);
          timer.unref();
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        await publisher.close();
      })();
      return closing;
    },
  };
}
