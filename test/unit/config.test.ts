import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GATEWAY_DEFAULTS, validateGatewayConfig, type GatewayOptions } from '../../src/gateway/shared/config.js';
import { nodeHasReusePort } from '../../src/gateway/worker/listener.js';

describe('gateway config', () => {
  test('defaults validate and come back frozen', () => {
    const config = validateGatewayConfig();
    assert.deepEqual({ ...config, mpc: [...config.mpc] }, { ...GATEWAY_DEFAULTS, mpc: [...GATEWAY_DEFAULTS.mpc] });
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.mpc));
  });

  test('undefined options keep the defaults', () => {
    assert.equal(validateGatewayConfig({ port: undefined }).port, GATEWAY_DEFAULTS.port);
  });

  const invalid: Array<[GatewayOptions, RegExp, typeof TypeError | typeof RangeError]> = [
    [{ mpc: [] }, /options\.mpc must be a non-empty list of host:port/, TypeError],
    [{ mpc: ['localhost'] }, /options\.mpc/, TypeError],
    [{ mpc: ['h:99999'] }, /options\.mpc/, TypeError],
    [{ host: '' }, /options\.host must be a non-empty string/, TypeError],
    [{ port: 70000 }, /options\.port must be an integer from 0 to 65535/, RangeError],
    [{ port: 'abc' as unknown as number }, /options\.port .* got "abc"/, TypeError],
    [{ path: 'ws' }, /options\.path must be a string starting with "\/"/, TypeError],
    [{ workers: 0 }, /options\.workers must be an integer from 1 to 256/, RangeError],
    [{ adminPort: -2 }, /options\.adminPort/, RangeError],
    [{ ringBytes: 5000 }, /options\.ringBytes must be a power of two/, RangeError],
    [{ maxMessageBytes: 8 * 1024 * 1024 }, /options\.maxMessageBytes must be a positive integer at most \d+ \(half of options\.ringBytes/, RangeError],
    [{ maxFrameBytes: 10 }, /options\.maxFrameBytes/, RangeError],
    [{ maxTopicLength: 0 }, /options\.maxTopicLength/, RangeError],
    [{ maxSubscriptions: 0 }, /options\.maxSubscriptions/, RangeError],
    [{ maxConnections: -1 }, /options\.maxConnections/, RangeError],
    [{ slowClientBytes: 10 }, /options\.slowClientBytes/, RangeError],
    [{ slowClientPolicy: 'ignore' as 'drop' }, /options\.slowClientPolicy must be one of close, drop/, TypeError],
    [{ heartbeatMs: 50 }, /options\.heartbeatMs must be 0 \(off\) or an integer of at least 100/, RangeError],
    [{ drainMs: -1 }, /options\.drainMs/, RangeError],
    [{ demoPage: 1 as unknown as boolean }, /options\.demoPage must be a boolean/, RangeError],
    [{ logLevel: 'loud' as 'info' }, /options\.logLevel must be one of/, TypeError],
    [{ colour: 'blue' } as unknown as GatewayOptions, /options\.colour is not a gateway option/, TypeError],
  ];
  for (const [options, message, Ctor] of invalid) {
    test(`rejects ${JSON.stringify(options)}`, () => {
      assert.throws(() => validateGatewayConfig(options), (error: Error) => error instanceof Ctor && message.test(error.message));
    });
  }

  test('reusePort detection follows the Node versions that have it', () => {
    assert.equal(nodeHasReusePort('20.20.2'), false);
    assert.equal(nodeHasReusePort('22.11.0'), false);
    assert.equal(nodeHasReusePort('22.12.0'), true);
    assert.equal(nodeHasReusePort('23.0.0'), false);
    assert.equal(nodeHasReusePort('23.1.0'), true);
    assert.equal(nodeHasReusePort('24.0.0'), true);
  });
});
