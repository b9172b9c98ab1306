#!/usr/bin/env node
// Runs every compiled test file (Node 20's --test does not glob).
// Usage: node scripts/run-tests.js [filter] [--exclude SUBSTRING]...  (files whose path contains the
// filter, without those containing any excluded substring)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const args = process.argv.slice(2);
const excludes = [];
let filter;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--exclude' && i + 1 < args.length) excludes.push(args[++i]);
  else filter ??= args[i];
}
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.test.js') && (!filter || path.includes(filter)) && !excludes.some((x) => path.includes(x))) files.push(path);
  }
})(root);
if (files.length === 0) {
  console.error(`no test files under ${root}${filter ? ` matching ${filter}` : ''}`);
  process.exit(1);
}
// A test that hangs fails after two minutes instead of holding the whole run (and CI) forever.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=120000', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
