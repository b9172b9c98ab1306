import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GATEWAY_DEFAULTS, validateGatewayConfig } from '../../src/gateway/shared/config.js';
import { MPC_OPTIONS } from '../../src/mpc/mpc.js';
import { CloseCodes } from '../../src/protocol/close-codes.js';

describe('gateway config: hardening options', () => {
  test('defaults: rate limit on, test hooks off', () => {
    const config = validateGatewayConfig({});
    assert.equal(config.clientRateLimit, 50);
    assert.equal(config.clientRateBurst, 100);
    assert.equal(config.testHooks, false);
    assert.equal(GATEWAY_DEFAULTS.maxFrameBytes, 64 * 1024);
    assert.equal(GATEWAY_DEFAULTS.heartbeatMs, 30_000);
    assert.ok(Object.isFrozen(config));
  });

  test('clientRateLimit: 0 disables; negative, fractional or non-numbers are refused', () => {
    assert.equal(validateGatewayConfig({ clientRateLimit: 0 }).clientRateLimit, 0);
    assert.throws(() => validateGatewayConfig({ clientRateLimit: -1 }), { name: 'RangeError', message: /^options\.clientRateLimit must be an integer from 0 \(off\) to 1000000, got -1$/ });
    assert.throws(() => validateGatewayConfig({ clientRateLimit: 1.5 }), { name: 'RangeError', message: /options\.clientRateLimit must be/ });
    assert.throws(() => validateGatewayConfig({ clientRateLimit: '10' as unknown as number }), { name: 'TypeError', message: /options\.clientRateLimit must be/ });
  });

  test('clientRateBurst must be at least 1', () => {
    assert.equal(validateGatewayConfig({ clientRateBurst: 1 }).clientRateBurst, 1);
    assert.throws(() => validateGatewayConfig({ clientRateBurst: 0 }), { name: 'RangeError', message: /^options\.clientRateBurst must be an integer from 1 to 1000000, got 0$/ });
  });

  test('testHooks must be a boolean', () => {
    assert.equal(validateGatewayConfig({ testHooks: true }).testHooks, true);
    assert.throws(() => validateGatewayConfig({ testHooks: 'yes' as unknown as boolean }), { name: 'TypeError', message: /^options\.testHooks must be a boolean, got "yes"$/ });
  });

  test('close codes: 4029 for rate limiting beside 4008 for slow clients', () => {
    assert.equal(CloseCodes.RATE_LIMITED, 4029);
    assert.equal(CloseCodes.SLOW_CLIENT, 4008);
    assert.equal(new Set(Object.values(CloseCodes)).size, Object.keys(CloseCodes).length);
  });
});

describe('MPC config: the gateway queue holds the largest message twice, the total at least one queue', () => {
  test('--gateway-queue-bytes below twice --max-message-bytes is refused with the ZMTP link server; allowed where libzmq\'s XPUB serves gateways', () => {
    assert.equal(MPC_OPTIONS.validate({ gatewayQueueBytes: 2 * 1024 * 1024 }).gatewayQueueBytes, 2 * 1024 * 1024);
    assert.throws(() => MPC_OPTIONS.validate({ gatewayQueueBytes: 2 * 1024 * 1024 - 1 }), {
      name: 'RangeError',
      message: /^options\.gatewayQueueBytes must be at least twice options\.maxMessageBytes \(2097152\): .*, got 2097151$/,
    });
    assert.equal(MPC_OPTIONS.validate({ gatewayQueueBytes: 65536, maxMessageBytes: 32768 }).gatewayQueueBytes, 65536);
    assert.equal(MPC_OPTIONS.validate({ gatewayQueueBytes: 65536, zmtpLink: false }).gatewayQueueBytes, 65536);
    assert.throws(() => MPC_OPTIONS.validate({ gatewayQueueTotalBytes: 16 * 1024 * 1024 }), {
      name: 'RangeError',
      message: /^options\.gatewayQueueTotalBytes must be at least options\.gatewayQueueBytes \(33554432\): .*, got 16777216$/,
    });
    assert.equal(MPC_OPTIONS.validate({ gatewayQueueTotalBytes: 32 * 1024 * 1024 }).gatewayQueueTotalBytes, 32 * 1024 * 1024);
  });
});

describe('gateway config: the slow-client threshold holds the largest message twice', () => {
  test('--slow-client-bytes below twice --max-message-bytes is refused', () => {
    assert.equal(validateGatewayConfig({ slowClientBytes: 2 * 1024 * 1024 }).slowClientBytes, 2 * 1024 * 1024);
    assert.throws(() => validateGatewayConfig({ slowClientBytes: 65536 }), {
      name: 'RangeError',
      message: /^options\.slowClientBytes must be at least twice options\.maxMessageBytes \(2097152\): .*, got 65536$/,
    });
    assert.equal(validateGatewayConfig({ slowClientBytes: 65536, maxMessageBytes: 32768 }).slowClientBytes, 65536);
  });
});
