/**
 * The bench's machine-speed yardstick (bench/load/calibrate.ts): it runs both workloads in a child
 * process and reports CPU per operation; a child that cannot start (a core that does not exist) gives
 * null, never a failed bench run.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { calibrate } from '../../bench/load/calibrate.js';

test('the yardstick reports CPU per JS iteration and per loopback round trip', async () => {
  const result = await calibrate(null);
  assert.ok(result !== null, 'the yardstick ran');
  // A JS iteration is nanoseconds and a round trip (two writes, two reads, two wake-ups) microseconds on
  // any machine this runs on; the bounds only catch a unit mistake or a workload that did nothing.
  assert.ok(result.jsNsPerOp > 0.05 && result.jsNsPerOp < 100, `jsNsPerOp ${result.jsNsPerOp}`);
  assert.ok(result.roundTripUs > 1 && result.roundTripUs < 10_000, `roundTripUs ${result.roundTripUs}`);
});

test('a yardstick that cannot run gives null', async () => {
  assert.equal(await calibrate(4095), null);
});
