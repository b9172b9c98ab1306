/** Unit tests for the CURVE key helpers. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { curveKeyPair } from 'zeromq';
import { isCurveKey, readCurveKeyList, z85Encode } from '../../src/zmq/curve.js';

describe('curve helpers', () => {
  test('z85Encode matches the Z85 spec vector and libzmq keys', () => {
    assert.equal(z85Encode(Uint8Array.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b])), 'HelloWorld');
    assert.equal(isCurveKey(curveKeyPair().publicKey), true);
    assert.equal(isCurveKey('HelloWorld'), false);
  });
});

describe('readCurveKeyList', () => {
  test('keys containing "#" survive; comments and blanks are skipped; junk is refused with its line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tormq-keys-'));
    const other = curveKeyPair().publicKey;
    const withHash = `#${other.slice(1, 20)}#${other.slice(21)}`; // Z85 text may start with or contain '#'
    assert.equal(isCurveKey(withHash), true);
    writeFileSync(join(dir, 'ok.txt'), `# publishers\n\n${withHash}\n  ${other}   # billing\n`);
    assert.deepEqual(readCurveKeyList(join(dir, 'ok.txt')), [withHash, other]);
    writeFileSync(join(dir, 'bad.txt'), `${other}\n${other} trailing\n`);
    assert.throws(() => readCurveKeyList(join(dir, 'bad.txt')), /bad\.txt:2: not a 40-character Z85 public key/);
  });
});
