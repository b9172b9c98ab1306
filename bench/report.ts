/** The human table, the JSON record and the capacity summary of one `npm run bench`. */
import { cpus, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import type { MicroRow } from './micro/index.js';
import type { ScenarioResult } from './load/scenario.js';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGB: number;
  node: string;
  platform: string;
  pinned: boolean;
  loadAverage: string;
}

export function describeMachine(pinned: boolean): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    cores: cpus().length,
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown',
    memoryGB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    pinned,
    loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}

const f = (n: number | null | undefined, digits = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));
const k = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0));

const pct = (share: number | null): number | null => (share === null ? null : share * 100);
/** A latency in ms from a bucketed histogram: Infinity is "over its last bound" (1 s). */
const ms = (n: number): string => (n === Infinity ? '>1000' : f(n, n < 10 ? 1 : 0));

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function microTable(rows: MicroRow[]): string {
  return table(['micro-benchmark', 'ns/op', 'ops/s', '±%'], rows.map((r) => [`${r.group}: ${r.name}`, f(r.nsPerOp, 1), k(r.opsPerSecond), f(r.rme, 1)]));
}

export function scenarioLabel(r: ScenarioResult): string {
  const c = r.config;
  const variant = c.variant ? ` [${c.variant}]` : '';
  return `${c.kind} ${c.target}${variant} ${k(c.connections)}c ${c.kind === 'idle' ? '' : `${k(c.rate)}/s ${c.payloadBytes}B `}w${c.workers}`;
}

export function loadTable(results: ScenarioResult[]): string {
  const head = ['scenario', 'delivered/s', 'offered/s', 'lost', 'p50 ms', 'p90', 'p99', 'p999', 'max', 'in-gw p50/p99', 'CPU µs/msg', 'user µs', 'sys %', 'CPU %', 'cores s/l %', 'yardstick ns/µs', 'srv µs/msg', 'RSS MB', 'idle MB', 'KB/conn', 'settled', 'conn/s', 'drops r/s/d'];
  const rows = results.map((r) => [
    scenarioLabel(r),
    r.config.kind === 'idle' ? '-' : k(r.deliveredPerSecond),
    r.config.kind === 'idle' ? '-' : k(r.offeredDeliveriesPerSecond),
    r.config.kind === 'idle' ? '-' : k(r.lost),
    f(r.latencyMs.p50, 2),
    f(r.latencyMs.p90, 2),
    f(r.latencyMs.p99, 2),
    f(r.latencyMs.p999, 2),
    f(r.latencyMs.max, 1),
    r.gatewayLatencyMs === null || r.gatewayLatencyMs === undefined ? '-' : `${ms(r.gatewayLatencyMs.p50)}/${ms(r.gatewayLatencyMs.p99)}`,
    f(r.serverCpuUsPerDelivery, 3),
    f(r.serverUserUsPerDelivery, 3),
    r.config.kind === 'idle' ? '-' : f(r.serverSystemShare * 100, 0),
    r.config.kind === 'idle' ? '-' : f(r.serverCpuUtilisation * 100, 0),
    r.config.kind === 'idle' || r.coreBusy === undefined ? '-' : `${f(pct(r.coreBusy.server), 0)}/${f(pct(r.coreBusy.load), 0)}`,
    // Results written before the yardstick have no calibration field.
    r.calibration ? `${f(r.calibration.jsNsPerOp, 2)}/${f(r.calibration.roundTripUs, 0)}` : '-',
    f(r.serversCpuUsPerDelivery, 2),
    f(r.serverRssLoadedMB, 0),
    f(r.serverRssIdleMB + (r.mpcRssIdleMB ?? 0), 0),
    f(r.kbPerConnection, 1),
    f(r.kbPerConnectionSettled, 1),
    k(r.connectionsPerSecond),
    r.drops === null ? 'n/a' : `${r.drops.ring}/${r.drops.slowClientDrops}/${r.drops.slowClientDisconnects}`,
  ]);
  return table(head, rows);
}

/**
 * tormq next to nats-server for every workload run on both: servers' CPU per delivery (MPC + gateway
 * for tormq), latency, delivered and lost, idle RSS and KB per idle connection.
 */
export function natsTable(results: ScenarioResult[]): string {
  const same = (a: ScenarioResult, b: ScenarioResult) => a.config.kind === b.config.kind && a.config.connections === b.config.connections
    && a.config.rate === b.config.rate && a.config.payloadBytes === b.config.payloadBytes;
  const cells = (r: ScenarioResult | undefined): string[] => {
    if (r === undefined) return ['-', '-', '-', '-'];
    if (r.config.kind === 'idle') return [`${f(r.serverRssIdleMB + r.mpcRssIdleMB, 0)} MB idle`, `${f(r.kbPerConnectionSettled ?? r.kbPerConnection, 1)} KB/conn (${f(r.kbPerConnection, 1)} at 1 s)`, '-', '-'];
    return [f(r.serversCpuUsPerDelivery, 2), `${f(r.latencyMs.p50, 2)} / ${f(r.latencyMs.p99, 2)}`, `${k(r.delivered)} / ${k(r.lost)}`, f(r.serverCpuUtilisation * 100, 0)];
  };
  const rows: string[][] = [];
  for (const nats of results.filter((r) => r.config.target === 'nats')) {
    for (const t of results.filter((r) => r.config.target === 'tormq' && r.config.variant === '' && same(r, nats))) {
      const label = t.config.kind === 'idle' ? `idle ${k(t.config.connections)}c w${t.config.workers}` : `${t.config.kind} ${k(t.config.connections)}c ${k(t.config.rate)}/s ${t.config.payloadBytes}B w${t.config.workers}`;
      rows.push([label, ...cells(t), ...cells(nats)]);
    }
  }
  return table(['workload', 'tormq µs/msg', 'p50 / p99 ms', 'deliv / lost', 'CPU %', 'NATS µs/msg', 'p50 / p99 ms', 'deliv / lost', 'CPU %'], rows);
}

