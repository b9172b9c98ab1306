/**
 * A scripted WebSocket for the client's unit tests: the test plays the gateway (opens, sends frames,
 * closes) and reads what the client sent. Each `new` is recorded, so a reconnect is observable.
 */
import type { WebSocketLike } from '../../src/client/tormq-client.js';

export class FakeWebSocket implements WebSocketLike {
  static readonly instances: FakeWebSocket[] = [];
  private static waiters: Array<() => void> = [];

  readyState = 0;
  protocol = '';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: string[] = [];
  /** What the client passed to close(), if it did. */
  closedByClient: { code?: number; reason?: string } | null = null;
  readonly createdAt = Date.now();

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeWebSocket.instances.push(this);
    for (const wake of FakeWebSocket.waiters.splice(0)) wake();
  }

  static reset(): void {
    FakeWebSocket.instances.length = 0;
  }

  /** Resolves with the n-th socket created (0-based) once it exists. */
  static async nth(n: number, timeoutMs = 10_000): Promise<FakeWebSocket> {
    const deadline = Date.now() + timeoutMs;
    while (FakeWebSocket.instances.length <= n) {
      if (Date.now() > deadline) throw new Error(`no socket #${n} within ${timeoutMs} ms (have ${FakeWebSocket.instances.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        FakeWebSocket.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return FakeWebSocket.instances[n]!;
  }

  /** The gateway accepts the upgrade with `protocol`. */
  accept(protocol = 'tormq.v2'): void {
    this.protocol = protocol;
    this.readyState = 1;
    this.onopen?.({});
  }

  /** The gateway sends a frame (an object is JSON-encoded). */
  push(frame: unknown): void {
    this.onmessage?.({ data: typeof frame === 'string' || frame instanceof Uint8Array ? frame : JSON.stringify(frame) });
  }

  /** The gateway closes (or the connection fails, 1006). */
  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  private readonly sendWaiters = new Set<() => boolean>();

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(data);
    for (const check of [...this.sendWaiters]) if (check()) this.sendWaiters.delete(check);
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  /** Frames the client sent, parsed. */
  frames(): Array<Record<string, unknown>> {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>);
  }

  /** Resolves with the first sent frame (from index `from`) matching `predicate`, as soon as it is sent. */
  sentFrame(predicate: (frame: Record<string, unknown>) => boolean, from = 0, timeoutMs = 5_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const frames = this.frames();
        for (let i = from; i < frames.length; i++) {
          if (predicate(frames[i]!)) {
            clearTimeout(timer);
            resolve(frames[i]!);
            return true;
          }
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.sendWaiters.delete(check);
        reject(new Error(`no matching frame within ${timeoutMs} ms; sent: ${this.sent.join('\n')}`));
      }, timeoutMs);
      if (!check()) this.sendWaiters.add(check);
    });
  }
}
