/**
 * One client connection, owned by one worker: its subscriptions, its place in the trie, and the
 * bounded outbound path (`deliver`) that never lets a client that stops reading grow memory.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { ErrorCodes } from '../errors.js';
import { CloseCodes } from '../protocol/close-codes.js';
import { ackFrame, errorFrame, parseClientFrame, pongFrame, type ClientCommand, type FrameError } from '../protocol/client-frames.js';
import { WorkerStat } from './thread-protocol.js';
import type { WorkerContext } from './worker-context.js';

const OPEN = 1;
/** How long a client closed for being slow has to take the close frame before it is cut off. */
const SLOW_CLOSE_GRACE_MS = 5_000;

export class Session {
  /** Trie scratch: the last message epoch this session was visited for (at-most-once delivery). */
  mark = 0;
  /** Answered the last heartbeat ping. */
  alive = true;
  /** Delivery scratch: messages [runStart, runEnd) of the current batch are due to this socket (-1: none). */
  runStart = -1;
  runEnd = -1;
  /** In the "drop" policy: currently over the limit, skipping messages. */
  dropping = false;
  readonly topics = new Set<string>();
  readonly socket: Socket;

  constructor(
    readonly ws: WebSocket,
    private readonly ctx: WorkerContext,
  ) {
    // ws keeps the raw socket privately; delivery writes pre-built frames to it directly (see deliver).
    this.socket = (ws as unknown as { _socket: Socket })._socket;
  }

  /**
   * Hot path: writes pre-framed messages (one or several frames back to back; Delivery writes each
   * socket once per batch). Writing beside ws's own sender is safe because tormq sends ws only
   * control replies and frames, never compressed or Blob data, so ws never holds a queue of its own
   * that a direct write could overtake. Returns true when written.
   */
  deliver(frame: Buffer): boolean {
    if (this.ws.readyState !== OPEN) return false;
    const socket = this.socket;
    if (socket.writableLength > this.ctx.config.slowClientBytes) {
      this.onSlow();
      return false;
    }
    this.dropping = false;
    socket.write(frame);
    return true;
  }

  private onSlow(): void {
    const stats = this.ctx.stats;
    if (this.ctx.config.slowClientPolicy === 'drop') {
      stats[WorkerStat.SLOW_DROPS]++;
      this.dropping = true;
      return;
    }
    stats[WorkerStat.SLOW_CLOSES]++;
    this.ws.close(CloseCodes.SLOW_CLIENT, 'slow client');
    // A client that does not read will not read the close frame either.
    setTimeout(() => this.ws.terminate(), SLOW_CLOSE_GRACE_MS).unref();
  }

  /** A text frame from the client. */
  onText(text: string): void {
    const result = parseClientFrame(text, this.ctx.frameLimits);
    if (!result.ok) {
      this.reject(result.error);
      return;
    }
    const command = result.command;
    const error = this.apply(command);
    if (error !== null) this.reject(error);
    else if (command.event === 'ping') this.reply(pongFrame(command.id));
    else if (command.id !== undefined) this.reply(ackFrame(command.id));
  }

  onBinary(): void {
    this.reject({ code: ErrorCodes.BINARY_FRAME, message: 'binary frames are not part of the protocol' });
  }

  /** Removes every subscription (connection closed). */
  dispose(): void {
    for (const topic of this.topics) this.ctx.trie.remove(topic, this);
    this.ctx.stats[WorkerStat.SUBSCRIPTIONS] -= this.topics.size;
    this.topics.clear();
  }

  private apply(command: ClientCommand): FrameError | null {
    switch (command.event) {
      case 'ping':
        return null;
      case 'subscribe': {
        const max = this.ctx.config.maxSubscriptions;
        if (command.mode === 'replace') {
          for (const topic of this.topics) if (topic !== command.topics[0]) this.unsubscribe(topic);
        } else {
          let added = 0;
          for (const topic of new Set(command.topics)) if (!this.topics.has(topic)) added++;
          if (this.topics.size + added > max) {
            return this.error(ErrorCodes.TOO_MANY_SUBSCRIPTIONS, `at most ${max} subscriptions per connection`, command);
          }
        }
        for (const topic of command.topics) this.subscribe(topic);
        return null;
      }
      case 'unsubscribe':
        if (command.topics === null) for (const topic of this.topics) this.unsubscribe(topic);
        else for (const topic of command.topics) this.unsubscribe(topic);
        return null;
    }
  }

  private subscribe(topic: string): void {
    if (this.topics.has(topic)) return;
    this.topics.add(topic);
    this.ctx.trie.add(topic, this);
    this.ctx.stats[WorkerStat.SUBSCRIPTIONS]++;
  }

  private unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return;
    this.ctx.trie.remove(topic, this);
    this.ctx.stats[WorkerStat.SUBSCRIPTIONS]--;
  }

  private error(code: FrameError['code'], message: string, command: ClientCommand): FrameError {
    return command.id === undefined ? { code, message } : { code, message, id: command.id };
  }

  private reject(error: FrameError): void {
    this.ctx.stats[WorkerStat.BAD_FRAMES]++;
    // Original clients expect nothing but pushes: errors are answered only when asked (an id).
    if (error.id !== undefined) this.reply(errorFrame(error));
  }

  private reply(text: string): void {
    if (this.ws.readyState === OPEN) this.ws.send(text);
  }
}
