/** The CLIs as users type them: exit codes, clear errors, and the `npm start` demo end to end. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startCli, startMpcProcess } from '../helpers/processes.js';

const cli = (name: string) => fileURLToPath(new URL(`../../src/cli/${name}.js`, import.meta.url));
const run = (name: string, args: string[]) => spawnSync(process.execPath, [cli(name), ...args], { encoding: 'utf8', timeout: 20_000 });

describe('CLIs', () => {
  test('bad flags and values exit 2 with a clear message', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['gateway', ['--bogus'], /Unknown option '--bogus'/],
      ['gateway', ['--workers', '0'], /^tormq-gateway: --workers must be an integer from 1 to 256, got 0$/m],
      ['gateway', ['--port', 'eighty'], /--port must be an integer from 0 to 65535, got "eighty"/],
      ['gateway', ['--slow-client-policy', 'ignore'], /--slow-client-policy must be one of close, drop/],
      ['gateway', ['-r', 'nohost'], /-r must be a non-empty list of host:port/],
      ['mpc', ['-s', 'abc'], /^tormq-mpc: -s must be an integer from 0 to 65535, got "abc"$/m],
      ['mpc', ['--sub-port', '70000'], /--sub-port must be an integer from 0 to 65535, got 70000/],
      ['gateway', ['--heartbeat-ms', '-1'], /--heartbeat-ms must be 0 \(off\) or an integer of at least 100, got -1/],
      ['mpc', ['--curve-allow-gateways', 'x'], /--curve-allow-gateways must be used together with --curve-key-file/],
      ['mpc', ['--log-level', 'loud'], /--log-level must be one of/],
    ];
    for (const [name, args, message] of cases) {
      const result = run(name, args);
      assert.equal(result.status, 2, `${name} ${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  test('--help prints usage and exits 0', () => {
    for (const name of ['mpc', 'gateway']) {
      const result = run(name, ['--help']);
      assert.equal(result.status, 0);
      assert.match(result.stdout, /^Usage: tormq-/);
    }
  });

  test('a taken port is a clear error and exit code 1, for the MPC and the gateway', async () => {
    const mpc = await startMpcProcess();
    try {
      const again = run('mpc', ['-s', String(mpc.publisherPort), '-p', '0']);
      assert.equal(again.status, 1);
      assert.match(again.stderr, new RegExp(`cannot bind the publisher port tcp://127.0.0.1:${mpc.publisherPort}: address already in use`));
      assert.doesNotMatch(again.stderr, /\n\s+at /);
      // The gateway refuses a taken WebSocket port instead of silently sharing it via SO_REUSEPORT.
      const gateway = run('gateway', ['-r', `127.0.0.1:${mpc.gatewayPort}`, '-p', String(mpc.gatewayPort), '--admin-port', 'off']);
      assert.equal(gateway.status, 1);
      assert.match(gateway.stderr, /cannot bind the WebSocket port 127\.0\.0\.1:\d+: address already in use/);
    } finally {
      await mpc.stop();
    }
  });

  test('SIGTERM stops the MPC cleanly with exit 0', async () => {
    const mpc = startCli('mpc', ['-s', '0', '-p', '0']);
    await mpc.waitForLog((l) => l.msg === 'mpc ready');
    assert.equal(await mpc.stop('SIGTERM'), 0);
  });

  test('the npm start demo runs MPC, gateway, publisher and client, and stops by itself', async () => {
    const child = spawn(process.execPath, [cli('demo'), '--port', '0', '--admin-port', '0', '--mpc-ports', '0,0', '--workers', '2', '--duration', '4'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, out);
    assert.match(out, /tormq is running:/);
    assert.match(out, /\[demo client\] received \{"topic": "demo", "data": \{"n":1,/);
  });
});
