/** One resolution for every CLI: flags, TORMQ_* environment, --config TOML file, defaults; errors name the source. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envName, resolveCommandLine, UsageError, type Resolution } from '../../src/cli/flags.js';
import { GATEWAY_CLI } from '../../src/cli/gateway-flags.js';
import { MPC_CLI } from '../../src/cli/mpc-flags.js';
import { renderConfig } from '../../src/cli/print-config.js';

const SECRET = 'a-secret-of-at-least-32-characters!!';
let dir: string;
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
type Run = Extract<Resolution<typeof GATEWAY_CLI.table.specs>, { action: 'run' | 'print-config' }>;
const gateway = (argv: string[], env: NodeJS.ProcessEnv = {}) => resolveCommandLine(GATEWAY_CLI, argv, env) as Run;
const refused = (argv: string[], env: NodeJS.ProcessEnv, message: RegExp) =>
  assert.throws(() => resolveCommandLine(GATEWAY_CLI, argv, env), (error: Error) => error instanceof UsageError && message.test(error.message));

describe('command line: flags, environment, config file', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tormq-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the environment variable of a flag is derived from it', () => {
    assert.equal(envName('max-connections'), 'TORMQ_MAX_CONNECTIONS');
    assert.equal(envName('auth-secret'), 'TORMQ_AUTH_SECRET');
    assert.equal(envName('http-token'), 'TORMQ_HTTP_TOKEN');
  });

  test('precedence: flag > environment > file > default, per option', () => {
    const config = file('precedence.toml', 'workers = 3\nport = 7001\nmax-connections = 10\n');
    const { config: c, provenance } = gateway(['--config', config, '--workers', '5'], { TORMQ_WORKERS: '4', TORMQ_PORT: '7002' });
    assert.equal(c.workers, 5); // flag over env and file
    assert.equal(c.port, 7002); // env over file
    assert.equal(c.maxConnections, 10); // file over default
    assert.equal(c.drainMs, GATEWAY_CLI.table.defaults.drainMs);
    assert.equal(provenance.names.get('workers'), '--workers');
    assert.equal(provenance.names.get('port'), 'TORMQ_PORT');
    assert.equal(provenance.names.get('maxConnections'), `max-connections in ${config}`);
  });

  test('TORMQ_CONFIG names the file when --config is not given', () => {
    const config = file('env-config.toml', 'max-subscriptions = 12\n');
    assert.equal(gateway([], { TORMQ_CONFIG: config }).config.maxSubscriptions, 12);
  });

  test('typed TOML values, text values, arrays, switches and --no- switches', () => {
    const config = file('types.toml', [
      'mpc = ["127.0.0.1:5561", "127.0.0.1:5562,127.0.0.1:5563"]',
      'admin-port = "off"',
      'demo-page = false',
      'enable-test-hooks = true',
      'allowed-origins = ["https://a.example", "https://b.example"]',
    ].join('\n'));
    const { config: c } = gateway(['--config', config]);
    assert.deepEqual([...c.mpc], ['127.0.0.1:5561', '127.0.0.1:5562', '127.0.0.1:5563']);
    assert.equal(c.adminPort, -1);
    assert.equal(c.demoPage, false);
    assert.equal(c.testHooks, true);
    assert.deepEqual([...c.allowedOrigins], ['https://a.example', 'https://b.example']);
    const fromEnv = gateway([], { TORMQ_MPC: 'h1:1,h2:2', TORMQ_DEMO_PAGE: '0', TORMQ_ENABLE_TEST_HOOKS: 'yes' }).config;
    assert.deepEqual([...fromEnv.mpc], ['h1:1', 'h2:2']);
    assert.equal(fromEnv.demoPage, false);
    assert.equal(fromEnv.testHooks, true);
    // An empty variable is unset, as in a unit file's `Environment=TORMQ_PORT=`.
    assert.equal(gateway([], { TORMQ_PORT: '' }).config.port, GATEWAY_CLI.table.defaults.port);
  });

  test('errors name the flag as typed, the variable, or the file key', () => {
    refused(['-w', '0'], {}, /^-w must be an integer from 1 to 256, got 0$/);
    refused([], { TORMQ_WORKERS: '0' }, /^TORMQ_WORKERS must be an integer from 1 to 256, got 0$/);
    const bad = file('bad.toml', 'workers = 0\n');
    refused(['--config', bad], {}, new RegExp(`^workers in ${bad} must be an integer from 1 to 256, got 0$`));
    refused([], { TORMQ_HEARTBEAT_MS: '-1' }, /^TORMQ_HEARTBEAT_MS must be 0 \(off\) or an integer of at least 100, got -1$/);
    refused([], { TORMQ_DEMO_PAGE: 'maybe' }, /^TORMQ_DEMO_PAGE must be true or false, got "maybe"$/);
    const typo = file('typo.toml', 'max-conections = 5\n');
    refused(['--config', typo], {}, /unknown key "max-conections"/);
    const negated = file('negated.toml', 'no-demo-page = true\n');
    refused(['--config', negated], {}, /unknown key "no-demo-page" \(write demo-page = false\)/);
    refused(['--config', file('syntax.toml', 'workers = [1\n')], {}, /is not valid TOML \(line \d+, column \d+\)/);
    refused(['--config', join(dir, 'missing.toml')], {}, /cannot read the config file .*missing\.toml: no such file/);
    // A cross-option rule names each option by its own source.
    const key = file('pem.txt', '-----BEGIN PUBLIC KEY-----\n');
    refused(['--auth-public-key', key], { TORMQ_AUTH_SECRET: SECRET }, /^--auth-public-key must be '' when TORMQ_AUTH_SECRET is set/);
    // The MPC's gateway queue must hold its largest message twice (with its own link server).
    const mpcRefused = (argv: string[], message: RegExp) =>
      assert.throws(() => resolveCommandLine(MPC_CLI, argv, {}), (error: Error) => error instanceof UsageError && message.test(error.message));
    mpcRefused(['--gateway-queue-bytes', '65536'], /^--gateway-queue-bytes must be at least twice --max-message-bytes \(2097152\)/);
    mpcRefused(['--gateway-queue-bytes', '65536'], /could not be repaired from history, got 65536$/);
    assert.doesNotThrow(() => resolveCommandLine(MPC_CLI, ['--gateway-queue-bytes', '65536', '--max-message-bytes', '32768'], {}));
    assert.doesNotThrow(() => resolveCommandLine(MPC_CLI, ['--gateway-queue-bytes', '65536', '--no-zmtp-link'], {}));
  });

  test('TORMQ_AUTH_SECRET and TORMQ_HTTP_TOKEN keep working; one secret per source, precedence across sources', () => {
    assert.equal(gateway([], { TORMQ_AUTH_SECRET: SECRET }).config.authSecret, SECRET);
    const mpc = resolveCommandLine(MPC_CLI, [], { TORMQ_HTTP_TOKEN: 't0ken' }) as Extract<Resolution<typeof MPC_CLI.table.specs>, { action: 'run' | 'print-config' }>;
    assert.equal(mpc.config.httpToken, 't0ken');
    const secretFile = file('secret.txt', `${SECRET.toUpperCase()}\n`);
    refused(['--auth-secret', SECRET, '--auth-secret-file', secretFile], {}, /give the secret once: --auth-secret or --auth-secret-file/);
    // The flag beats the environment, whichever way each gives the secret.
    assert.equal(gateway(['--auth-secret-file', secretFile], { TORMQ_AUTH_SECRET: SECRET }).config.authSecret, SECRET.toUpperCase());
  });

  test('FILE values in a config file are relative to the file', () => {
    writeFileSync(join(dir, 'jwt-secret'), `${SECRET}\n`);
    const config = file('relative.toml', 'auth-secret-file = "jwt-secret"\n');
    const resolution = gateway(['--config', config]);
    assert.equal(resolution.config.authSecret, SECRET);
    const printed = renderConfig(GATEWAY_CLI, resolution.config, resolution.provenance);
    assert.match(printed, /^auth-secret-file = ".*jwt-secret"  # auth-secret-file in /m);
    assert.doesNotMatch(printed, new RegExp(SECRET));
  });

  test('--print-config: every flag with its source, secrets redacted, loadable as a config file', () => {
    const resolution = gateway(['--print-config', '--workers', '2'], { TORMQ_AUTH_SECRET: SECRET });
    assert.equal(resolution.action, 'print-config');
    const printed = renderConfig(GATEWAY_CLI, resolution.config, resolution.provenance);
    assert.match(printed, /^workers = 2  # --workers$/m);
    assert.match(printed, /^auth-secret = "<redacted>"  # TORMQ_AUTH_SECRET$/m);
    assert.match(printed, /^port = 8000  # default$/m);
    assert.doesNotMatch(printed, new RegExp(SECRET));
    // Without secrets, the printed configuration reads back as the same configuration.
    const plain = gateway(['--workers', '2', '--mpc', 'a:1,b:2', '--no-demo-page', '--admin-port', 'off']);
    const again = gateway(['--config', file('printed.toml', renderConfig(GATEWAY_CLI, plain.config, plain.provenance))]);
    assert.deepEqual({ ...again.config, mpc: [...again.config.mpc] }, { ...plain.config, mpc: [...plain.config.mpc] });
  });
});
