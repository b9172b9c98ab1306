/**
 * Gives the memory of evicted history back promptly.
 *
 * Why: a history message lives long enough to be promoted to V8's old generation, and old-generation
 * ArrayBuffers (the message bodies) are freed only by a full GC. The MPC's JS heap hardly grows, so V8
 * rarely runs one: measured with 900 KB messages (history 100 × 900 KB = 92 MB), RSS reached 780–900 MB
 * with 3 GCs in the run, and 5.5 GB after `npm run fuzz` (1,000,000 publisher messages). Bodies that
 * history already let go of were waiting for a collection that never came.
 *
 * So after every `thresholdBytes` evicted, one full GC runs (asynchronously scheduled by V8, off the
 * hot path). The GC function is exposed at run time (`--expose-gc` set through `v8.setFlagsFromString`),
 * so the CLI needs no special node flags.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void | Promise<void>;

let gcFunction: GcFunction | null = null;

function exposedGc(): GcFunction {
  if (gcFunction === null) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as GcFunction;
  }
  return gcFunction;
}

export class EvictionReclaimer {
  private reclaimedUpTo = 0;
  /** Full collections run so far. */
  collections = 0;

  constructor(private readonly thresholdBytes: number) {}

  /** Called with the store's evicted-bytes total (cheap: compares two numbers). */
  check(evictedBytes: number): void {
    if (evictedBytes - this.reclaimedUpTo < this.thresholdBytes) return;
    this.reclaimedUpTo = evictedBytes;
    this.collections++;
    void exposedGc()({ type: 'major', execution: 'async' });
  }
}
