/** Micro-benchmarks check their result before timing: a fast wrong answer is not a result. */
export function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`micro-benchmark self-check failed: ${what}`);
}
