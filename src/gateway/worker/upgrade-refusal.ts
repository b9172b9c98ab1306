import type { Duplex } from 'node:stream';
import { WorkerStat } from '../shared/counters.js';

/**
 * Ends an upgrade request with a bare HTTP status (no body, no detail) and counts it. The socket is
 * destroyed once the response is flushed, as ws's own abortHandshake does: `end()` alone leaves it
 * half-open, holding a connection slot, until a client that never closes its side goes away.
 */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, stats: Float64Array, headers = ''): void {
  stats[WorkerStat.connectionsRejected]++;
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\n${headers}Content-Length: 0\r\n\r\n`);
}
