/**
 * Notices a worker whose event loop has stopped: its thread is alive (the pool sees it up), but it
 * serves no socket, drains no ring and answers no control call, and the gauges it writes (event-loop
 * lag) stay frozen at their last value, so it used to look healthy. Each worker bumps its `heartbeats`
 * counter in shared memory once a second; one whose count has not moved for `stallMs` is stalled:
 * `/healthz` answers 503 naming it, `tormq_worker_stalled` is 1, `tormq_worker_stalls_total` counts the
 * episode, and its event-loop-lag gauge shows how long it has been silent (the worker cannot write it).
 * Nothing is done to the worker: a long stall may end (a huge synchronous task); the operator decides.
 */
import type { Logger } from '../../log.js';
import { WorkerStat } from '../shared/counters.js';
import type { WorkerSlot } from './worker-pool.js';

export class StallWatch {
  /** Per slot: the heartbeat count last seen and when it last moved (ms, Date.now). */
  private readonly seen = new Map<WorkerSlot, { beats: number; at: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly slots: readonly WorkerSlot[],
    private readonly stallMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.check(), 500).unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Workers found stalled at the last check. */
  stalled(): number[] {
    return this.slots.filter((slot) => slot.stalled).map((slot) => slot.index);
  }

  /** Looks at every worker once (called every 500 ms; public for tests). */
  check(now = Date.now()): void {
    for (const slot of this.slots) {
      const beats = slot.stats[WorkerStat.heartbeats]!;
      const seen = this.seen.get(slot);
      if (!slot.up || seen === undefined || seen.beats !== beats) {
        // Not running (a dead worker is the pool's business), first seen, or alive: the clock restarts.
        this.seen.set(slot, { beats, at: now });
        if (slot.stalled) {
          slot.stalled = false;
          this.log.info({ worker: slot.index, silentMs: seen === undefined ? 0 : now - seen.at }, 'worker no longer stalled');
        }
        continue;
      }
      const silentMs = now - seen.at;
      if (silentMs < this.stallMs) continue;
      if (!slot.stalled) {
        slot.stalled = true;
        slot.stats[WorkerStat.stalls]++;
        this.log.error({ worker: slot.index, silentMs }, 'worker stalled: its event loop has not run for too long');
      }
      // The worker cannot write its lag while stalled: the lag is at least the silence.
      slot.stats[WorkerStat.eventLoopLagMs] = Math.max(slot.stats[WorkerStat.eventLoopLagMs]!, silentMs);
    }
  }
}
