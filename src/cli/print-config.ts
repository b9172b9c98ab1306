/**
 * `--print-config`: the effective configuration as a TOML config file, each line with where its
 * value came from. Secrets are redacted; FILE-valued flags show the path, not the file's contents.
 */
import { stringify } from 'smol-toml';
import type { ConfigOf, OptionSpecs } from '../options/options.js';
import type { CliDefinition } from './flags.js';

/** Where the values came from (filled by resolveCommandLine). */
export interface Provenance {
  /** Per option key (and `extra:FLAG`), how its source names it: `--port`, `TORMQ_PORT`, `port in gw.toml`. */
  readonly names: ReadonlyMap<string, string>;
  /** Per option key (and `extra:FLAG`), the value as given. */
  readonly raw: ReadonlyMap<string, unknown>;
  /** The config file read, if any. */
  readonly file: string | null;
}

const REDACTED = '<redacted>';

export function renderConfig<S extends OptionSpecs>(def: CliDefinition<S>, config: Readonly<ConfigOf<S>>, provenance: Provenance): string {
  const extraFlags = new Set((def.extras ?? []).map((e) => e.flag));
  const lines = [
    `# ${def.program}: effective configuration (flag > TORMQ_* environment > config file > default)`,
    `# config file: ${provenance.file ?? 'none'}`,
  ];
  const line = (key: string, value: unknown, origin: string) => lines.push(`${stringify({ [key]: value }).trimEnd()}  # ${origin}`);
  for (const [key, option] of Object.entries(def.table.specs)) {
    const cli = option.cli;
    if (cli === undefined) continue;
    const origin = provenance.names.get(key) ?? 'default';
    // Set by a flag that reads a file (--auth-secret-file, --curve-key-file): that flag's line says so.
    if ([...extraFlags].some((flag) => origin === provenance.names.get(`extra:${flag}`))) {
      lines.push(`# ${cli.flag}: set by ${origin}`);
      continue;
    }
    const value = (config as Record<string, unknown>)[key];
    if (option.secret && value !== undefined && value !== '') line(cli.flag, REDACTED, origin);
    else if (cli.arg === 'FILE' && provenance.raw.has(key)) line(cli.flag, provenance.raw.get(key), origin);
    else if (value === undefined || (cli.arg === 'FILE' && value === '')) lines.push(`# ${cli.flag}: not set`);
    else line(cli.flag, value, origin);
  }
  for (const flag of extraFlags) {
    if (provenance.raw.has(`extra:${flag}`)) line(flag, provenance.raw.get(`extra:${flag}`), provenance.names.get(`extra:${flag}`)!);
  }
  return `${lines.join('\n')}\n`;
}
