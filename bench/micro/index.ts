/** All micro-benchmarks, in the order the report prints them. */
import { frameCases, mpcCases, ringCases, trieCases } from './cases.js';
import { runCases, type MicroRow } from './micro.js';

export type { MicroRow };

export async function runMicro(timeMs: number): Promise<MicroRow[]> {
  return [
    ...(await runCases('trie', trieCases(), timeMs)),
    ...(await runCases('ring', ringCases(), timeMs)),
    ...(await runCases('mpc', mpcCases(), timeMs)),
    ...(await runCases('frame', frameCases(), timeMs)),
  ];
}
