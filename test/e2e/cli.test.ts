/** The CLIs as users type them: exit codes, clear errors, and the `npm start` demo end to end. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCli, startMpcProcess } from '../helpers/processes.js';

const cli = (name: string) => fileURLToPath(new URL(`../../src/cli/${name}.js`, import.meta.url));
const run = (name: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [cli(name), ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });

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

  test('bad values from the environment or the config file exit 2 naming the variable or the file key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tormq-cli-'));
    try {
      const config = join(dir, 'gateway.toml');
      writeFileSync(config, '# a gateway\nworkers = 0\n');
      const cases: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
        ['gateway', [], { TORMQ_MAX_CONNECTIONS: '-5' }, /^tormq-gateway: TORMQ_MAX_CONNECTIONS must be a non-negative integer \(0 = unlimited\), got -5$/m],
        ['gateway', ['--config', config], {}, /^tormq-gateway: workers in .*gateway\.toml must be an integer from 1 to 256, got 0$/m],
        ['mpc', [], { TORMQ_SUB_PORT: 'abc' }, /^tormq-mpc: TORMQ_SUB_PORT must be an integer from 0 to 65535, got "abc"$/m],
        ['gateway', ['--tls-cert', config], {}, /^tormq-gateway: --tls-key must be a PEM private key file \(given with --tls-cert\)/m],
        ['gateway', ['--tls-cert', config, '--tls-key', config], {}, /^tormq-gateway: --tls-cert must be a readable PEM certificate matching --tls-key/m],
        // HTTP publishing open to the network without a token is refused unless asked for.
        ['mpc', ['--host', '0.0.0.0', '--http', '8080'], {}, /^tormq-mpc: --http-token must be set when --http listens on a non-loopback address \(--host 0\.0\.0\.0\): .* or give --http-insecure to allow that$/m],
        ['mpc', ['--http', '8080'], { TORMQ_HTTP_HOST: '0.0.0.0' }, /^tormq-mpc: --http-token must be set when --http listens on a non-loopback address \(TORMQ_HTTP_HOST 0\.0\.0\.0\)/m],
        // gopusher's gRPC service follows the same rule, with the same token.
        ['mpc', ['--host', '0.0.0.0', '--grpc', '9002'], {}, /^tormq-mpc: --http-token must be set when --grpc listens on a non-loopback address \(--host 0\.0\.0\.0\): anyone who reaches it could push; or give --http-insecure to allow that$/m],
        ['mpc', ['--grpc', '9002', '--grpc-host', '::'], {}, /^tormq-mpc: --http-token must be set when --grpc listens on a non-loopback address \(--grpc-host ::\)/m],
        ['mpc', ['--grpc-host', '127.0.0.1'], {}, /^tormq-mpc: --grpc-host must be used together with --grpc/m],
        ['mpc', ['--grpc', '70000'], {}, /^tormq-mpc: --grpc must be an integer from 0 to 65535, got 70000$/m],
        ['gateway', ['--presence-heartbeat-ms', '50'], {}, /^tormq-gateway: --presence-heartbeat-ms must be an integer from 100 to 60000, got 50$/m],
      ];
      for (const [name, args, env, message] of cases) {
        const result = run(name, args, env);
        assert.equal(result.status, 2, `${name} ${args.join(' ')} ${JSON.stringify(env)}: ${result.stderr}`);
        assert.match(result.stderr, message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--print-config shows the effective configuration and where each value came from, secrets redacted', () => {
    const result = run('mpc', ['--print-config', '--host', '0.0.0.0', '--http', '8080', '-s', '6000'], { TORMQ_HTTP_TOKEN: 'very-secret-token', TORMQ_HWM: '5000' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^sub-port = 6000 {2}# -s$/m);
    assert.match(result.stdout, /^hwm = 5000 {2}# TORMQ_HWM$/m);
    assert.match(result.stdout, /^http-token = "<redacted>" {2}# TORMQ_HTTP_TOKEN$/m);
    assert.doesNotMatch(result.stdout, /very-secret-token/);
    // --http-insecure is the explicit way to publish without a token on a public address.
    const insecure = run('mpc', ['--print-config', '--host', '0.0.0.0', '--http', '8080', '--http-insecure']);
    assert.equal(insecure.status, 0, insecure.stderr);
    assert.match(insecure.stdout, /^http-insecure = true {2}# --http-insecure$/m);
    // gRPC on a public address, with the token: started as asked (loopback by default otherwise).
    const grpc = run('mpc', ['--print-config', '--grpc', '9002', '--grpc-host', '0.0.0.0'], { TORMQ_HTTP_TOKEN: 'very-secret-token' });
    assert.equal(grpc.status, 0, grpc.stderr);
    assert.match(grpc.stdout, /^grpc = 9002 {2}# --grpc$/m);
    assert.match(grpc.stdout, /^grpc-host = "0\.0\.0\.0" {2}# --grpc-host$/m);
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

  test('Ctrl-C on the demo (SIGINT to the whole process group, as a terminal sends it) drains cleanly', async () => {
    // Its own process group, so the group signal below reaches the demo and whatever shares its group.
    const child = spawn(process.execPath, [cli('demo'), '--port', '0', '--admin-port', '0', '--mpc-ports', '0,0', '--workers', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    const running = new Promise<void>((resolve) => {
      const onData = (d: Buffer) => {
        out += d;
        if (out.includes('[demo client] received')) resolve();
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', (d) => (out += d));
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await running;
    process.kill(-child.pid!, 'SIGINT');
    assert.equal(await exited, 0, out);
    assert.doesNotMatch(out, /exiting without draining/);
    assert.match(out, /\[gateway\] .*"msg":"stopped"/);
    assert.match(out, /\[mpc\] .*"msg":"stopping"/);
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
