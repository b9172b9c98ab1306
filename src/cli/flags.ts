/**
 * Command lines from option tables (src/options/options.ts): the parseArgs spec, the `--help` text and
 * the mapping of flags onto options are all derived from the table, so a CLI only declares what is
 * its own (flags that read files, say). Errors name the flag as the user typed it (`-s must be …`).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { AnyOption, ConfigOf, InputOf, OptionSpecs, OptionTable } from '../options/options.js';

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

/** A bad command line: reported with the usage hint and exit code 2. */
export class UsageError extends Error {}

/** A flag that is not an option of its own: it sets options from its value (e.g. reads a key file). */
export interface ExtraFlag<C> {
  readonly flag: string;
  readonly short?: string;
  /** Value placeholder; absent for a boolean switch. */
  readonly arg?: string;
  readonly help: string;
  readonly section?: string;
  /** Sets options from the flag's value; throws UsageError (or any Error) for a bad value. */
  apply(value: string, input: C): void;
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
  entries.push({ flag: 'help', short: 'h', help: 'this text', defaultText: null, section: '' });
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

/**
 * Parses the command line into a validated config. `--help` prints the usage and exits 0; an unknown
 * flag, a bad value or a failing extra exits 2 with a message naming the flag as typed.
 */
export function parseCommandLine<S extends OptionSpecs>(def: CliDefinition<S>, argv = process.argv.slice(2)): Readonly<ConfigOf<S>> {
  const { program } = def;
  const spec: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  const keyOfFlag = new Map<string, string>();
  const valued = new Set<string>();
  for (const [key, option] of Object.entries(def.table.specs)) {
    const cli = option.cli;
    if (cli === undefined) continue;
    spec[cli.flag] = { type: cli.arg ? 'string' : 'boolean', ...(cli.short ? { short: cli.short } : {}), ...(cli.repeatable ? { multiple: true } : {}) };
    keyOfFlag.set(cli.flag, key);
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
  const hint = `(${program} --help lists every flag)`;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: joinDashedValues(argv, valued, known), options: spec, strict: true, allowPositionals: false, allowNegative: true, tokens: true });
  } catch (error) {
    die(program, `${(error as Error).message}\n${hint}`, ExitCodes.USAGE);
  }
  const values = parsed.values as Record<string, string | boolean | Array<string | boolean> | undefined>;
  if (values.help) {
    process.stdout.write(usage(def));
    process.exit(ExitCodes.OK);
  }
  // How each flag was typed (`-s` or `--sub-port`), for error messages.
  const typed = new Map<string, string>();
  for (const token of parsed.tokens ?? []) if (token.kind === 'option') typed.set(token.name, token.rawName.split('=')[0]!);

  const input: Record<string, unknown> = {};
  for (const [key, option] of Object.entries(def.table.specs)) {
    const cli = option.cli;
    if (cli === undefined) continue;
    const fromEnv = cli.env === undefined ? '' : (process.env[cli.env] ?? '');
    const raw = values[cli.flag] ?? (fromEnv === '' ? undefined : fromEnv);
    if (raw === undefined) continue;
    if (typeof raw === 'boolean') {
      input[key] = raw;
      continue;
    }
    const convert = cli.fromText ?? option.check.fromText ?? ((t: string) => t);
    try {
      input[key] = Array.isArray(raw) ? raw.flatMap((r) => convert(String(r)) as unknown[]) : convert(raw);
    } catch (error) {
      die(program, `${typed.get(cli.flag) ?? `--${cli.flag}`}: ${(error as Error).message}\n${hint}`, ExitCodes.USAGE);
    }
  }
  for (const extra of def.extras ?? []) {
    const raw = values[extra.flag];
    if (raw === undefined || raw === false) continue;
    try {
      extra.apply(String(raw), input as never);
    } catch (error) {
      die(program, `${typed.get(extra.flag) ?? `--${extra.flag}`}: ${(error as Error).message}`, ExitCodes.USAGE);
    }
  }
  const naming = (key: string) => {
    const cli = def.table.specs[key]?.cli;
    return cli === undefined ? `options.${key}` : (typed.get(cli.flag) ?? `--${cli.flag}`);
  };
  try {
    return def.table.validate(input as InputOf<S>, naming);
  } catch (error) {
    die(program, `${(error as Error).message}\n${hint}`, ExitCodes.USAGE);
  }
}
