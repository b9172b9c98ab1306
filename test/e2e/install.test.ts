/**
 * The package as a user gets it: `npm pack` of a copy of this repository (its `prepack` builds
 * dist/), installed into an empty project in a temp dir; the three commands run with `npx`, and
 * `import { Publisher } from 'tormq'` works. Dependencies come from npm's cache (`--prefer-offline`).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createInterface } from 'node:readline';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMpcProcess, type MpcProcess } from '../helpers/processes.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** npm run from `npm test` exports npm_* variables that an inner npm would read as its own config. */
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} in ${cwd} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

describe('install: npm pack, npm install, npx', () => {
  let dir: string;
  let app: string;
  let tarball: string;
  let mpc: MpcProcess | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tormq-install-'));
    // A copy without dist/, so the tarball's dist/ can only come from prepack (the work tree's dist/
    // serves this very test run and is not touched).
    const source = join(dir, 'source');
    mkdirSync(source);
    for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'LICENSE', 'src', 'proto']) cpSync(join(REPO, entry), join(source, entry), { recursive: true });
    symlinkSync(join(REPO, 'node_modules'), join(source, 'node_modules'));
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], source).stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = join(dir, packed[0]!.filename);
    const files = packed[0]!.files.map((f) => f.path);
    for (const required of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/mpc.js', 'dist/src/cli/gateway.js', 'dist/src/cli/keys.js', 'dist/src/gateway/worker/worker.js', 'proto/rpc.proto']) {
      assert.ok(files.includes(required), `the tarball has ${required}`);
    }
    assert.ok(!files.some((f) => f.startsWith('dist/test/') || f.startsWith('src/')), 'tests and TypeScript sources stay out of the tarball');

    app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], app);
  });

  after(async () => {
    await mpc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('npx tormq-mpc, tormq-gateway and tormq-keys run from the installed package', () => {
    for (const bin of ['tormq-mpc', 'tormq-gateway', 'tormq-keys']) {
      const help = run('npx', ['--no-install', bin, '--help'], app);
      assert.match(help.stdout, new RegExp(`^Usage: ${bin} `), bin);
    }
    // The native ZeroMQ binding loads from the installed tree: tormq-keys makes a CURVE pair with it.
    const keys = JSON.parse(run('npx', ['--no-install', 'tormq-keys'], app).stdout) as { publicKey: string; secretKey: string };
    assert.equal(keys.publicKey.length, 40);
    assert.ok(existsSync(join(app, 'node_modules', 'tormq', 'dist', 'src', 'cli', 'gateway.js')));
  });

  test("import { Publisher } from 'tormq' works and publishes to a real MPC", async () => {
    mpc = await startMpcProcess();
    writeFileSync(join(app, 'publish.mjs'), `
      import { Publisher, encodeBody, ErrorCodes } from 'tormq';
      const publisher = new Publisher('127.0.0.1', ${mpc.publisherPort});
      await publisher.send('app:1', { ok: true });
      // The MPC takes every message (it keeps history), so the publisher is ready with no gateway yet.
      await publisher.ready({ topic: 'app', timeoutMs: 5000 }).then(() => console.log('ready'), (error) => console.log(error.code === ErrorCodes.READY_TIMEOUT ? 'ready timed out' : error));
      await publisher.close();
      console.log(encodeBody('app:1', 'x'));
    `);
    const result = run(process.execPath, ['publish.mjs'], app);
    assert.equal(result.stdout, 'ready\n{"topic": "app:1", "data": "x"}\n');
  });

  test("the installed tormq-mpc serves gopusher's gRPC service from the shipped proto/rpc.proto", async () => {
    const child = spawn(process.execPath, [join(app, 'node_modules', 'tormq', 'dist', 'src', 'cli', 'mpc.js'), '-s', '0', '-p', '0', '--admin-port', 'off', '--grpc', '0'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry.msg === 'mpc ready') resolve(entry);
        });
        child.once('exit', (code) => reject(new Error(`tormq-mpc exited ${code}: ${stderr}`)));
      });
      assert.ok(Number(ready.grpcPort) > 0, JSON.stringify(ready));
    } finally {
      child.kill();
    }
  });
});