/** tormq / baseline for every scenario run on both with the same workload. */
export function comparisons(results: ScenarioResult[]): Array<{ scenario: string; tormqUs: number; baselineUs: number; ratio: number }> {
  const out = [];
  for (const base of results.filter((r) => r.config.target === 'baseline')) {
    const same = results.filter((r) => r.config.target === 'tormq' && r.config.kind === base.config.kind && r.config.connections === base.config.connections
      && r.config.rate === base.config.rate && r.config.payloadBytes === base.config.payloadBytes && r.config.variant === '');
    for (const t of same) {
      if (t.serverCpuUsPerDelivery === null || base.serverCpuUsPerDelivery === null) continue;
      out.push({ scenario: scenarioLabel(t), tormqUs: t.serverCpuUsPerDelivery, baselineUs: base.serverCpuUsPerDelivery, ratio: base.serverCpuUsPerDelivery / t.serverCpuUsPerDelivery });
    }
  }
  return out;
}

/** "10k idle connections need ≈ 53 MB of gateway RSS once settled (5.4 KB each; 9.0 KB 1 s after the burst)". */
function idleNeeds(idle: ScenarioResult): string {
  const kb = idle.kbPerConnectionSettled ?? idle.kbPerConnection;
  const burst = idle.kbPerConnectionSettled === null ? '' : `; ${f(idle.kbPerConnection, 1)} KB 1 s after the connect burst`;
  return `${k(idle.connectionsOpened)} idle connections need ≈ ${f((kb * idle.connectionsOpened) / 1024, 0)} MB of gateway RSS once settled (${f(kb, 1)} KB each${burst})`;
}

/** "one gateway core delivers ≈ X msgs/s at this payload; N idle connections need ≈ Y MB; …". */
export function capacitySummary(results: ScenarioResult[], machine: Machine, configured: { rate: number; payloadBytes: number; workers: number }): string[] {
  const lines: string[] = [];
  const tormq = results.filter((r) => r.config.target === 'tormq' && r.config.variant === '');
  const broadcasts = tormq.filter((r) => r.config.kind === 'broadcast' && r.serverCpuUsPerDelivery !== null);
  // The headline is the configured workload (the targets' one by default), not the best of the sweep.
  const broadcast = broadcasts.find((r) => r.config.rate === configured.rate && r.config.payloadBytes === configured.payloadBytes && r.config.workers === configured.workers) ?? broadcasts[0];
  const idle = tormq.find((r) => r.config.kind === 'idle');
  if (broadcast) {
    const perCore = 1e6 / broadcast.serverCpuUsPerDelivery!;
    lines.push(`One gateway core delivers ≈ ${k(perCore)} msgs/s at ${broadcast.config.payloadBytes} B in a broadcast to ${k(broadcast.config.connections)} connections at ${k(broadcast.config.rate)} msgs/s (${f(broadcast.serverCpuUsPerDelivery, 3)} µs of gateway CPU per delivered message, all threads, ${f(broadcast.serverSystemShare * 100, 0)}% of it in the kernel).`);
    const sweep = broadcasts.filter((r) => r.config.payloadBytes === broadcast.config.payloadBytes && r.config.workers === broadcast.config.workers).sort((a, b) => a.config.rate - b.config.rate);
    if (sweep.length > 1) {
      lines.push(`The cost per delivery falls as the rate rises (more messages per socket write): ${sweep.map((r) => `${k(r.config.rate)}/s → ${f(r.serverCpuUsPerDelivery, 2)} µs`).join(', ')}.`);
    }
    const w = Math.max(1, machine.cores - 1);
    lines.push(`With ${w} gateway worker core(s) on this ${machine.cores}-core machine (one core left for the MPC and the OS) it serves ≈ ${k(perCore * w)} deliveries/s of this workload when the clients run elsewhere` +
      (idle ? `; ${idleNeeds(idle)}, so memory is not the limit.` : '.'));
    lines.push(`Measured here with the client fleet on the same machine: ${k(broadcast.deliveredPerSecond)} deliveries/s of ${k(broadcast.offeredDeliveriesPerSecond)} offered (${f((broadcast.deliveredPerSecond / Math.max(1, broadcast.offeredDeliveriesPerSecond)) * 100, 0)}%), p50 ${f(broadcast.latencyMs.p50, 1)} ms, p99 ${f(broadcast.latencyMs.p99, 1)} ms.`);
  } else if (idle) {
    lines.push(`${idleNeeds(idle)}, opened at ${k(idle.connectionsPerSecond)}/s.`);
  }
  for (const c of comparisons(results)) lines.push(`tormq vs single-thread ws baseline (${c.scenario}): ${f(c.tormqUs, 3)} vs ${f(c.baselineUs, 3)} µs CPU per delivery = ${f(c.ratio, 1)}x less CPU.`);
  return lines;
}
