/**
 * Regenerates the README's tables from the tables in the code — CLI flags (option tables), metrics
 * (counters.ts and main/metrics.ts), close codes (protocol/close-codes.ts) — between
 * `<!-- generated:NAME -->` and `<!-- /generated -->` markers. `npm run docs` rewrites README.md;
 * test/unit/readme.test.ts fails when the README is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { flagEntries, type CliDefinition } from '../src/cli/flags.js';
import { GATEWAY_CLI } from '../src/cli/gateway-flags.js';
import { MPC_CLI } from '../src/cli/mpc-flags.js';
import { GATEWAY_METRICS, SLOT_GAUGES } from '../src/gateway/main/metrics.js';
import { LATENCY_METRIC, WORKER_COUNTERS } from '../src/gateway/shared/counters.js';
import type { OptionSpecs } from '../src/options/options.js';
import { Close } from '../src/protocol/close-codes.js';

const cell = (text: string) => text.replace(/\|/g, '\\|');

function flagTable<S extends OptionSpecs>(def: CliDefinition<S>, include: (section: string) => boolean): string {
  const rows = flagEntries(def)
    .filter((e) => include(e.section))
    .map((e) => {
      const flag = `${e.short ? `-${e.short}, ` : ''}--${e.flag}${e.arg ? ` ${e.arg}` : ''}`;
      return `| \`${flag}\` | ${e.defaultText === null ? '' : `\`${e.defaultText}\``} | ${cell(e.help)} |`;
    });
  return ['| flag | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

function metricsTable(): string {
  const rows = [
    ...WORKER_COUNTERS.map((c) => `| \`${c.metric}\` | ${c.type} | worker | ${cell(c.help)} (\`/stats\`: \`${c.key}\`) |`),
    ...SLOT_GAUGES.map((g) => `| \`${g.metric}\` | gauge | worker | ${cell(g.help)} |`),
    `| \`${LATENCY_METRIC.name}\` | histogram | worker, le | ${cell(LATENCY_METRIC.help)} |`,
    ...GATEWAY_METRICS.map((m) => `| \`${m.metric}\` | ${m.type} | | ${cell(m.help)} |`),
  ];
  return ['| metric | type | labels | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

function closeCodeTable(): string {
  const rows = Object.values(Close).map((c) => `| ${c.code} | ${cell(c.when)} |`);
  return ['| code | when |', '|---|---|', ...rows].join('\n');
}

export const GENERATED: Record<string, () => string> = {
  'gateway-options': () => flagTable(GATEWAY_CLI, (s) => !s.startsWith('Security')),
  'gateway-security-options': () => flagTable(GATEWAY_CLI, (s) => s.startsWith('Security')),
  'mpc-options': () => flagTable(MPC_CLI, (s) => !s.startsWith('HTTP')),
  'mpc-http-options': () => flagTable(MPC_CLI, (s) => s.startsWith('HTTP')),
  metrics: metricsTable,
  'close-codes': closeCodeTable,
};

/** The README with every generated block rendered anew; throws on an unknown or unclosed marker. */
export function renderReadme(readme: string): string {
  return readme.replace(/<!-- generated:([a-z-]+) -->\n[\s\S]*?<!-- \/generated -->/g, (_, name: string) => {
    const render = GENERATED[name];
    if (render === undefined) throw new Error(`README: unknown generated block "${name}"`);
    return `<!-- generated:${name} -->\n${render()}\n<!-- /generated -->`;
  });
}

export const README_PATH = fileURLToPath(new URL('../../README.md', import.meta.url));

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const before = readFileSync(README_PATH, 'utf8');
  const after = renderReadme(before);
  for (const name of Object.keys(GENERATED)) if (!after.includes(`<!-- generated:${name} -->`)) console.warn(`README has no block "${name}"`);
  writeFileSync(README_PATH, after);
  console.log(before === after ? 'README.md is up to date' : 'README.md regenerated');
}
