/**
 * Says why an MPC link is not up. It reads the gateway SUB's ZeroMQ socket events (fed by
 * upstream.ts) and, when a link is still not up `warnAfterMs` after start or after it dropped, logs
 * one warning naming the endpoint and the likely cause, told apart by what libzmq reported
 * (measured with libzmq 4.3 through zeromq.js 6.8):
 *
 * | what happened                              | events                                         |
 * |--------------------------------------------|------------------------------------------------|
 * | nothing listens there (refused)            | `connect:delay`, `close`, `connect:retry` …    |
 * | host name does not resolve                 | `connect:retry` only (confirmed with a lookup) |
 * | SYNs unanswered (firewall, host down)      | `connect:delay` and nothing more               |
 * | one side CURVE, the other not              | `connect`, `handshake:error:protocol` (ERR_ZMTP_MECHANISM_MISMATCH) |
 * | CURVE with the wrong server key            | `connect`, `handshake:error:other` (EPIPE)     |
 * | CURVE key not on the MPC's allowlist       | `connect`, `handshake:error:auth`              |
 *
 * Control plane only: a few events per connection attempt, never per message.
 */
import { lookup } from 'node:dns/promises';
import type { LinkEvent } from '../../zmq/zmtp-xsub.js';
import type { Logger } from '../../log.js';

/** Why a link is not up, as far as the events tell. */
export const LinkCauses = {
  REFUSED: 'refused',
  UNRESOLVABLE: 'unresolvable',
  NO_ANSWER: 'no-answer',
  /** The MPC uses CURVE, this gateway does not. */
  CURVE_REQUIRED: 'curve-required',
  /** This gateway uses CURVE, the MPC does not. */
  CURVE_NOT_OFFERED: 'curve-not-offered',
  CURVE_SERVER_KEY: 'curve-server-key',
  CURVE_KEY_REFUSED: 'curve-key-refused',
  HANDSHAKE: 'handshake',
  UNKNOWN: 'unknown',
} as const;
export type LinkCause = (typeof LinkCauses)[keyof typeof LinkCauses];

export interface LinkMonitorOptions {
  /** The gateway connects with CURVE (tells the two sides of a mechanism mismatch apart). */
  readonly curve: boolean;
  /** Warn when a link is not up this long after start or after it dropped; 0 = never. */
  readonly warnAfterMs: number;
}

/** What one endpoint's events said since it was last up (or since start). */
interface LinkState {
  up: boolean;
  /** Why it is down: never came up since start, or dropped. */
  since: 'start' | 'disconnect';
  timer: NodeJS.Timeout | null;
  /** The cause last warned about in this down period (warn again only when it changes). */
  warned: LinkCause | null;
  connectDelayed: boolean;
  closedBeforeConnect: boolean;
  retried: boolean;
  connected: boolean;
  handshakeError: { type: string; code: string } | null;
}

export class LinkMonitor {
  private readonly links = new Map<string, LinkState>();
  private stopped = false;

  constructor(
    /** `tcp://host:port` as configured. */
    private readonly endpoints: readonly string[],
    private readonly log: Logger,
    private readonly options: LinkMonitorOptions,
  ) {
    for (const endpoint of endpoints) this.links.set(endpoint, freshState('start'));
  }

  /** Starts the clocks: links not up `warnAfterMs` from now are reported. */
  start(): void {
    for (const [endpoint, state] of this.links) this.arm(endpoint, state);
  }

  /** One socket event of the link (zeromq.js's `events` stream, or tormq's ZMTP client: zmq/zmtp-xsub.ts). */
  observe(event: LinkEvent): void {
    if (this.stopped || event.address === undefined) return;
    const endpoint = matchEndpoint(event.address, this.endpoints);
    const state = this.links.get(endpoint);
    if (state === undefined) return;
    switch (event.type) {
      case 'connect:delay':
        state.connectDelayed = true;
        break;
      case 'close':
        if (!state.connected) state.closedBeforeConnect = true;
        break;
      case 'connect:retry':
        state.retried = true;
        break;
      case 'connect':
        state.connected = true;
        break;
      case 'handshake':
        // Up at the ZMTP handshake (libzmq reports it for plain links too), not at TCP connect.
        this.markUp(state);
        break;
      case 'handshake:error:protocol':
      case 'handshake:error:auth':
      case 'handshake:error:other': {
        const error = { type: event.type, code: event.error?.code ?? `ZAP ${event.error?.status}` };
        // Whichever side detects a mismatch first closes, leaving the other a bare EPIPE: never let
        // that hide the specific error an earlier (or later) attempt reported.
        if (state.handshakeError === null || specificity(error) >= specificity(state.handshakeError)) state.handshakeError = error;
        break;
      }
      case 'disconnect':
        if (state.up) {
          Object.assign(state, freshState('disconnect'));
          this.arm(endpoint, state);
        }
        break;
      default:
        return;
    }
    // After a warning, a clearer diagnosis (a handshake error after a refusal, say) is worth a second one.
    if (!state.up && state.warned !== null && state.timer === null) void this.warn(endpoint, state);
  }

  stop(): void {
    this.stopped = true;
    for (const state of this.links.values()) if (state.timer !== null) clearTimeout(state.timer);
  }

