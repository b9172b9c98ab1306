/**
 * Each worker binds its own listening socket on the shared port with SO_REUSEPORT, so the kernel
 * spreads connections and no client byte passes through the main thread.
 * - Node >= 22.12 / 23.1: `server.listen({ reusePort: true })`.
 * - Node 20: no such option (a second bind is EADDRINUSE); `node-unix-socket` creates a reuseport fd
 *   per worker. Never share one fd among workers: when its owner exits, the port dies for all.
 */
import type { Server } from 'node:net';
import { createRequire } from 'node:module';

export function nodeHasReusePort(version = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  return major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** Binds `server` to `host:port` in this thread with SO_REUSEPORT; resolves with the bound port. */
export function listenReusePort(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    const onListening = () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    };
    if (nodeHasReusePort()) {
      server.listen({ port, host, reusePort: true } as Parameters<Server['listen']>[0], onListening);
    } else {
      let fd: number;
      try {
        // Loaded lazily: only Node < 22.12 needs the native helper.
        const { createReuseportFd } = createRequire(import.meta.url)('node-unix-socket') as {
          createReuseportFd(port: number, host: string): number;
        };
        fd = createReuseportFd(port, host);
      } catch (error) {
        server.off('error', onError);
        reject(error);
        return;
      }
      server.listen({ fd }, onListening);
    }
  });
}
