/**
 * Command lines from option tables (src/options/options.ts): the parseArgs spec, the `--help` text and
 * the mapping of flags onto options are all derived from the table, so a CLI only declares what is
 * its own (flags that read files, say).
 *
 * Every flag can also come from the environment (`--max-connections` → `TORMQ_MAX_CONNECTIONS`) and
 * from a TOML file (`--config FILE`, keys are the long flag names: `max-connections = 1000`). One
 * precedence rule: flag > environment > file > default. Everything is validated by the same table;
 * an error names where the bad value came from — the flag as typed (`-s must be …`), the variable
 * (`TORMQ_SUB_PORT must be …`) or the file key (`sub-port in mpc.toml must be …`) — and exits 2.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { AnyOption, CliSpec, ConfigOf, InputOf, OptionSpecs, OptionTable } from '../options/options.js';
import { readConfigFile, resolveFrom, type ConfigFile } from './config-file.js';
import { renderConfig, type Provenance } from './print-config.js';

export const ExitCodes = {
  OK: 0,
  /** Failed at run time (e.g. a port already in use). */
  FAILURE: 1,
  /** Bad flags or configuration. */
  USAGE: 2,
} as const;

export function die(program: string, message: string, code: number): never {
  process.stderr.write(`${program}: ${message}\n`);
  process.exit(code);
}

/** A bad command line or configuration: reported (with the usage hint) and exit code 2. */
export class UsageError extends Error {}

/** Prefix of the environment variable of every flag: `--max-connections` → `TORMQ_MAX_CONNECTIONS`. */
export const ENV_PREFIX = 'TORMQ_';
/** Environment variable naming the config file when `--config` is not given. */
export const CONFIG_ENV = `${ENV_PREFIX}CONFIG`;

