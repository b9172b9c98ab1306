/**
 * How often each thread samples its event-loop delay (the worker's `tormq_event_loop_lag_seconds`,
 * prom-client's `*_nodejs_eventloop_lag_*`). Node samples with a repeating timer, so every thread
 * wakes this often even when idle: at 10 ms (Node's and prom-client's default) the three threads of an
 * idle 2-worker gateway woke 300 times a second, which cost it 4.3 % of a core on these machines
 * (context switches are dear under virtualisation). At 100 ms a stall still shows in full (it delays
 * the next sample by its length); the p99 of a second is then the worst of ten samples.
 */
export const LOOP_DELAY_RESOLUTION_MS = 100;
