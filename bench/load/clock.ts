/**
 * Send and receive times in µs on CLOCK_MONOTONIC (`process.hrtime`), which every process and
 * thread on the machine shares, so a publisher process's stamp and a client thread's clock compare.
 * `performance.now()` reads the same clock without a BigInt per call; the offset is taken once.
 */
const offsetUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;

export function monotonicUs(): number {
  return offsetUs + performance.now() * 1000;
}
