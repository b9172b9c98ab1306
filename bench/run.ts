#!/usr/bin/env node
/**
 * `npm run bench [-- options]`: micro-benchmarks of the hot path, then end-to-end load scenarios
 * against the real tormq-mpc and tormq-gateway processes and a single-thread ws baseline. Prints a
 * table and a capacity summary; writes bench/results/RUN-TIMESTAMP.json (git-ignored), and with
 * --update-results also the committed bench/results/latest.json (the README's figures).
 *
 * The servers (MPC + gateway or baseline) are pinned to core 0 and this process (publisher + client
 * fleet threads) to core 1, so the gateway's CPU per delivered message is measured on its own core.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { runMicro, type MicroRow } from './micro/index.js';
import { canPin, findNatsServer, killAllSync, NATS_INSTALL_HINT, pinSelf, stopAll } from './load/processes.js';
import { runScenario, SCENARIO_KINDS, type ScenarioConfig, type ScenarioKind, type ScenarioResult } from './load/scenario.js';
import { capacitySummary, comparisons, describeMachine, loadTable, microTable, natsTable, scenarioLabel } from './report.js';

const USAGE = `Usage: npm run bench -- [options]

  --quick                 short run (< 3 min): fewer scenarios, 5 s windows
  --scenarios LIST        comma-separated: ${SCENARIO_KINDS.join(', ')} (default all)
  --connections N         connections for broadcast/unicast/prefix        default 1000
  --idle-connections N    connections for the idle scenario                default 10000
  --idle-settle-ms N      idle: RSS is sampled 1 s after the connect burst and again this much
                          later, when the runtimes' GCs have given back what the burst took
                                                                           default 30000
  --rate N                broadcast/prefix messages per second offered     default 1000
  --unicast-rates LIST    unicast messages per second, comma-separated (a rate sweep finds the knee)
                                                                           default 5 × --rate
  --payload N             message body bytes                               default 100
  --workers N             gateway worker threads                           default 1
  --client-threads N      piscina threads of the client fleet              default 2
  --duration-ms N         measured window per scenario                     default 10000 (quick 5000)
  --variant NAME=FLAGS    also run each load scenario on tormq with these gateway flags (repeatable),
                          e.g. --variant "d2=--batch-delay-ms 2"; --cli=PATH among the
                          flags runs another gateway build (A/B of two commits in one run);
                          flags written --mpc:FLAG go to the MPC, e.g. "c1=--mpc:--coalesce-ms --mpc:1",
                          and --mpc:--cli=PATH runs another MPC build; --node=FLAG (or --mpc:--node=FLAG)
                          passes FLAG to node, e.g. "ss16=--node=--max-semi-space-size=16"
  --publisher KIND        tormq's publisher: node (the tormq SDK, in this process; default) or python
                          (Debian's python3-zmq, the original SDK's wire shape, in a child process: far
                          less CPU per message, so high unicast rates are not limited by the publisher)
  --no-baseline           skip the single-thread ws baseline
  --no-warmup-run         skip the discarded 3 s run of the first load scenario (the first scenario
                          of a run measured worse tails than later ones: cold client threads)
  --nats                  also run broadcast, unicast and idle against nats-server's WebSocket listener
                          (started and stopped by the bench, pinned like the MPC + gateway; the fleet
                          speaks NATS's text protocol, the publisher plain TCP PUB); needs nats-server:
                          sudo apt-get install -y nats-server (or NATS_SERVER=/path/to/nats-server)
  --no-micro / --no-load  skip a part
  --no-pin                do not pin with taskset
  --profile DIR           write V8 CPU profiles of the gateway (all threads) and the MPC into DIR
  --update-results        also overwrite the committed bench/results/latest.json (the README's figures);
                          without it only bench/results/RUN-TIMESTAMP.json is written (git-ignored)
  -h, --help
`;

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    scenarios: { type: 'string' },
    connections: { type: 'string' },
    'idle-connections': { type: 'string' },
    'idle-settle-ms': { type: 'string' },
    rate: { type: 'string' },
    'unicast-rates': { type: 'string' },
    nats: { type: 'boolean' },
    publisher: { type: 'string' },
    payload: { type: 'string' },
    workers: { type: 'string' },
    'client-threads': { type: 'string' },
    'duration-ms': { type: 'string' },
    variant: { type: 'string', multiple: true },
    'no-baseline': { type: 'boolean' },
    'no-warmup-run': { type: 'boolean' },
    'no-micro': { type: 'boolean' },
    'no-load': { type: 'boolean' },
    'no-pin': { type: 'boolean' },
    profile: { type: 'string' },
    'update-results': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (o.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

function int(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`bench: --${name} must be an integer of at least ${min}, got ${JSON.stringify(value)}\n`);
    process.exit(2);
  }
  return n;
}

const quick = o.quick === true;
const kinds = (o.scenarios?.split(',') ?? [...SCENARIO_KINDS]) as ScenarioKind[];
for (const kind of kinds) {
  if (!SCENARIO_KINDS.includes(kind)) {
    process.stderr.write(`bench: --scenarios must list ${SCENARIO_KINDS.join(', ')}, got ${JSON.stringify(kind)}\n`);
    process.exit(2);
  }
}
const connections = int('connections', o.connections, 1000);
const idleConnections = int('idle-connections', o['idle-connections'], 10_000);
const rate = int('rate', o.rate, 1000);
const payloadBytes = int('payload', o.payload, 100, 60);
const workers = int('workers', o.workers, 1);
const clientThreads = int('client-threads', o['client-threads'], 2);
const durationMs = int('duration-ms', o['duration-ms'], quick ? 5000 : 10_000, 500);
// Not shorter in --quick: 10 s was measured too early (8.9 KB per connection, 5.8 after 30 s, 6.0 after 60).
const idleSettleMs = int('idle-settle-ms', o['idle-settle-ms'], 30_000, 0);
const unicastRates = (o['unicast-rates']?.split(',') ?? [String(rate * 5)]).map((r) => int('unicast-rates', r, rate * 5));
const publisher = o.publisher ?? 'node';
if (publisher !== 'node' && publisher !== 'python') {
  process.stderr.write(`bench: --publisher must be node or python, got ${JSON.stringify(publisher)}\n`);
  process.exit(2);
}
let natsPath: string | undefined;
if (o.nats === true) {
  const found = findNatsServer();
  if (found === null) {
    process.stderr.write(`bench: --nats: no nats-server found, so NATS is skipped in this run; ${NATS_INSTALL_HINT}\n`);
  } else {
    natsPath = found.path;
    console.log(`bench: NATS: ${found.version} (${found.path})`);
  }
}
const variants = (o.variant ?? []).map((v) => {
  const i = v.indexOf('=');
  if (i <= 0) {
    process.stderr.write(`bench: --variant must be NAME=FLAGS, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return { name: v.slice(0, i), flags: v.slice(i + 1).split(/\s+/).filter(Boolean) };
});

const pinned = o['no-pin'] !== true && cpus().length >= 2 && canPin([0, 1]);
const base: Omit<ScenarioConfig, 'kind' | 'target'> = {
  variant: '',
  connections,
  rate,
  payloadBytes,
  durationMs,
  warmupMs: quick ? 1000 : 2000,
  settleCapMs: quick ? 8000 : 15_000,
  idleSettleMs,
  workers,
  gatewayFlags: [],
  clientThreads,
  serverCore: pinned ? 0 : null,
  loadCore: pinned ? 1 : null,
  profileDir: o.profile,
  publisher,
};

/** The scenarios of this run, in order. */
function plan(): ScenarioConfig[] {
  const list: ScenarioConfig[] = [];
  const baseline = o['no-baseline'] !== true;
  const nats = natsPath !== undefined;
  const natsBase = { ...base, target: 'nats' as const, natsPath, profileDir: undefined };
  if (kinds.includes('broadcast')) {
    list.push({ ...base, kind: 'broadcast', target: 'tormq' });
    if (nats) list.push({ ...natsBase, kind: 'broadcast' });
    if (baseline) list.push({ ...base, kind: 'broadcast', target: 'baseline', profileDir: undefined });
    for (const v of variants) list.push({ ...base, kind: 'broadcast', target: 'tormq', variant: v.name, gatewayFlags: v.flags });
    if (!quick) {
      for (const r of [rate / 4, rate * 2]) list.push({ ...base, kind: 'broadcast', target: 'tormq', rate: r });
      list.push({ ...base, kind: 'broadcast', target: 'tormq', payloadBytes: payloadBytes * 10 });
      if (baseline) list.push({ ...base, kind: 'broadcast', target: 'baseline', payloadBytes: payloadBytes * 10, profileDir: undefined });
      list.push({ ...base, kind: 'broadcast', target: 'tormq', workers: workers + 1 });
    }
  }
  if (kinds.includes('unicast')) {
    for (const [i, r] of unicastRates.entries()) {
      list.push({ ...base, kind: 'unicast', target: 'tormq', rate: r });
      if (nats) list.push({ ...natsBase, kind: 'unicast', rate: r });
      for (const v of variants) list.push({ ...base, kind: 'unicast', target: 'tormq', rate: r, variant: v.name, gatewayFlags: v.flags });
      if (baseline && !quick && i === 0) list.push({ ...base, kind: 'unicast', target: 'baseline', rate: r, profileDir: undefined });
    }
  }
  if (kinds.includes('prefix')) {
    list.push({ ...base, kind: 'prefix', target: 'tormq' });
    for (const v of variants) list.push({ ...base, kind: 'prefix', target: 'tormq', variant: v.name, gatewayFlags: v.flags });
    if (baseline && !quick) list.push({ ...base, kind: 'prefix', target: 'baseline', profileDir: undefined });
  }
  if (kinds.includes('idle')) {
    list.push({ ...base, kind: 'idle', target: 'tormq', connections: idleConnections });
    if (nats) list.push({ ...natsBase, kind: 'idle', connections: idleConnections });
    for (const v of variants) list.push({ ...base, kind: 'idle', target: 'tormq', connections: idleConnections, variant: v.name, gatewayFlags: v.flags });
    if (baseline && !quick) list.push({ ...base, kind: 'idle', target: 'baseline', connections: idleConnections, profileDir: undefined });
  }
  return list;
}

