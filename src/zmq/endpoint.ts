/** ZeroMQ endpoints as tormq builds them, and binding with a clear error. */
import { ErrorCodes, TormqError } from '../errors.js';

/** `tcp://host:port`, with an IPv6 host bracketed; port 0 becomes `*` (any free port) when binding. */
export function tcpEndpoint(host: string, port: number): string {
  return `tcp://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port === 0 ? '*' : port}`;
}

/** The port of a bound or configured endpoint (`tcp://127.0.0.1:5559` → 5559). */
export function portOf(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
}

/** Binds `socket` to `tcpEndpoint(host, port)`; a failure is a TormqError naming the role and address. */
export async function bindOrFail(socket: { bind(address: string): Promise<void> }, host: string, port: number, role: string): Promise<void> {
  const address = tcpEndpoint(host, port);
  try {
    await socket.bind(address);
  } catch (error) {
    throw bindFailure(role, address, error);
  }
}

/** The error for a port that could not be bound (by libzmq or by a `net` server). */
export function bindFailure(role: string, address: string, error: unknown): TormqError {
  const reason = (error as { code?: string }).code === 'EADDRINUSE' ? 'address already in use' : (error as Error).message;
  return new TormqError(ErrorCodes.BIND_FAILED, `cannot bind the ${role} port ${address}: ${reason}`, { cause: error });
}
