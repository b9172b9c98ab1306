import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isWithin, rootOf, topicError } from '../../src/protocol/topic.js';
import { encodeBody } from '../../src/sdk/publisher.js';
import { encodeTextFrame, frameHeaderLength } from '../../src/protocol/ws-frame.js';

describe('topics', () => {
  test('rootOf takes the first segment', () => {
    assert.equal(rootOf('ehr:api:1'), 'ehr');
    assert.equal(rootOf('ehr'), 'ehr');
  });
  test('topicError accepts valid topics and explains invalid ones', () => {
    assert.equal(topicError('ehr:api:1'), null);
    assert.equal(topicError('日本:語'), null);
    assert.match(topicError('')!, /empty/);
    assert.match(topicError('a::b')!, /empty segments/);
    assert.match(topicError('a\tb')!, /control/);
    assert.match(topicError('x'.repeat(257))!, /at most 256/);
    assert.match(topicError(42)!, /string/);
    // Found by the fuzzer (npm run fuzz): "\ud800" is valid JSON but not Unicode; it became U+FFFD on
    // the way to the MPC, so the subscription was never confirmed and the connection's replies stuck.
    assert.equal(topicError('emoji😀:x'), null);
    assert.match(topicError('\ud800x')!, /lone surrogates/);
    assert.match(topicError('x\udc00')!, /lone surrogates/);
    assert.match(topicError('x\ud800')!, /lone surrogates/);
    assert.match(topicError('\udc00\ud800')!, /lone surrogates/);
  });
  test('isWithin: grants by prefix on segment boundaries', () => {
    assert.equal(isWithin('ehr:api', 'ehr'), true);
    assert.equal(isWithin('ehr', 'ehr'), true);
    assert.equal(isWithin('ehrx', 'ehr'), false);
    assert.equal(isWithin('ehr', 'ehr:api'), false);
  });
});

describe('SDK body and frames', () => {
  test('encodeBody matches Python json.dumps(..., ensure_ascii=False) at the top level', () => {
    assert.equal(encodeBody('ehr:api', 'hello'), '{"topic": "ehr:api", "data": "hello"}');
    assert.equal(encodeBody('a', 'ü✓'), '{"topic": "a", "data": "ü✓"}');
    assert.throws(() => encodeBody('a', undefined), TypeError);
  });
  test('text frames: header sizes at the 125/126 and 65535/65536 boundaries', () => {
    for (const length of [0, 125, 126, 65535, 65536, 70000]) {
      const payload = Buffer.alloc(length, 0x61);
      const frame = encodeTextFrame(payload, 0, length);
      const header = frameHeaderLength(length);
      assert.equal(frame.length, header + length);
      assert.equal(frame[0], 0x81, 'FIN + text opcode');
      assert.equal(frame[1]! & 0x80, 0, 'server frames are unmasked');
      const declared = length < 126 ? frame[1] : length < 65536 ? frame.readUInt16BE(2) : frame.readUInt32BE(6);
      assert.equal(declared, length);
      assert.ok(frame.subarray(header).equals(payload));
    }
  });
});