  private markUp(state: LinkState): void {
    if (state.timer !== null) clearTimeout(state.timer);
    Object.assign(state, freshState(state.since), { up: true });
  }

  private arm(endpoint: string, state: LinkState): void {
    if (this.options.warnAfterMs === 0) return;
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      state.timer = null;
      if (!state.up) void this.warn(endpoint, state);
    }, this.options.warnAfterMs);
    state.timer.unref();
  }

  private async warn(endpoint: string, state: LinkState): Promise<void> {
    let cause = diagnose(state, this.options.curve);
    const { host, port } = splitEndpoint(endpoint);
    let lookupError = '';
    if (cause === LinkCauses.UNRESOLVABLE) {
      // libzmq retries without saying why; a lookup tells a name that does not resolve from anything else.
      try {
        await lookup(host);
        cause = LinkCauses.UNKNOWN;
      } catch (error) {
        lookupError = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      }
      if (this.stopped || state.up) return;
    }
    if (cause === state.warned) return;
    state.warned = cause;
    this.log.warn(
      { mpc: endpoint, afterMs: this.options.warnAfterMs, since: state.since, cause, reason: explain(cause, host, port, lookupError, state) },
      'MPC link not up',
    );
  }
}

function specificity(error: { type: string; code: string }): number {
  return error.type === 'handshake:error:other' ? 0 : error.code === 'ERR_ZMTP_MECHANISM_MISMATCH' || error.type === 'handshake:error:auth' ? 2 : 1;
}

function freshState(since: 'start' | 'disconnect'): LinkState {
  return { up: false, since, timer: null, warned: null, connectDelayed: false, closedBeforeConnect: false, retried: false, connected: false, handshakeError: null };
}

/** The likeliest cause from what the events said. */
export function diagnose(state: Pick<LinkState, 'connectDelayed' | 'closedBeforeConnect' | 'retried' | 'connected' | 'handshakeError'>, curve: boolean): LinkCause {
  const handshake = state.handshakeError;
  if (handshake !== null) {
    if (handshake.code === 'ERR_ZMTP_MECHANISM_MISMATCH') return curve ? LinkCauses.CURVE_NOT_OFFERED : LinkCauses.CURVE_REQUIRED;
    if (handshake.type === 'handshake:error:auth') return LinkCauses.CURVE_KEY_REFUSED;
    if (curve) return LinkCauses.CURVE_SERVER_KEY;
    return LinkCauses.HANDSHAKE;
  }
  if (state.connected) return LinkCauses.HANDSHAKE;
  if (state.connectDelayed && state.closedBeforeConnect) return LinkCauses.REFUSED;
  if (state.connectDelayed) return LinkCauses.NO_ANSWER;
  if (state.retried) return LinkCauses.UNRESOLVABLE;
  return LinkCauses.UNKNOWN;
}

function explain(cause: LinkCause, host: string, port: string, lookupError: string, state: LinkState): string {
  const at = `${host}:${port}`;
  switch (cause) {
    case LinkCauses.REFUSED:
      return `connection refused: nothing listens on ${at} (is tormq-mpc running there with -p ${port}, and bound to an address this host reaches — its --host?)`;
    case LinkCauses.UNRESOLVABLE:
      return `cannot resolve ${host} (${lookupError}): check the host name in --mpc`;
    case LinkCauses.NO_ANSWER:
      return `no answer from ${at}: the host is down, or a firewall drops the connection`;
    case LinkCauses.CURVE_REQUIRED:
      return "the MPC requires CURVE and this gateway connects without it: give it --curve-server-key (the MPC's public key) and --curve-key-file";
    case LinkCauses.CURVE_NOT_OFFERED:
      return 'this gateway uses CURVE (--curve-server-key) but the MPC does not: start tormq-mpc with --curve-key-file, or drop the CURVE flags here';
    case LinkCauses.CURVE_SERVER_KEY:
      return `CURVE handshake failed (${state.handshakeError?.code || 'no detail'}): --curve-server-key is probably not this MPC's public key`;
    case LinkCauses.CURVE_KEY_REFUSED:
      return "the MPC refused this gateway's CURVE key: add its public key to the MPC's --curve-allow-gateways file";
    case LinkCauses.HANDSHAKE:
      return `connected, but the ZeroMQ handshake did not complete${state.handshakeError ? ` (${state.handshakeError.code})` : ''}: is ${at} the MPC's gateway port (tormq-mpc -p)?${state.handshakeError || state.since !== 'disconnect' ? '' : ' Or the MPC is stopped, hung or too busy to answer (the link had been up)'}`;
    default:
      return `no connection to ${at} yet, and libzmq reported nothing that tells why`;
  }
}

/** Events name the address ZeroMQ used (resolved); map it back onto the configured endpoint. */
function matchEndpoint(address: string, endpoints: readonly string[]): string {
  if (endpoints.includes(address)) return address;
  const port = address.slice(address.lastIndexOf(':') + 1);
  return endpoints.find((e) => e.slice(e.lastIndexOf(':') + 1) === port) ?? address;
}

function splitEndpoint(endpoint: string): { host: string; port: string } {
  const rest = endpoint.replace(/^tcp:\/\//, '');
  const i = rest.lastIndexOf(':');
  return { host: rest.slice(0, i).replace(/^\[|\]$/g, ''), port: rest.slice(i + 1) };
}
