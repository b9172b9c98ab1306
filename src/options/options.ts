/**
 * Option tables. Each component (gateway, MPC, HTTP ingress) and each CLI declares its options once —
 * key, default, check, help, CLI flag — and the rest is derived from that one table: the defaults
 * object, validation (messages name `options.key` for the API, or the flag the user typed for a CLI),
 * the parseArgs spec and `--help` text (src/cli/flags.ts), and the README's option tables
 * (scripts/gen-docs.js).
 */

/** A check on one option's value: `test` decides, `must` says what a valid value is. */
export interface Check<T> {
  readonly must: string;
  test(value: unknown): value is T;
  /** Turns CLI (or environment) text into a value; returns the text itself when it cannot, so the error shows it. */
  readonly fromText?: (text: string) => unknown;
}

/**
 * How an option appears on a command line. Options without one are API-only. Every flag is also an
 * environment variable (`TORMQ_` + the flag in upper case, `-` as `_`) and a config-file key (the
 * flag), see src/cli/flags.ts.
 */
export interface CliSpec {
  /** Long flag without dashes: `max-connections`. */
  readonly flag: string;
  readonly short?: string;
  /** Value placeholder in `--help` (`N`, `PORT`); absent for boolean switches. */
  readonly arg?: string;
  /** A boolean that defaults to true and is switched off with `--no-FLAG`. */
  readonly negatable?: boolean;
  /** May be given several times; the values (each also split at commas) are concatenated. */
  readonly repeatable?: boolean;
  /** Overrides the check's text conversion (e.g. read a file named by the flag). */
  readonly fromText?: (text: string) => unknown;
  /** Help text shown instead of the option's own (when the flag's value is not the option's value). */
  readonly help?: string;
}

export interface Option<T> {
  readonly default: T;
  readonly check: Check<T>;
  /** One line: what it does (shown by `--help` and in the README). */
  readonly help: string;
  /** How the default is shown when it is not a plain value (e.g. "available parallelism"). */
  readonly defaultText?: string;
  /** Never echoed back in errors or printed configurations. */
  readonly secret?: boolean;
  readonly cli?: CliSpec;
  /** Heading it is listed under in `--help` and the README. */
  readonly section?: string;
}

// Any option, whatever its value type: `Check<T>` is invariant in T (test is a type guard), so
// tables are constrained with this instead of `Option<unknown>`.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyOption = Option<any>;
export type OptionSpecs = Record<string, AnyOption>;
export type ConfigOf<S extends OptionSpecs> = { readonly [K in keyof S]: S[K] extends Option<infer T> ? T : never };
export type InputOf<S extends OptionSpecs> = { -readonly [K in keyof S]?: S[K] extends Option<infer T> ? T : never };

/** Names an option in an error message: `options.port` for the API, `-p` or `--port` for a CLI. */
export type Naming = (key: string) => string;
export const apiNaming: Naming = (key) => `options.${key}`;

/**
 * A cross-option rule, checked after every option passed its own check. `fail` throws the option's
 * error; `shown` replaces the value shown (`null`: show none, for an option that is missing).
 */
export type Refinement<C> = (config: C, fail: (key: keyof C & string, must: string, shown?: unknown) => never, name: (key: keyof C & string) => string) => void;

export interface OptionTable<S extends OptionSpecs> {
  /** What the component is called in "is not a … option". */
  readonly subject: string;
  readonly specs: S;
  readonly defaults: Readonly<ConfigOf<S>>;
  /** Checks every option (unknown keys too) and returns a frozen config; throws TypeError/RangeError. */
  validate(input?: InputOf<S>, naming?: Naming): Readonly<ConfigOf<S>>;
}

/** Shows a value in an error message; secrets never. */
function show(value: unknown, secret: boolean | undefined): string {
  if (secret) return '"<redacted>"';
  const json = JSON.stringify(value);
  return json === undefined ? String(value) : json.length > 200 ? `${json.slice(0, 200)}…` : json;
}

