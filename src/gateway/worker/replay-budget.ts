/**
 * History one worker holds for tormq.v2 recoveries, all its connections together: fetched from the
 * MPC (through main) and not yet written to a socket. Each connection's replay is paced by its socket
 * (Writer.replay), but a connection that never reads keeps what it fetched; without a shared bound,
 * N such connections held N windows of history (≈ 10 MB each with 1 KB messages, 30 connections
 * +285 MB). Past the budget a recovery waits its turn, in arrival order.
 *
 * A window's size is unknown until it arrives, so a reservation starts as an estimate (its messages
 * × the mean frame of earlier replays) and is replaced by the real size when the frames arrive
 * (`settle`). The worker holds at most the budget plus what estimates missed; one window is always
 * let through when nothing is held, however large, so that no recovery waits forever.
 */
import { WorkerStat } from '../shared/counters.js';

/** The estimate per message before any replay has been seen. */
const FIRST_MEAN_FRAME_BYTES = 1024;

export class ReplayBudget {
  /** Bytes reserved or held by open reservations. */
  private held = 0;
  private meanFrameBytes = FIRST_MEAN_FRAME_BYTES;
  private readonly waiting: Array<{ bytes: number; admit: (reservation: Reservation) => void }> = [];

  constructor(
    readonly limitBytes: number,
    private readonly stats: Float64Array,
  ) {}

  /** Room for `messages` frames of history: at once when it fits, else once earlier replays let go. */
  reserve(messages: number): Promise<Reservation> {
    const bytes = Math.ceil(messages * this.meanFrameBytes);
    if (this.waiting.length === 0 && this.fits(bytes)) return Promise.resolve(this.open(bytes));
    this.stats[WorkerStat.replayWaits]++;
    return new Promise((admit) => this.waiting.push({ bytes, admit }));
  }

  /** @internal Reservation's side. */
  change(delta: number): void {
    this.held += delta;
    this.stats[WorkerStat.replayBytes] = this.held;
    if (delta < 0) this.admitWaiting();
  }

  /** @internal The frames of a window arrived: they teach the estimate. */
  learn(frames: number, bytes: number): void {
    if (frames > 0) this.meanFrameBytes = (this.meanFrameBytes + bytes / frames) / 2;
  }

  private fits(bytes: number): boolean {
    return this.held === 0 || this.held + bytes <= this.limitBytes;
  }

  private open(bytes: number): Reservation {
    const reservation = new Reservation(this);
    reservation.grow(bytes);
    return reservation;
  }

  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const { bytes, admit } = this.waiting.shift()!;
      admit(this.open(bytes));
    }
  }
}

/** One window's share of the budget; `end` it whatever happens (it frees what is left). */
export class Reservation {
  private bytes = 0;

  constructor(private readonly budget: ReplayBudget) {}

  /** The window arrived: its `frames` of `bytes` in all replace the estimate. */
  settle(frames: number, bytes: number): void {
    this.budget.learn(frames, bytes);
    this.grow(bytes - this.bytes);
  }

  /** Bytes handed to the socket. */
  release(bytes: number): void {
    this.grow(-Math.min(bytes, this.bytes));
  }

  end(): void {
    this.grow(-this.bytes);
  }

  /** @internal */
  grow(delta: number): void {
    if (delta === 0) return;
    this.bytes += delta;
    this.budget.change(delta);
  }
}
