/**
 * The bench's publisher for nats-server: NATS's text protocol over plain TCP (what a backend service
 * would use), with the same body bytes as the tormq publisher (`encodeBody`), the subject being the
 * topic. Messages queued within one event-loop turn leave in one `write`, as the tormq SDK's do in
 * libzmq's I/O thread, so neither side pays a syscall per message at the publisher.
 */
import { connect, type Socket } from 'node:net';
import { encodeBody } from '../../src/sdk/publisher.js';

const CRLF = '\r\n';

export class NatsPublisher {
  private readonly socket: Socket;
  private queued: string[] = [];
  private scheduled = false;
  private readonly pongs: Array<() => void> = [];
  private pending = '';
  /** `-ERR` lines the server sent (a bench run reports them). */
  readonly errors: string[] = [];

  constructor(host: string, port: number) {
    this.socket = connect({ host, port, noDelay: true });
    this.socket.setEncoding('latin1');
    this.socket.on('error', (error) => this.errors.push(String(error)));
    this.socket.on('data', (chunk: string) => this.read(chunk));
    this.socket.write(`CONNECT {"verbose":false,"pedantic":false,"name":"tormq-bench"}${CRLF}`);
  }

  /** Resolves once the server answered a PING (it has processed everything sent before). */
  ready(timeoutMs = 15_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats publisher: no PONG within ${timeoutMs} ms`)), timeoutMs);
      this.pongs.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.write(`PING${CRLF}`);
    });
  }

  send(topic: string, data: unknown): void {
    const body = encodeBody(topic, data);
    this.queued.push(`PUB ${topic} ${Buffer.byteLength(body)}${CRLF}${body}${CRLF}`);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  async close(): Promise<void> {
    this.flush();
    await new Promise<void>((resolve) => this.socket.end(resolve));
    this.socket.destroy();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.queued.length === 0) return;
    this.socket.write(this.queued.join(''));
    this.queued = [];
  }

  /** Control lines only (a publisher subscribes to nothing): PING, PONG, INFO, +OK, -ERR. */
  private read(chunk: string): void {
    this.pending += chunk;
    let end: number;
    while ((end = this.pending.indexOf(CRLF)) !== -1) {
      const line = this.pending.slice(0, end);
      this.pending = this.pending.slice(end + 2);
      if (line === 'PING') this.socket.write(`PONG${CRLF}`);
      else if (line === 'PONG') this.pongs.shift()?.();
      else if (line.startsWith('-ERR')) this.errors.push(line);
    }
  }
}