/**
 * The error for an option that fails its check: RangeError for a number out of range, TypeError for
 * anything else (ws and piscina do the same), with a message naming the option.
 */
export function optionError(name: string, must: string, value: unknown, secret?: boolean, omitValue = false): TypeError | RangeError {
  const Ctor = typeof value === 'number' ? RangeError : TypeError;
  return new Ctor(`${name} must be ${must}${omitValue ? '' : `, got ${show(value, secret)}`}`);
}

export function defineOptions<S extends OptionSpecs>(subject: string, specs: S, refine?: Refinement<ConfigOf<S>>): OptionTable<S> {
  const defaults = Object.freeze(Object.fromEntries(Object.entries(specs).map(([k, o]) => [k, freezeValue(o.default)]))) as Readonly<ConfigOf<S>>;
  return {
    subject,
    specs,
    defaults,
    validate(input = {}, naming = apiNaming) {
      for (const key of Object.keys(input)) {
        if (!Object.hasOwn(specs, key)) throw new TypeError(`${naming(key)} is not ${subject} option`);
      }
      const config: Record<string, unknown> = {};
      for (const [key, option] of Object.entries(specs)) {
        const given = (input as Record<string, unknown>)[key];
        const value = given === undefined ? option.default : given;
        if (!option.check.test(value)) throw optionError(naming(key), option.check.must, value, option.secret);
        config[key] = freezeValue(value);
      }
      refine?.(config as ConfigOf<S>, (key, must, shown) => {
        throw optionError(naming(key), must, shown === undefined ? config[key] : shown, shown === undefined && specs[key]?.secret, shown === null);
      }, naming);
      return Object.freeze(config) as Readonly<ConfigOf<S>>;
    },
  };
}

function freezeValue<T>(value: T): T {
  return Array.isArray(value) ? (Object.freeze([...value]) as T) : value;
}

// --- Checks -----------------------------------------------------------------------------------------

const INTEGER_TEXT = /^-?\d+$/;
/** CLI text to an integer, or the text itself (so the error shows what was typed). */
export const integerFromText = (text: string): unknown => (INTEGER_TEXT.test(text.trim()) ? Number(text.trim()) : text);

export function isInteger(value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** An integer in [min, max]; `must` overrides the text ("0 (off) or …"). */
export function int(min: number, max = Number.MAX_SAFE_INTEGER, must?: string): Check<number> {
  return {
    must: must ?? (max === Number.MAX_SAFE_INTEGER ? (min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : `an integer of at least ${min}`) : `an integer from ${min} to ${max}`),
    test: (value): value is number => isInteger(value, min, max),
    fromText: integerFromText,
  };
}

/** A check of any shape: `test` decides. */
export function satisfies<T>(must: string, test: (value: unknown) => boolean, fromText?: (text: string) => unknown): Check<T> {
  return { must, test: test as (value: unknown) => value is T, fromText };
}

export const nonEmptyString: Check<string> = satisfies('a non-empty string', (v) => typeof v === 'string' && v.length > 0, (t) => t);
export const anyString: Check<string> = satisfies('a string', (v) => typeof v === 'string', (t) => t);
export const boolean: Check<boolean> = satisfies('a boolean', (v) => typeof v === 'boolean');

export function oneOf<const V extends readonly string[]>(values: V): Check<V[number]> {
  return satisfies(`one of ${values.join(', ')}`, (v) => (values as readonly unknown[]).includes(v), (t) => t);
}

/** A list whose every item passes `item`; from text, comma-separated items (blank ones ignored). */
export function listOf(item: (value: unknown) => boolean, must: string, minItems = 0): Check<readonly string[]> {
  return satisfies(must, (v) => Array.isArray(v) && v.length >= minItems && v.every(item), splitList);
}

export function splitList(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter((s) => s !== '');
}
