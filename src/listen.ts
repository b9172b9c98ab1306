/** Binding a Node server (admin HTTP, HTTP ingress, port probes) with a clear error. */
import type { AddressInfo, Server } from 'node:net';
import { ErrorCodes, TormqError } from './errors.js';

/** Listens on `host:port`; resolves with the bound port, or rejects with a TormqError naming the role. */
export function listenOrFail(server: Server, host: string, port: number, role: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'address already in use' : error.message;
      reject(new TormqError(ErrorCodes.BIND_FAILED, `cannot bind the ${role} port ${host}:${port}: ${reason}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
