/**
 * Sends on one zeromq.js socket from several places (the forwarding loop, control replies): zeromq.js
 * allows one send in flight per socket, so sends queue here and go out in order. Meant for sockets that
 * never block (PUB/XPUB drop at their high-water mark), where the queue only ever holds what was
 * submitted within one turn of the event loop; it is bounded all the same, and what does not fit is
 * dropped and counted.
 */
export interface SendableSocket {
  send(message: Buffer | Buffer[]): Promise<void>;
}

export class SerialSender {
  /** Messages refused because the queue was full. */
  dropped = 0;
  /** Sends that failed (socket closed). */
  failed = 0;
  private readonly queue: Array<Buffer | Buffer[]> = [];
  private head = 0;
  private sending = false;

  constructor(
    private readonly socket: SendableSocket,
    private readonly maxQueue = 100_000,
  ) {}

  send(message: Buffer | Buffer[]): void {
    if (this.sending) {
      if (this.queue.length - this.head >= this.maxQueue) this.dropped++;
      else this.queue.push(message);
      return;
    }
    this.sending = true;
    this.transmit(message);
  }

  /** One send; a socket closed meanwhile throws synchronously (zeromq.js): counted like a failed send. */
  private transmit(message: Buffer | Buffer[]): void {
    let sent: Promise<void>;
    try {
      sent = this.socket.send(message);
    } catch {
      // Closed: nothing queued can go out any more.
      this.failed += 1 + this.queue.length - this.head;
      this.queue.length = 0;
      this.head = 0;
      this.sending = false;
      return;
    }
    sent.then(this.next, this.onError);
  }

  /** Resolves once every queued message has been handed to the socket, or after `timeoutMs`. */
  async drained(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.sending && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  private readonly next = (): void => {
    if (this.head < this.queue.length) {
      const message = this.queue[this.head]!;
      this.queue[this.head++] = EMPTY;
      this.transmit(message);
      return;
    }
    this.queue.length = 0;
    this.head = 0;
    this.sending = false;
  };

  private readonly onError = (): void => {
    this.failed++;
    this.next();
  };
}

const EMPTY = Buffer.alloc(0);
