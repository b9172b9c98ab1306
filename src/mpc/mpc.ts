/**
 * The MPC: a ZeroMQ XSUB (publishers connect here) proxied to an XPUB (gateways connect here), so
 * messages flow down and gateways' subscriptions flow up to the publishers, which then send only what
 * some gateway wants.
 *
 * @example
 * ```ts
 * const mpc = await startMpc({ publisherPort: 5559, gatewayPort: 5560 });
 * // ... later
 * await mpc.close();
 * ```
 */
import { Proxy, XPublisher, XSubscriber } from 'zeromq';
import { defineOptions, int, nonEmptyString, satisfies, type ConfigOf, type InputOf } from '../options/options.js';
import { assertCurveAvailable, isCurveKey } from '../zmq/curve.js';
import { bindOrFail, portOf } from '../zmq/endpoint.js';
import { registerZapDomain } from '../zmq/zap-handler.js';
import { watchHandshakeFailures, type HandshakeFailure } from '../zmq/handshake-failures.js';

export interface MpcCurveOptions {
  /** The MPC's secret key (Z85); publishers and gateways need its public half as `serverKey`. */
  secretKey: string;
  /** Public keys (Z85) allowed to publish; omitted = any client that knows the server key. */
  allowedPublishers?: readonly string[];
  /** Public keys (Z85) allowed to subscribe (gateways); omitted = any client that knows the server key. */
  allowedGateways?: readonly string[];
  /** Called for each refused handshake (a key not on the list, or a non-CURVE peer cannot even get here). */
  onDenied?(denial: { role: 'publisher' | 'gateway'; publicKey: string | null; address: string }): void;
  /** Called when a handshake fails before any key is checked: a plain (non-CURVE) peer, or a wrong server key. */
  onHandshakeFailed?(failure: HandshakeFailure & { role: 'publisher' | 'gateway' }): void;
}

const isKeyList = (keys: unknown) => keys === undefined || (Array.isArray(keys) && keys.every(isCurveKey));

export const MPC_OPTIONS = defineOptions('an MPC', {
  host: { default: '127.0.0.1', check: nonEmptyString, help: 'address to bind; 0.0.0.0 for remote publishers and gateways' },
  publisherPort: { default: 5559, check: int(0, 65535), help: 'port publishers connect to (XSUB); 0 picks a free port' },
  gatewayPort: { default: 5560, check: int(0, 65535), help: 'port gateways connect to (XPUB); 0 picks a free port' },
  /**
   * Messages the MPC buffers per peer before ZeroMQ drops (pub/sub never blocks): the XSUB's receive
   * and the XPUB's send high-water mark. ZeroMQ's default of 1000 lost messages in a 5000-message burst
   * whenever a gateway paused briefly (test/e2e/python-clients); memory bound: this many messages per
   * connected gateway.
   */
  highWaterMark: { default: 100_000, check: int(1), help: 'messages buffered per peer before ZeroMQ drops' },
  curve: {
    default: undefined as MpcCurveOptions | undefined,
    check: satisfies<MpcCurveOptions | undefined>(
      '{ secretKey, allowedPublishers?, allowedGateways? } with 40-character Z85 keys',
      (v) => v === undefined || (typeof v === 'object' && v !== null && isCurveKey((v as MpcCurveOptions).secretKey) &&
        isKeyList((v as MpcCurveOptions).allowedPublishers) && isKeyList((v as MpcCurveOptions).allowedGateways)),
    ),
    secret: true,
    help: 'CURVE on both ports: encrypted links, and with allowlists, only known keys may connect',
  },
});

export type MpcOptions = InputOf<typeof MPC_OPTIONS.specs>;
export type MpcConfig = ConfigOf<typeof MPC_OPTIONS.specs>;
export const MPC_DEFAULTS = MPC_OPTIONS.defaults;

export interface Mpc {
  /** Bound endpoints, e.g. `tcp://127.0.0.1:5559` (with the real port when 0 was asked). */
  readonly publisherEndpoint: string;
  readonly gatewayEndpoint: string;
  readonly publisherPort: number;
  readonly gatewayPort: number;
  /** Resolves when the proxy stops (after `close`). */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

export async function startMpc(options: MpcOptions = {}): Promise<Mpc> {
  const config = MPC_OPTIONS.validate(options);
  const security = config.curve === undefined ? null : await curveServerOptions(config.curve);
  const frontEnd = new XSubscriber({ linger: 0, receiveHighWaterMark: config.highWaterMark, ...security?.publisher });
  const backEnd = new XPublisher({ linger: 0, sendHighWaterMark: config.highWaterMark, ...security?.gateway });
  const proxy = new Proxy(frontEnd, backEnd);
  try {
    await bindOrFail(frontEnd, config.host, config.publisherPort, 'publisher');
    await bindOrFail(backEnd, config.host, config.gatewayPort, 'gateway');
  } catch (error) {
    frontEnd.close();
    backEnd.close();
    security?.release();
    throw error;
  }
  if (config.curve?.onHandshakeFailed !== undefined) {
    const report = config.curve.onHandshakeFailed;
    watchHandshakeFailures(frontEnd, (failure) => report({ role: 'publisher', ...failure }));
    watchHandshakeFailures(backEnd, (failure) => report({ role: 'gateway', ...failure }));
  }
  const done = proxy.run();
  const publisherEndpoint = frontEnd.lastEndpoint!;
  const gatewayEndpoint = backEnd.lastEndpoint!;
  let closing: Promise<void> | null = null;
  return {
    publisherEndpoint,
    gatewayEndpoint,
    publisherPort: portOf(publisherEndpoint),
    gatewayPort: portOf(gatewayEndpoint),
    done,
    close() {
      closing ??= (async () => {
        proxy.terminate();
        await done;
        frontEnd.close();
        backEnd.close();
        security?.release();
      })();
      return closing;
    },
  };
}

async function curveServerOptions(curve: MpcCurveOptions) {
  assertCurveAvailable();
  const domain = async (role: 'publisher' | 'gateway', keys: readonly string[] | undefined) =>
    registerZapDomain(`${role}s`, {
      allowed: keys === undefined ? null : new Set(keys),
      onDenied: (d) => curve.onDenied?.({ role, publicKey: d.publicKey, address: d.address }),
    });
  const publishers = await domain('publisher', curve.allowedPublishers);
  const gateways = await domain('gateway', curve.allowedGateways);
  const server = { curveServer: true, curveSecretKey: curve.secretKey };
  return {
    publisher: { ...server, zapDomain: publishers.name },
    gateway: { ...server, zapDomain: gateways.name },
    release() {
      publishers.release();
      gateways.release();
    },
  };
}
