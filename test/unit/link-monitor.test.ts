/** LinkMonitor: the cause of a link that is not up, from ZeroMQ socket events (no sockets here: events as libzmq reports them). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Event } from 'zeromq';
import type { Logger } from '../../src/log.js';
import { diagnose, LinkCauses, LinkMonitor } from '../../src/gateway/main/link-monitor.js';

const ENDPOINT = 'tcp://127.0.0.1:5560';
const ev = (type: string, extra: Record<string, unknown> = {}) => ({ type, address: ENDPOINT, ...extra }) as unknown as Event;

/** A logger that records warn lines and resolves `next` on each. */
function recorder() {
  const warnings: Array<Record<string, unknown>> = [];
  let wake: (() => void) | null = null;
  const log = {
    warn(fields: Record<string, unknown>, msg: string) {
      warnings.push({ ...fields, msg });
      wake?.();
    },
  } as unknown as Logger;
  // The monitor's timers are unref'd (they must not keep a gateway alive): hold the loop while waiting.
  const next = (count: number) => new Promise<void>((resolve) => {
    const hold = setInterval(() => {}, 1000);
    const check = () => {
      if (warnings.length < count) {
        wake = check;
        return;
      }
      clearInterval(hold);
      resolve();
    };
    check();
  });
  return { log, warnings, next };
}

describe('LinkMonitor', () => {
  test('diagnose: each pattern of events maps to its cause', () => {
    const none = { connectDelayed: false, closedBeforeConnect: false, retried: false, connected: false, handshakeError: null };
    assert.equal(diagnose({ ...none, connectDelayed: true, closedBeforeConnect: true, retried: true }, false), LinkCauses.REFUSED);
    assert.equal(diagnose({ ...none, retried: true }, false), LinkCauses.UNRESOLVABLE);
    assert.equal(diagnose({ ...none, connectDelayed: true }, false), LinkCauses.NO_ANSWER);
    assert.equal(diagnose({ ...none, connected: true }, true), LinkCauses.HANDSHAKE);
    const mismatch = { type: 'handshake:error:protocol', code: 'ERR_ZMTP_MECHANISM_MISMATCH' };
    assert.equal(diagnose({ ...none, connected: true, handshakeError: mismatch }, false), LinkCauses.CURVE_REQUIRED);
    assert.equal(diagnose({ ...none, connected: true, handshakeError: mismatch }, true), LinkCauses.CURVE_NOT_OFFERED);
    assert.equal(diagnose({ ...none, connected: true, handshakeError: { type: 'handshake:error:auth', code: 'ZAP 400' } }, true), LinkCauses.CURVE_KEY_REFUSED);
    assert.equal(diagnose({ ...none, connected: true, handshakeError: { type: 'handshake:error:other', code: 'EPIPE' } }, true), LinkCauses.CURVE_SERVER_KEY);
    assert.equal(diagnose(none, false), LinkCauses.UNKNOWN);
  });

  test('warns once per cause while down, again when the cause becomes clearer, never once up', async () => {
    const { log, warnings, next } = recorder();
    const monitor = new LinkMonitor([ENDPOINT], log, { curve: false, warnAfterMs: 10 });
    monitor.start();
    for (const type of ['connect:delay', 'close', 'connect:retry']) monitor.observe(ev(type));
    await next(1);
    assert.equal(warnings[0]!.cause, LinkCauses.REFUSED);
    assert.equal(warnings[0]!.since, 'start');
    monitor.observe(ev('connect:delay'));
    monitor.observe(ev('close'));
    assert.equal(warnings.length, 1, 'the same cause is not repeated');
    // A later attempt reaches a CURVE MPC: the clearer cause is reported.
    monitor.observe(ev('connect'));
    monitor.observe(ev('handshake:error:other', { error: { code: 'EPIPE' } }));
    monitor.observe(ev('handshake:error:protocol', { error: { code: 'ERR_ZMTP_MECHANISM_MISMATCH' } }));
    monitor.observe(ev('handshake:error:other', { error: { code: 'EPIPE' } })); // a bare EPIPE does not hide it
    await next(3);
    assert.deepEqual(warnings.map((w) => w.cause), [LinkCauses.REFUSED, LinkCauses.HANDSHAKE, LinkCauses.CURVE_REQUIRED]);
    const count = warnings.length;
    monitor.observe(ev('handshake'));
    monitor.stop();
    assert.equal(warnings.length, count);
  });

  test('a drop is reported with since "disconnect" when the link stays down', async () => {
    const { log, warnings, next } = recorder();
    const monitor = new LinkMonitor([ENDPOINT], log, { curve: false, warnAfterMs: 10 });
    monitor.start();
    monitor.observe(ev('connect'));
    monitor.observe(ev('handshake'));
    monitor.observe(ev('disconnect'));
    monitor.observe(ev('connect:delay'));
    monitor.observe(ev('close'));
    await next(1);
    monitor.stop();
    assert.deepEqual({ cause: warnings[0]!.cause, since: warnings[0]!.since, mpc: warnings[0]!.mpc }, { cause: LinkCauses.REFUSED, since: 'disconnect', mpc: ENDPOINT });
  });
});
