/**
 * The micro-benchmarks check each result before timing it (bench/micro/cases.ts): a broken check
 * stops `npm run bench` at its start. Building the cases runs those checks; one op of each runs too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frameCases, mpcCases, ringCases, trieCases } from '../../bench/micro/cases.js';

test('every micro-benchmark case passes its own checks and runs', () => {
  for (const [group, build] of Object.entries({ trie: trieCases, ring: ringCases, mpc: mpcCases, frame: frameCases })) {
    const cases = build();
    assert.ok(cases.length > 0, group);
    for (const c of cases) c.fn();
  }
});
