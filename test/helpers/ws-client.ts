/** A WebSocket test client (ws) that records every text frame and can await acks and messages. */
import { WebSocket } from 'ws';

export class TestClient {
  readonly messages: string[] = [];
  readonly ws: WebSocket;
  closeCode: number | null = null;
  closeReason = '';
  private readonly waiters = new Set<() => void>();
  private nextId = 1;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;

  constructor(url: string, options?: ConstructorParameters<typeof WebSocket>[2], protocols?: string[]) {
    this.ws = protocols === undefined ? new WebSocket(url, options) : new WebSocket(url, protocols, options);
    this.ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? `<binary ${(data as Buffer).length}>` : (data as Buffer).toString('utf8'));
      this.wake();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve(code);
        this.wake();
      });
    });
    this.ws.on('error', () => {});
  }

  static async connect(url: string, options?: ConstructorParameters<typeof WebSocket>[2], protocols?: string[]): Promise<TestClient> {
    const client = new TestClient(url, options, protocols);
    await client.opened;
    return client;
  }

  /** A tormq.v2 connection (positions, recovery, gap notices). */
  static v2(url: string): Promise<TestClient> {
    return TestClient.connect(url, undefined, ['tormq.v2']);
  }

  /** tormq.v2: the published messages received (parsed), in order. */
  publications(): Array<{ topic: string; data: unknown; epoch: string; offset: number }> {
    return this.messages.map((m) => JSON.parse(m) as Record<string, unknown>).filter((m) => m.event === undefined && typeof m.topic === 'string') as never;
  }

  /** tormq.v2: the gap notices received. */
  gaps(): string[][] {
    return this.messages.map((m) => JSON.parse(m) as { event?: string; topics?: string[] }).filter((m) => m.event === 'gap').map((m) => m.topics!);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Sends `frame` with a fresh id and resolves with the gateway's reply (ack or error) for it. */
  async request(frame: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const before = this.messages.length;
    this.send({ ...frame, id });
    const reply = await this.waitFor((m) => {
      try {
        const parsed = JSON.parse(m) as Record<string, unknown>;
        return parsed.id === id && (parsed.event === 'ack' || parsed.event === 'error' || parsed.event === 'pong');
      } catch {
        return false;
      }
    }, before, timeoutMs);
    return JSON.parse(reply) as Record<string, unknown>;
  }

  /** Subscribes (adds) and waits for the ack. */
  async subscribe(...topics: string[]): Promise<void> {
    const reply = await this.request({ event: 'subscribe', topics });
    if (reply.event !== 'ack') throw new Error(`subscribe failed: ${JSON.stringify(reply)}`);
  }

  /** Resolves with the first message from index `from` on matching `predicate`. */
  waitFor(predicate: (message: string) => boolean, from = 0, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      // Each message is looked at once: checks run on every arrival, and rescanning would be quadratic.
      let next = from;
      const check = () => {
        for (; next < this.messages.length; next++) {
          if (predicate(this.messages[next]!)) {
            cleanup();
            resolve(this.messages[next]!);
            return;
          }
        }
        if (this.closeCode !== null) {
          cleanup();
          reject(new Error(`connection closed (${this.closeCode}) while waiting`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching message within ${timeoutMs} ms; ${this.messages.length} so far, the last: ${JSON.stringify(this.messages.slice(-3).map((m) => (m.length > 160 ? `${m.slice(0, 160)}…` : m)))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves once at least `count` messages have arrived. */
  async waitForCount(count: number, timeoutMs = 10_000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.messages.length >= count) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`got ${this.messages.length} of ${count} messages within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Messages that parse as published bodies (have a topic), in order. */
  bodies(): string[] {
    return this.messages.filter((m) => m.startsWith('{"topic"') || /"topic"\s*:/.test(m) && !/"event"\s*:\s*"(ack|error|pong)"/.test(m));
  }

  async close(): Promise<void> {
    if (this.closeCode !== null) return;
    this.ws.close();
    await this.closed;
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }
}
