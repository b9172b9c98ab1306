/**
 * Stand-ins for one connection's ws and raw socket, for unit tests of the worker's writer, delivery
 * and session (the end-to-end tests use real sockets). They record what the code under test did.
 */
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';

export class FakeSocket extends EventEmitter {
  /** Each write, decoded as the text payloads of the WebSocket frames it carries. */
  readonly writes: string[][] = [];
  writableLength = 0;
  corks = 0;
  uncorks = 0;

  /** Each write's buffer as given (to tell a buffer shared by several connections from copies). */
  readonly chunks: Buffer[] = [];

  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    this.writes.push(framesOf(chunk));
    return true;
  }

  cork(): void {
    this.corks++;
  }

  uncork(): void {
    this.uncorks++;
  }
}

export class FakeWs {
  readyState = 1;
  readonly _socket = new FakeSocket();
  /** Control replies sent through ws (acks, errors, pongs). */
  readonly sent: string[] = [];
  readonly closes: Array<{ code: number; reason: string }> = [];
  terminated = false;

  send(text: string): void {
    this.sent.push(text);
  }

  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
    this.readyState = 2;
  }

  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
  }

  get socket(): FakeSocket {
    return this._socket;
  }

  asWebSocket(): WebSocket {
    return this as unknown as WebSocket;
  }

  /** Every pushed message, in order, across writes. */
  pushed(): string[] {
    return this._socket.writes.flat();
  }
}

/** Splits a buffer of unmasked server text frames into their payloads. */
export function framesOf(chunk: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < chunk.length) {
    if (chunk[i] !== 0x81) throw new Error(`not a final text frame at byte ${i}`);
    let length = chunk[i + 1]!;
    let header = 2;
    if (length === 126) {
      length = chunk.readUInt16BE(i + 2);
      header = 4;
    } else if (length === 127) {
      length = chunk.readUInt32BE(i + 6);
      header = 10;
    }
    out.push(chunk.toString('utf8', i + header, i + header + length));
    i += header + length;
  }
  return out;
}
