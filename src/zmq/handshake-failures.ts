/**
 * Handshake failures a server socket sees (its `events` stream), for the MPC's logs: a plain
 * (non-CURVE) peer refused by a CURVE socket (ERR_ZMTP_MECHANISM_MISMATCH), or a CURVE peer whose
 * server key is not this socket's (ERR_ZMTP_CRYPTOGRAPHIC). Refusals by the allowlist come from the
 * ZAP handler instead (zap-handler.ts). libzmq names only the bound endpoint, not the peer.
 *
 * Both sides detect a mechanism mismatch; whichever closes first leaves the other a bare EPIPE
 * (`handshake:error:other`), measured about half the time on loopback. Peers reconnect, so a plain
 * peer's mismatch is reported within a few attempts; the EPIPEs are reported too.
 */
import type { Socket } from 'zeromq';

export interface HandshakeFailure {
  /** The bound endpoint that refused the peer. */
  readonly endpoint: string;
  /** ZeroMQ's protocol error code, e.g. ERR_ZMTP_MECHANISM_MISMATCH. */
  readonly code: string;
}

/** Calls `onFailure` for each protocol-level handshake failure until the socket closes. */
export function watchHandshakeFailures(socket: Socket, onFailure: (failure: HandshakeFailure) => void): void {
  void (async () => {
    try {
      for await (const event of socket.events) {
        if (event.type === 'handshake:error:protocol' || event.type === 'handshake:error:other') onFailure({ endpoint: event.address, code: event.error.code });
      }
    } catch {
      // The observer ends with the socket.
    }
  })();
}
