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
import { ErrorCodes, TormqError } from '../errors.js';
import { assertCurveAvailable, isCurveKey } from '../protocol/curve.js';
import { registerZapDomain } from './zap-handler.js';

export interface MpcOptions {
  /** Address to bind. Default 127.0.0.1; use 0.0.0.0 to accept remote publishers and gateways. */
  host?: string;
  /** Port publishers connect to (XSUB). Default 5559; 0 picks a free port. */
  publisherPort?: number;
  /** Port gateways connect to (XPUB). Default 5560; 0 picks a free port. */
  gatewayPort?: number;
  /**
   * Messages the MPC buffers per peer before ZeroMQ drops (pub/sub never blocks): the XSUB's receive
   * and the XPUB's send high-water mark. ZeroMQ's default of 1000 lost messages in a 5000-message
   * burst whenever a gateway paused briefly (test/e2e/python-clients); default 100000. Memory bound:
   * this many messages per connected gateway.
   */
  highWaterMark?: number;
  /** CURVE on both ports: encrypted links, and with allowlists, only known keys may connect. */
  curve?: MpcCurveOptions;
}

export interface MpcCurveOptions {
  /** The MPC's secret key (Z85); publishers and gateways need its public half as `serverKey`. */
  secretKey: string;
  /** Public keys (Z85) allowed to publish; omitted = any client that knows the server key. */
  allowedPublishers?: readonly string[];
  /** Public keys (Z85) allowed to subscribe (gateways); omitted = any client that knows the server key. */
  allowedGateways?: readonly string[];
  /** Called for each refused handshake (a key not on the list, or a non-CURVE peer cannot even get here). */
  onDenied?(denial: { role: 'publisher' | 'gateway'; publicKey: string | null; address: string }): void;
}

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

export const MPC_DEFAULTS = Object.freeze({ host: '127.0.0.1', publisherPort: 5559, gatewayPort: 5560, highWaterMark: 100_000 });

export async function startMpc(options: MpcOptions = {}): Promise<Mpc> {
  const host = options.host ?? MPC_DEFAULTS.host;
  const publisherPort = options.publisherPort ?? MPC_DEFAULTS.publisherPort;
  const gatewayPort = options.gatewayPort ?? MPC_DEFAULTS.gatewayPort;
  if (typeof host !== 'string' || host.length === 0) throw new TypeError('options.host must be a non-empty string');
  for (const [name, port] of [['publisherPort', publisherPort], ['gatewayPort', gatewayPort]] as const) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`options.${name} must be an integer from 0 to 65535, got ${port}`);
  }
  const highWaterMark = options.highWaterMark ?? MPC_DEFAULTS.highWaterMark;
  if (!Number.isInteger(highWaterMark) || highWaterMark < 1) {
    throw new RangeError(`options.highWaterMark must be a positive integer, got ${highWaterMark}`);
  }
  const security = options.curve === undefined ? null : await curveServerOptions(options.curve);
  const frontEnd = new XSubscriber({ linger: 0, receiveHighWaterMark: highWaterMark, ...security?.publisher });
  const backEnd = new XPublisher({ linger: 0, sendHighWaterMark: highWaterMark, ...security?.gateway });
  const proxy = new Proxy(frontEnd, backEnd);
  try {
    await bind(frontEnd, host, publisherPort, 'publisher');
    await bind(backEnd, host, gatewayPort, 'gateway');
  } catch (error) {
    frontEnd.close();
    backEnd.close();
    security?.release();
    throw error;
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

async function bind(socket: XSubscriber | XPublisher, host: string, port: number, role: string): Promise<void> {
  const address = `tcp://${host.includes(':') ? `[${host}]` : host}:${port === 0 ? '*' : port}`;
  try {
    await socket.bind(address);
  } catch (error) {
    const reason = (error as { code?: string }).code === 'EADDRINUSE' ? 'address already in use' : (error as Error).message;
    throw new TormqError(ErrorCodes.BIND_FAILED, `cannot bind the ${role} port ${address}: ${reason}`, { cause: error });
  }
}

function portOf(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
}

async function curveServerOptions(curve: MpcCurveOptions) {
  assertCurveAvailable();
  if (!isCurveKey(curve.secretKey)) throw new TypeError('options.curve.secretKey must be a 40-character Z85 secret key');
  for (const name of ['allowedPublishers', 'allowedGateways'] as const) {
    const keys = curve[name];
    if (keys !== undefined && !(Array.isArray(keys) && keys.every(isCurveKey))) {
      throw new TypeError(`options.curve.${name} must be a list of 40-character Z85 public keys`);
    }
  }
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
