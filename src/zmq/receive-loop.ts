/**
 * Reads a zeromq.js socket until it is closed, with the fewest native calls per message.
 *
 * zeromq.js's `receive()` (and its async iterator) first asks libzmq whether a message is there
 * (`ZMQ_EVENTS`), and libzmq answers that with a poll() and a getpid() system call; so does the
 * `readable` getter. Measured with `strace -c` on the MPC at 40k msgs/s: one poll + one getpid per
 * message, and in a CPU profile the two calls took over half of the MPC's main thread. With
 * `receiveTimeout = 0` zeromq.js skips the check and reads straight away (EAGAIN when nothing is
 * there), so this loop drains bursts that way and waits with an ordinary (polling) receive only
 * when the socket has run dry, which it learns from the EAGAIN. The EAGAIN costs ~11 µs (an exception
 * and a rejection), `readable` ~3.5 µs: so after each wait one `readable` check decides whether a
 * burst follows (a lone message, common at moderate rates, then costs no exception), and a burst is
 * drained without any check. Checking `readable` before every read measured worse (`npm run
 * bench:mpc`: 34 vs 18–23 µs per message at 10k msgs/s, 24–31 vs 13–14 at 40k).
 *
 * `dry` runs each time the socket has run dry (or after MAX_BURST messages): the moment to send what
 * was gathered from the burst (mpc/link-batcher.ts). A drain yields to the event loop every
 * MAX_BURST messages, so a socket that never runs dry cannot starve timers and other sockets.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';

/** The part of a zeromq.js socket the loop uses. */
export interface ReceivingSocket {
  receive(): Promise<Buffer[]>;
  receiveTimeout: number;
  readonly readable: boolean;
  readonly closed: boolean;
}

export interface ReceiveHandlers {
  message(frames: Buffer[]): void;
  /** The socket has nothing more to read now (or a long burst paused): may wait, e.g. to coalesce. */
  dry?(): void | Promise<void>;
}

const MAX_BURST = 1024;

export async function receiveLoop(socket: ReceivingSocket, handlers: ReceiveHandlers): Promise<void> {
  try {
    while (!socket.closed) {
      socket.receiveTimeout = -1; // wait for the next message
      handlers.message(await socket.receive());
      // One readiness check, not an EAGAIN, tells a lone message (the common case at moderate rates:
      // ~3.5 µs against ~11) from the start of a burst, which is then drained without checks.
      if (socket.readable) {
        socket.receiveTimeout = 0;
        for (let n = 1; ; n++) {
          let frames: Buffer[];
          try {
            frames = await socket.receive();
          } catch (error) {
            if ((error as { code?: string }).code === 'EAGAIN') break;
            throw error;
          }
          handlers.message(frames);
          if (n % MAX_BURST === 0) {
            await handlers.dry?.();
            await yieldToLoop();
            if (socket.closed) return;
          }
        }
      }
      await handlers.dry?.();
    }
  } catch (error) {
    if (!socket.closed) throw error;
  }
}
