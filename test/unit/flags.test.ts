/** Command lines parsed from the option tables: values that start with '-'. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine } from '../../src/cli/flags.js';
import { GATEWAY_CLI } from '../../src/cli/gateway-flags.js';
import { generateCurveKeyPair } from '../../src/zmq/curve.js';

test('a value-taking flag takes a value starting with "-" (a Z85 key, a negative number) unless it is a known flag', () => {
  // Z85 keys use '-' in their alphabet: one in ~85 starts with it (curve-links flaked on such keys).
  let key = '';
  for (let i = 0; i < 2000 && !key.startsWith('-'); i++) key = generateCurveKeyPair().publicKey;
  assert.ok(key.startsWith('-'), 'a key starting with "-" within 2000 tries');
  const keyFile = join(mkdtempSync(join(tmpdir(), 'tormq-flags-')), 'gateway.json');
  writeFileSync(keyFile, JSON.stringify(generateCurveKeyPair()));
  const config = parseCommandLine(GATEWAY_CLI, ['--curve-server-key', key, '--curve-key-file', keyFile, '--workers', '1']);
  assert.equal(config.curveServerKey, key);
  assert.equal(config.workers, 1);
  const negative = parseCommandLine(GATEWAY_CLI, ['--heartbeat-ms', '-0', '-w', '2']);
  assert.ok(negative.heartbeatMs === 0, 'heartbeat off (-0)');
  assert.equal(negative.workers, 2);
});
