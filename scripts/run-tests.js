#!/usr/bin/env node
// Runs every compiled test file (Node 20's --test does not glob). Usage: node scripts/run-tests.js [filter]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const filter = process.argv[2];
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.test.js') && (!filter || path.includes(filter))) files.push(path);
  }
})(root);
if (files.length === 0) {
  console.error(`no test files under ${root}${filter ? ` matching ${filter}` : ''}`);
  process.exit(1);
}
// A test that hangs fails after two minutes instead of holding the whole run (and CI) forever.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=120000', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
