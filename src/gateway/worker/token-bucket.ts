/**
 * A token bucket: `burst` tokens at most, refilled at `ratePerSecond`. One per connection, for the
 * inbound frame rate limit (control plane: client frames, never the delivery path).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /** `now` is a monotonic clock in milliseconds (performance.now()). */
  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token; false when the bucket is empty (the caller rejects the frame). */
  take(now: number): boolean {
    const elapsed = now - this.last;
    this.last = now;
    if (elapsed > 0) this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
