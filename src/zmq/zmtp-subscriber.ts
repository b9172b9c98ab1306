/**
 * The MPC's publisher port read without libzmq: a ZMTP 3.0 SUB endpoint (rfc.zeromq.org/spec/23, NULL
 * security) on a plain `net` server. Publishers (pyzmq, zeromq.js, any libzmq PUB) see a ZeroMQ SUB
 * that subscribes to everything.
 *
 * Why: through zeromq.js every message costs the MPC a hop through libzmq's I/O thread, a wake-up of
 * the main thread and two system calls for readiness (`strace -c`, `perf` on the MPC at 10k msgs/s:
 * ≈ 23 µs of main thread and 8 µs of I/O thread per message). Here one `data` event hands over
 * everything one TCP read brought, parsed in place.
 *
 * With CURVE the MPC keeps zeromq.js's Subscriber (this reader speaks NULL only): a CURVE publisher
 * reaching a plain MPC is refused at the greeting, as libzmq does.
 *
 * Bounded (zmtp-peer.ts): a frame over `maxFrameBytes` is skipped as it streams past (its message is
 * reported `oversized`, its bytes never held); parts past the second are skipped too (`bad_frames`: a
 * tormq message is exactly [root, body]); protocol breaks and slow handshakes close the connection.
 */
import net from 'node:net';
import type { ConnectionBudget } from '../descriptors.js';
import { keepAlive, listenOn, ZmtpPeer, type UnreadReason, type ZmtpHeartbeat } from './zmtp-peer.js';

export type { UnreadReason } from './zmtp-peer.js';

/** A message frame of one byte, 0x01: subscribe to every topic (ZMTP 3.0 subscriptions are messages). */
const SUBSCRIBE_ALL = Buffer.from([0, 1, 1]);

export interface ZmtpSubscriberHandlers {
  /** A whole message (every part at most `maxFrameBytes`, at most `maxParts` parts): views of the read buffer (see zmtp-peer.ts: keep copies). */
  message(frames: Buffer[]): void;
  /** A message that was skipped rather than read: too many parts, or a part over `maxFrameBytes`. */
  unread(reason: UnreadReason, bytes: number): void;
  /** Everything one read brought has been handed over (the MPC sends its batches now). */
  dry(): void;
  /** A connection closed because it is not a ZMTP 3 PUB with NULL security, or broke the protocol. */
  refused(address: string, why: string): void;
  /** A publisher went quiet past the TTL its PINGs asked for, or left our PINGs unanswered (`probe`): its connection was closed. */
  silent(address: string, ms: number): void;
}

export interface ZmtpSubscriberOptions {
  readonly maxFrameBytes: number;
  /** Parts kept per message; a message with more is skipped (`bad_frames`). */
  readonly maxParts: number;
  /** Connections past this port's budget are closed as they are accepted (src/descriptors.ts). */
  readonly budget?: ConnectionBudget;
  /** Pings publishers that do not ping (zmtp-peer.ts `probe`). */
  readonly probe?: ZmtpHeartbeat | null;
}

/** A bound ZMTP SUB endpoint; `close` ends it and every connection. */
export class ZmtpSubscriber {
  readonly connections = new Set<net.Socket>();
  private readonly server: net.Server;

  constructor(options: ZmtpSubscriberOptions, handlers: ZmtpSubscriberHandlers) {
    this.server = net.createServer((socket) => {
      if (options.budget !== undefined && !options.budget.admit(socket)) return;
      const address = `${socket.remoteAddress}:${socket.remotePort}`;
      keepAlive(socket);
      const peer = new ZmtpPeer(socket, { socketType: 'SUB', peerTypes: ['PUB', 'XPUB'], maxFrameBytes: options.maxFrameBytes, maxParts: options.maxParts, probe: options.probe }, {
        ready: () => {
          options.budget?.established(socket);
          socket.write(SUBSCRIBE_ALL);
        },
        message: handlers.message,
        unread: handlers.unread,
        refused: (why) => handlers.refused(address, why),
        silent: (ms) => handlers.silent(address, ms),
      });
      this.connections.add(socket);
      socket.on('data', (chunk: Buffer) => {
        peer.data(chunk);
        handlers.dry();
      });
      socket.on('error', () => socket.destroy());
      socket.on('close', () => {
        peer.close();
        this.connections.delete(socket);
      });
    });
  }

  /** Listens on host:port (0: any free port); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
