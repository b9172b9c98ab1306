/**
 * A log-bucket latency histogram (µs): ~2.5% relative resolution from 1 µs to ~1 h in a fixed
 * Float64Array, so recording is a Math.log and an increment, and the counts of several client
 * threads merge by adding arrays (they cross threads as plain number arrays).
 */

const GROWTH = 1.025;
const LOG_GROWTH = Math.log(GROWTH);
/** Buckets cover [1 µs, GROWTH^BUCKETS µs): 1200 buckets reach ~ 7e12 µs, far beyond any run. */
export const BUCKETS = 1200;

export class Histogram {
  readonly counts: Float64Array;
  count = 0;
  max = 0;

  constructor(counts?: ArrayLike<number>) {
    this.counts = new Float64Array(BUCKETS);
    if (counts !== undefined) this.add(counts);
  }

  /** Records one value in µs (values under 1 µs land in the first bucket). */
  record(us: number): void {
    const index = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_GROWTH));
    this.counts[index]!++;
    this.count++;
    if (us > this.max) this.max = us;
  }

  /** Adds another histogram's counts (merge across threads). */
  add(counts: ArrayLike<number>, max = 0): void {
    for (let i = 0; i < BUCKETS; i++) {
      const n = counts[i] ?? 0;
      this.counts[i]! += n;
      this.count += n;
    }
    if (max > this.max) this.max = max;
  }

  /** The value (µs, bucket upper bound, capped at the max seen) at quantile `q` in [0, 1]. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, GROWTH ** (i + 1));
    }
    return this.max;
  }
}
