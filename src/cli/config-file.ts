/**
 * The `--config FILE` of every CLI: a TOML file whose keys are the long flag names
 * (`max-connections = 1000`, `mpc = ["a:5560", "b:5560"]`, `demo-page = false`). TOML because a
 * config file wants comments and typed values, and smol-toml parses it strictly (TOML 1.0) with no
 * dependencies. Relative paths of FILE-valued keys are taken relative to the config file.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse, TomlError, type TomlTable, type TomlValue } from 'smol-toml';

/** A parsed config file. */
export interface ConfigFile {
  /** The path as given (`--config` or `TORMQ_CONFIG`). */
  readonly path: string;
  /** Values by key (= long flag name). */
  readonly values: Readonly<Record<string, TomlValue>>;
  /** How a key is named in error messages: `max-connections in tormq.toml`. */
  name(key: string): string;
}

class ConfigFileError extends Error {}

/** Reads and parses `path`; throws (a UsageError-compatible Error) for an unreadable file, bad TOML or an unknown key. */
export function readConfigFile(path: string, keys: ReadonlySet<string>, program: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigFileError(`cannot read the config file ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  let table: TomlTable;
  try {
    table = parse(text);
  } catch (error) {
    const where = error instanceof TomlError ? ` (line ${error.line}, column ${error.column})` : '';
    throw new ConfigFileError(`${path} is not valid TOML${where}: ${(error as Error).message.split('\n', 1)[0]}`);
  }
  for (const [key, value] of Object.entries(table)) {
    if (!keys.has(key) || (typeof value === 'object' && value !== null && !Array.isArray(value))) {
      const hint = key.startsWith('no-') && keys.has(key.slice(3)) ? ` (write ${key.slice(3)} = false)` : '';
      throw new ConfigFileError(`${path}: unknown key ${JSON.stringify(key)}${hint}; keys are ${program}'s long flag names without "--"`);
    }
  }
  return { path, values: table, name: (key) => `${key} in ${path}` };
}

/** A path from the config file, relative to the file's directory. */
export function resolveFrom(file: ConfigFile, path: string): string {
  return path === '' || isAbsolute(path) ? path : resolve(dirname(file.path), path);
}
