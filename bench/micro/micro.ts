/**
 * Runs tinybench suites of the delivery hot path and returns one row per case. Each case does
 * `ops` operations per call (sub-microsecond work is below the timer's resolution otherwise), so
 * `nsPerOp` is the figure to read.
 */
import { Bench } from 'tinybench';

export interface MicroCase {
  name: string;
  /** Operations per call of `fn` (the row reports ns per operation). */
  ops: number;
  fn: () => void;
}

export interface MicroRow {
  group: string;
  name: string;
  nsPerOp: number;
  opsPerSecond: number;
  /** Relative margin of error, percent. */
  rme: number;
  samples: number;
}

export async function runCases(group: string, cases: MicroCase[], timeMs: number): Promise<MicroRow[]> {
  const bench = new Bench({ name: group, time: timeMs, iterations: 20, warmup: true });
  for (const c of cases) bench.add(c.name, c.fn);
  await bench.run();
  return bench.tasks.map((task, i) => {
    const result = task.result;
    if (result.state !== 'completed') throw new Error(`micro-benchmark ${group}/${task.name} did not complete: ${result.state}`);
    const ops = cases[i]!.ops;
    const nsPerOp = (result.latency.mean * 1e6) / ops;
    return { group, name: task.name, nsPerOp, opsPerSecond: 1e9 / nsPerOp, rme: result.latency.rme, samples: result.latency.samplesCount };
  });
}
