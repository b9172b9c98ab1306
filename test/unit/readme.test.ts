/** The README's tables of flags, metrics and close codes are generated from the code's tables. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { GENERATED, README_PATH, renderReadme } from '../../scripts/gen-docs.js';

test('README tables match the code (run `npm run docs` after changing an option, counter or close code)', () => {
  const readme = readFileSync(README_PATH, 'utf8');
  for (const name of Object.keys(GENERATED)) assert.ok(readme.includes(`<!-- generated:${name} -->`), `README has a "${name}" block`);
  assert.equal(readme, renderReadme(readme));
});