/** The environment variable of a flag (`max-connections` → `TORMQ_MAX_CONNECTIONS`). */
export function envName(flag: string): string {
  return `${ENV_PREFIX}${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** A flag that is not an option of its own: it sets options from its value (e.g. reads a key file). */
export interface ExtraFlag<C> {
  readonly flag: string;
  readonly short?: string;
  /** Value placeholder; absent for a boolean switch. `FILE` values in a config file are relative to it. */
  readonly arg?: string;
  readonly help: string;
  readonly section?: string;
  /**
   * Sets options from the flag's value; throws UsageError (or any Error) for a bad value. `input`
   * holds what the same source (command line, environment or file) gave so far; `name` renders a
   * flag as that source spells it, for messages.
   */
  apply(value: string, input: C, name: (flag: string) => string): void;
}

export interface CliDefinition<S extends OptionSpecs> {
  readonly program: string;
  /** What follows the program name on the usage line. */
  readonly synopsis: string;
  readonly table: OptionTable<S>;
  readonly extras?: ReadonlyArray<ExtraFlag<InputOf<S>>>;
  /** Lines printed after the flag list. */
  readonly footer?: string;
}

interface FlagEntry {
  readonly flag: string;
  readonly short?: string;
  readonly arg?: string;
  readonly negatable?: boolean;
  readonly help: string;
  readonly defaultText: string | null;
  readonly section: string;
}

function defaultText(option: AnyOption): string | null {
  if (option.defaultText !== undefined) return option.defaultText;
  const value: unknown = option.default;
  if (option.secret || value === '' || value === undefined || (Array.isArray(value) && value.length === 0)) return null;
  if (typeof value === 'boolean') return null;
  return Array.isArray(value) ? value.join(',') : String(value);
}

/** Every flag of a CLI, in table order, extras after. */
export function flagEntries<S extends OptionSpecs>(def: CliDefinition<S>): FlagEntry[] {
  const entries: FlagEntry[] = [];
  for (const option of Object.values(def.table.specs)) {
    const cli = option.cli;
    if (cli === undefined) continue;
    entries.push({
      flag: cli.negatable ? `no-${cli.flag}` : cli.flag,
      short: cli.short,
      arg: cli.arg,
      negatable: cli.negatable,
      help: cli.help ?? option.help,
      defaultText: cli.negatable ? null : defaultText(option),
      section: option.section ?? '',
    });
  }
  for (const extra of def.extras ?? []) {
    entries.push({ flag: extra.flag, short: extra.short, arg: extra.arg, help: extra.help, defaultText: null, section: extra.section ?? '' });
  }
  return entries;
}

/** The `--help` text. */
export function usage<S extends OptionSpecs>(def: CliDefinition<S>): string {
  const entries = flagEntries(def);
  entries.push(
    { flag: 'config', arg: 'FILE', help: `read options from a TOML file (or set ${CONFIG_ENV})`, defaultText: null, section: '' },
    { flag: 'print-config', help: 'print the effective configuration (secrets redacted) and exit', defaultText: null, section: '' },
    { flag: 'help', short: 'h', help: 'this text', defaultText: null, section: '' },
  );
  const left = (e: FlagEntry) => `${e.short ? `-${e.short}, ` : '    '}--${e.flag}${e.arg ? ` ${e.arg}` : ''}`;
  const width = Math.max(...entries.map((e) => left(e).length)) + 2;
  const sections = [...new Set(entries.map((e) => e.section))].sort((a, b) => (a === '' ? -1 : b === '' ? 1 : 0));
  const lines = [`Usage: ${def.program} ${def.synopsis}`, ''];
  for (const section of sections) {
    if (section !== '') lines.push(`  ${section}:`);
    for (const e of entries.filter((x) => x.section === section)) {
      lines.push(`  ${left(e).padEnd(width)}${e.help}${e.defaultText === null ? '' : ` (default ${e.defaultText})`}`);
    }
  }
  lines.push(
    '',
    `Every flag may also be set in the environment (--max-connections N: ${envName('max-connections')}=N; a`,
    `--no-X switch: ${ENV_PREFIX}X=false) or in the --config file (max-connections = N). Precedence: flag >`,
    'environment > file > default.',
  );
  if (def.footer) lines.push('', def.footer.trimEnd());
  return `${lines.join('\n')}\n`;
}

/**
 * `--heartbeat-ms -1`, `--curve-server-key -x8…`: parseArgs reads a value starting with `-` as a flag
 * and refuses it as ambiguous. A value-taking flag followed by anything that is not itself a known
 * flag is joined to it (`--heartbeat-ms=-1`), so that a Z85 key may start with `-` and a bad number
 * gets its real error from validation.
 */
function joinDashedValues(args: string[], valued: Set<string>, known: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (valued.has(arg) && next !== undefined && next.startsWith('-') && next !== '-' && !known.has(next.split('=')[0]!)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

const TRUE_TEXT = new Set(['true', '1', 'yes', 'on']);
const FALSE_TEXT = new Set(['false', '0', 'no', 'off']);

/** A switch's value from environment text. */
function booleanFromText(text: string, name: string): boolean {
  const t = text.trim().toLowerCase();
  if (TRUE_TEXT.has(t)) return true;
  if (FALSE_TEXT.has(t)) return false;
  throw new UsageError(`${name} must be true or false, got ${JSON.stringify(text)}`);
}

/** One place values come from: the command line, the environment, or the config file. */
interface Layer {
  /** Options this source sets, converted (not yet validated). */
  readonly input: Record<string, unknown>;
  /** Per option key, how this source names it (`-s`, `TORMQ_SUB_PORT`, `sub-port in mpc.toml`). */
  readonly names: Map<string, string>;
  /** Per option key (and extra flag), the text given, for `--print-config` of FILE-valued flags. */
  readonly raw: Map<string, unknown>;
}

/** What {@link resolveCommandLine} found. */
export type Resolution<S extends OptionSpecs> =
  | { readonly action: 'help' }
  | { readonly action: 'run' | 'print-config'; readonly config: Readonly<ConfigOf<S>>; readonly provenance: Provenance };

/**
 * Resolves a command line, the environment and the config file into a validated config (no process
 * exit, no output: {@link parseCommandLine} does that). Throws UsageError naming the source of a bad
 * value.
 */
export function resolveCommandLine<S extends OptionSpecs>(def: CliDefinition<S>, argv: readonly string[], env: NodeJS.ProcessEnv): Resolution<S> {
  const { specs } = def.table;
  const spec: NonNullable<ParseArgsConfig['options']> = {
    help: { type: 'boolean', short: 'h' },
    config: { type: 'string' },
    'print-config': { type: 'boolean' },
  };
  const valued = new Set<string>(['--config']);
  for (const option of Object.values(specs)) {
    const cli = option.cli;
    if (cli === undefined) continue;
    spec[cli.flag] = { type: cli.arg ? 'string' : 'boolean', ...(cli.short ? { short: cli.short } : {}), ...(cli.repeatable ? { multiple: true } : {}) };
    if (cli.arg) valued.add(`--${cli.flag}`).add(cli.short ? `-${cli.short}` : `--${cli.flag}`);
  }
  for (const extra of def.extras ?? []) {
    spec[extra.flag] = { type: extra.arg ? 'string' : 'boolean', ...(extra.short ? { short: extra.short } : {}) };
    if (extra.arg) valued.add(`--${extra.flag}`).add(extra.short ? `-${extra.short}` : `--${extra.flag}`);
  }
  const known = new Set<string>();
  for (const [flag, entry] of Object.entries(spec)) {
    known.add(`--${flag}`).add(`--no-${flag}`);
    if (entry.short) known.add(`-${entry.short}`);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: joinDashedValues([...argv], valued, known), options: spec, strict: true, allowPositionals: false, allowNegative: true, tokens: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | Array<string | boolean> | undefined>;
  if (values.help) return { action: 'help' };
  // How each flag was typed (`-s` or `--sub-port`), for error messages.
  const typed = new Map<string, string>();
  for (const token of parsed.tokens ?? []) if (token.kind === 'option') typed.set(token.name, token.rawName.split('=')[0]!);

  const configPath = typeof values.config === 'string' ? values.config : (env[CONFIG_ENV] ?? '');
  const file = configPath === '' ? null : loadConfigFile(configPath, acceptedKeys(def), def.program);

  const flagName = (flag: string) => typed.get(flag) ?? `--${flag}`;
  const layers = [
    file === null ? null : fromSource(def, (flag) => file.values[flag], (flag) => file.name(flag), file),
    fromSource(def, (flag) => envText(env, flag), envName, null),
    fromSource(def, (flag) => values[flag], flagName, null),
  ].filter((l): l is Layer => l !== null);

  const input: Record<string, unknown> = {};
  const names = new Map<string, string>();
  const raw = new Map<string, unknown>();
  for (const layer of layers) {
    Object.assign(input, layer.input);
    for (const [key, name] of layer.names) names.set(key, name);
    for (const [key, text] of layer.raw) raw.set(key, text);
  }
  const naming = (key: string) => {
    const cli = specs[key]?.cli;
    return names.get(key) ?? (cli === undefined ? `options.${key}` : `--${cli.flag}`);
  };
  let config: Readonly<ConfigOf<S>>;
  try {
    config = def.table.validate(input as InputOf<S>, naming);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const provenance: Provenance = { names, raw, file: file?.path ?? null };
  return { action: values['print-config'] ? 'print-config' : 'run', config, provenance };
}

function loadConfigFile(path: string, keys: ReadonlySet<string>, program: string): ConfigFile {
  try {
    return readConfigFile(path, keys, program);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** An environment variable's text; empty means unset (so `TORMQ_X=` in a unit file clears nothing by accident). */
function envText(env: NodeJS.ProcessEnv, flag: string): string | undefined {
  const text = env[envName(flag)];
  return text === undefined || text === '' ? undefined : text;
}

/** The keys a config file may hold: every long flag (switches by their positive name) and extra. */
function acceptedKeys<S extends OptionSpecs>(def: CliDefinition<S>): Set<string> {
  const keys = new Set<string>();
  for (const option of Object.values(def.table.specs)) if (option.cli) keys.add(option.cli.flag);
  for (const extra of def.extras ?? []) keys.add(extra.flag);
  return keys;
}

/**
 * The options one source sets. `get` returns the value given for a flag (text from the command line
 * or the environment, a typed TOML value from a file), `name` how the source spells that flag.
 */
function fromSource<S extends OptionSpecs>(
  def: CliDefinition<S>,
  get: (flag: string) => unknown,
  name: (flag: string) => string,
  file: ConfigFile | null,
): Layer {
  const layer: Layer = { input: {}, names: new Map(), raw: new Map() };
  for (const [key, option] of Object.entries(def.table.specs)) {
    const cli = option.cli;
    if (cli === undefined) continue;
    const given = get(cli.flag);
    if (given === undefined) continue;
    const shown = name(cli.flag);
    try {
      layer.input[key] = convert(option, cli, given, shown, file);
    } catch (error) {
      throw error instanceof UsageError ? error : new UsageError(`${shown}: ${(error as Error).message}`);
    }
    layer.names.set(key, shown);
    layer.raw.set(key, given);
  }
  for (const extra of def.extras ?? []) {
    let given = get(extra.flag);
    if (given === undefined || given === false) continue;
    const shown = name(extra.flag);
    if (extra.arg === undefined) given = typeof given === 'string' ? booleanFromText(given, shown) : given;
    if (given === false) continue;
    if (extra.arg !== undefined && typeof given !== 'string') throw new UsageError(`${shown} must be a string, got ${JSON.stringify(given)}`);
    const before = { ...layer.input };
    try {
      extra.apply(file !== null && extra.arg === 'FILE' ? resolveFrom(file, given as string) : String(given), layer.input as InputOf<S>, name);
    } catch (error) {
      throw new UsageError(`${shown}: ${(error as Error).message}`);
    }
    // Options set by the extra are named after it in later messages (`--curve-key-file`, not `options.curveSecretKey`).
    for (const key of Object.keys(layer.input)) if (layer.input[key] !== before[key]) layer.names.set(key, shown);
    layer.raw.set(`extra:${extra.flag}`, given);
    layer.names.set(`extra:${extra.flag}`, shown);
  }
  return layer;
}

/** One source's value for an option, converted as the option's text conversion says. */
function convert(option: AnyOption, cli: CliSpec, given: unknown, shown: string, file: ConfigFile | null): unknown {
  const fromText = cli.fromText ?? option.check.fromText ?? ((t: string) => t);
  const text = (t: string) => fromText(file !== null && cli.arg === 'FILE' ? resolveFrom(file, t) : t);
  if (typeof given === 'boolean') return given;
  if (Array.isArray(given)) {
    // Repeated flags and TOML arrays: each string item converted (and split at commas), then concatenated.
    return given.flatMap((item: unknown) => {
      const value = typeof item === 'string' ? text(item) : item;
      return Array.isArray(value) ? value : [value];
    });
  }
  if (typeof given !== 'string') return given; // a typed TOML value (number, boolean): the check decides
  if (cli.arg === undefined) return booleanFromText(given, shown);
  return cli.repeatable ? [text(given)].flat() : text(given);
}

/**
 * Parses the command line (with the environment and `--config`) into a validated config. `--help`
 * prints the usage and `--print-config` the effective configuration, and exit 0; an unknown flag, a
 * bad value from any source or a failing extra exits 2 with a message naming where it came from.
 */
export function parseCommandLine<S extends OptionSpecs>(def: CliDefinition<S>, argv = process.argv.slice(2), env = process.env): Readonly<ConfigOf<S>> {
  const { program } = def;
  let resolution: Resolution<S>;
  try {
    resolution = resolveCommandLine(def, argv, env);
  } catch (error) {
    die(program, `${(error as Error).message}\n(${program} --help lists every flag)`, ExitCodes.USAGE);
  }
  if (resolution.action === 'help') {
    process.stdout.write(usage(def));
    process.exit(ExitCodes.OK);
  }
  if (resolution.action === 'print-config') {
    process.stdout.write(renderConfig(def, resolution.config, resolution.provenance));
    process.exit(ExitCodes.OK);
  }
  return resolution.config;
}
