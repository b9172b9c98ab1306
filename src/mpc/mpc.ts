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

export interface MpcOptions {
  /** Address to bind. Default 127.0.0.1; use 0.0.0.0 to accept remote publishers and gateways. */
  host?: string;
  /** Port publishers connect to (XSUB). Default 5559; 0 picks a free port. */
  publisherPort?: number;
  /** Port gateways connect to (XPUB). Default 5560; 0 picks a free port. */
  gatewayPort?: number;
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

export const MPC_DEFAULTS = Object.freeze({ host: '127.0.0.1', publisherPort: 5559, gatewayPort: 5560 });

export async function startMpc(options: MpcOptions = {}): Promise<Mpc> {
  const host = options.host ?? MPC_DEFAULTS.host;
  const publisherPort = options.publisherPort ?? MPC_DEFAULTS.publisherPort;
  const gatewayPort = options.gatewayPort ?? MPC_DEFAULTS.gatewayPort;
  if (typeof host !== 'string' || host.length === 0) throw new TypeError('options.host must be a non-empty string');
  for (const [name, port] of [['publisherPort', publisherPort], ['gatewayPort', gatewayPort]] as const) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`options.${name} must be an integer from 0 to 65535, got ${port}`);
  }
  const frontEnd = new XSubscriber({ linger: 0 });
  const backEnd = new XPublisher({ linger: 0 });
  const proxy = new Proxy(frontEnd, backEnd);
  try {
    await bind(frontEnd, host, publisherPort, 'publisher');
    await bind(backEnd, host, gatewayPort, 'gateway');
  } catch (error) {
    frontEnd.close();
    backEnd.close();
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