// Whatever happens, the processes this run started are stopped by PID.
process.on('exit', killAllSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench: ${signal}, stopping what was started\n`);
    void stopAll().finally(() => process.exit(130));
  });
}

const started = Date.now();
// Pin this process (and the client threads it creates later) to core 1 before anything starts.
if (pinned && !pinSelf(base.loadCore!)) process.stderr.write(`bench: could not pin the load to core ${base.loadCore}\n`);
const machine = describeMachine(pinned);
console.log(`tormq bench on ${machine.cores} × ${machine.cpuModel}, Node ${machine.node}, load average ${machine.loadAverage}` +
  (pinned ? '; servers pinned to core 0, publisher + clients to core 1' : '; not pinned'));

let micro: MicroRow[] = [];
if (o['no-micro'] !== true) {
  console.log('\nmicro-benchmarks (hot path, each result checked before timing)…');
  micro = await runMicro(quick ? 150 : 500);
  console.log(microTable(micro));
}

const results: ScenarioResult[] = [];
const failures: Array<{ scenario: string; error: string }> = [];
if (o['no-load'] !== true) {
  const pool = new Piscina({
    filename: fileURLToPath(new URL('./load/client-worker.js', import.meta.url)),
    minThreads: clientThreads,
    maxThreads: clientThreads,
    idleTimeout: 60_000,
  });
  try {
    const scenarios = plan();
    // The first scenario of a run measured worse tails than the same scenario later in the run (four
    // broadcast runs on 2026-12-06: p99 184-341 ms first, 65-92 ms for the same build later): the
    // client threads' JIT and the machine are cold. So a short run of it goes first, discarded.
    const first = scenarios.find((c) => c.kind !== 'idle');
    if (first !== undefined && o['no-warmup-run'] !== true) {
      process.stdout.write(`\nwarm-up: ${first.kind} ${first.target}, 3 s, discarded… `);
      try {
        await runScenario({ ...first, durationMs: 3000, profileDir: undefined }, pool);
        process.stdout.write('done');
      } catch (error) {
        process.stdout.write(`failed (${(error as Error).message}); going on`);
        await stopAll();
      }
    }
    for (const cfg of scenarios) {
      const label = `${cfg.kind} ${cfg.target}${cfg.variant ? ` [${cfg.variant}]` : ''}`;
      process.stdout.write(`\nload: ${label}, ${cfg.connections} connections${cfg.kind === 'idle' ? '' : `, ${cfg.rate} msgs/s, ${cfg.payloadBytes} B`}… `);
      try {
        const result = await runScenario(cfg, pool);
        results.push(result);
        process.stdout.write(`${Math.round(result.deliveredPerSecond)} deliveries/s, ${result.serverCpuUsPerDelivery?.toFixed(3) ?? '-'} µs CPU each, lost ${result.lost}`);
      } catch (error) {
        failures.push({ scenario: label, error: String((error as Error)?.stack ?? error) });
        process.stdout.write(`FAILED: ${(error as Error).message}`);
        await stopAll();
      }
    }
  } finally {
    await pool.destroy();
    await stopAll();
  }
  console.log(`\n\n${loadTable(results)}`);
  console.log('\nCPU µs/msg: gateway process CPU (utime+stime of all its threads, /proc) over the window / messages delivered;');
  console.log('srv µs/msg: the same for MPC + gateway together (nats: nats-server alone); idle MB: their RSS before any connection;');
  console.log('in-gw p50/p99: the same window inside the gateway, from its tormq_delivery_latency_seconds buckets (received from the MPC -> written);');
  console.log('cores s/l %: how busy the servers\' core and the load\'s core were (/proc/stat): a load core near 100 % adds the clients\' own queueing to p50-max;');
  console.log('yardstick ns/µs: the machine\'s speed just before the scenario, on the servers\' core: CPU per iteration of a fixed JS loop / per 100-byte');
  console.log('  round trip between two threads over loopback TCP (bench/load/calibrate.ts); runs compare through it, since these VMs change speed by the hour;');
  console.log('drops r/s/d: ring drops / slow-client drops / slow-client disconnects (gateway /stats);');
  console.log('lost: expected deliveries (messages × subscribers) not received by the end of the window (a saturated server is still behind).');
}

if (results.some((r) => r.config.target === 'nats')) console.log(`\ntormq vs NATS (same workload, same pinning):\n${natsTable(results)}`);
const summary = capacitySummary(results, machine, { rate, payloadBytes, workers });
if (summary.length > 0) console.log(`\ncapacity:\n  ${summary.join('\n  ')}`);
for (const r of results) if (r.lost > 0 || r.notes.length > 0) console.log(`note: ${scenarioLabel(r)}: lost ${r.lost}${r.notes.length ? `; ${r.notes.join('; ')}` : ''}`);
for (const fail of failures) console.log(`FAILED: ${fail.scenario}: ${fail.error}`);

const record = {
  startedAt: new Date(started).toISOString(),
  durationSeconds: (Date.now() - started) / 1000,
  machine,
  configuration: { quick, scenarios: kinds, connections, idleConnections, idleSettleMs, rate, unicastRates, nats: natsPath ?? null, publisher, payloadBytes, workers, clientThreads, durationMs, variants, pinned },
  micro,
  load: results,
  comparisons: comparisons(results),
  capacity: summary,
  failures,
};
const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const json = `${JSON.stringify(record, null, 2)}\n`;
// The committed figures change only when asked: a casual run must not leave the work tree dirty.
const runFile = `run-${record.startedAt.replace(/[:.]/g, '-')}.json`;
writeFileSync(`${dir}${runFile}`, json);
if (o['update-results']) writeFileSync(`${dir}latest.json`, json);
const wrote = o['update-results'] ? `bench/results/${runFile} and bench/results/latest.json` : `bench/results/${runFile} (--update-results also writes the committed latest.json)`;
console.log(`\nwrote ${wrote} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
process.exit(failures.length > 0 ? 1 : 0);
