#!/usr/bin/env node
// Makes a fresh clone runnable: `npm ci` when node_modules is missing or older than the lockfile, and
// with --system the Debian packages the tests use (installed with apt-get when running as root).
// Plain JS with no dependencies: it runs before anything is installed.
import { existsSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
/**
 * Debian packages the test suite needs (see README, "Tests"): the original Python publisher
 * (python3-zmq), an independent WebSocket client (python3-websockets), an independent gRPC client of
 * gopusher's service (python3-grpcio, with python3-grpc-tools compiling proto/rpc.proto), a real
 * browser (chromium, driven by playwright-core; `playwright install` downloads are not used), openssl
 * (self-signed certificates for the TLS tests) and curl (gopusher's README pushes with it).
 */
const SYSTEM_PACKAGES = ['python3-zmq', 'python3-websockets', 'python3-grpcio', 'python3-grpc-tools', 'chromium', 'openssl', 'curl'];

function run(cmd, args, env = process.env) {
  console.error(`setup: ${cmd} ${args.join(' ')}`);
  const result = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env });
  if (result.status !== 0) {
    console.error(`setup: "${cmd} ${args.join(' ')}" failed (exit ${result.status})`);
    process.exit(result.status ?? 1);
  }
}

if (process.argv.includes('--system')) {
  const missing = SYSTEM_PACKAGES.filter((p) => spawnSync('dpkg', ['-s', p], { stdio: 'ignore' }).status !== 0);
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      console.error(`setup: missing Debian packages: ${missing.join(' ')}\n  run: sudo apt-get install -y ${missing.join(' ')}`);
      process.exit(1);
    }
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update', '-qq'], env);
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], env);
  }
}

const installed = `${root}node_modules/.package-lock.json`;
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(`${root}package-lock.json`).mtimeMs) {
  run('npm', ['ci', '--no-audit', '--no-fund']);
}
