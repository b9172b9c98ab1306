/**
 * The gateway's one ZeroMQ SUB, connected to every MPC. It subscribes to exactly the roots some worker
 * needs (Routing decides), and tracks whether each MPC link is up for /healthz. ZeroMQ reconnects by
 * itself and re-sends the subscriptions when an MPC comes back.
 */
import { Subscriber, type Event } from 'zeromq';
import type { Logger } from '../../log.js';
import { curveClientOptions, type CurveClientKeys } from '../../zmq/curve.js';

/** How long a root stays subscribed upstream after its last subscriber left (see `release`). */
const UNSUBSCRIBE_DELAY_MS = 1000;

export class Upstream {
  private readonly socket: Subscriber;
  private readonly connected = new Set<string>();
  /** Roots no worker wants any more, waiting to be unsubscribed (see `release`). */
  private readonly pendingUnsubscribes = new Map<string, NodeJS.Timeout>();
  private readonly endpoints: string[];
  private closed = false;
  /** With CURVE a link is up once the handshake succeeds, not at TCP connect. */
  private readonly upEvent: 'connect' | 'handshake';

  constructor(
    endpoints: readonly string[],
    private readonly log: Logger,
    /** CURVE keys for the MPC link (encrypted, and authenticated by the MPC); null = plain TCP. */
    curve: CurveClientKeys | null = null,
    highWaterMark = 100_000,
    /** Sees every socket event first (the LinkMonitor, which explains links that stay down). */
    private readonly onLinkEvent: (event: Event) => void = () => {},
  ) {
    this.socket = new Subscriber({
      receiveHighWaterMark: highWaterMark,
      reconnectInterval: 100,
      reconnectMaxInterval: 2000,
      linger: 0,
      ...(curve === null ? {} : curveClientOptions(curve)),
    });
    // Up at the ZMTP handshake, CURVE or not: a plain gateway's TCP connect to a CURVE MPC is not a link.
    this.upEvent = 'handshake';
    this.endpoints = endpoints.map((e) => `tcp://${e}`);
  }

  /** Connects and feeds every received message to `onMessage` until `close`. */
  start(onMessage: (frames: Buffer[]) => void): Promise<void> {
    void this.watchLinks();
    for (const endpoint of this.endpoints) this.socket.connect(endpoint);
    return this.receive(onMessage);
  }

  /** Some worker wants `root`: subscribe, or cancel an unsubscribe that has not gone out yet. */
  want(root: string): void {
    const pending = this.pendingUnsubscribes.get(root);
    if (pending === undefined) {
      this.socket.subscribe(root);
      return;
    }
    clearTimeout(pending);
    this.pendingUnsubscribes.delete(root);
  }

  /**
   * No worker wants `root` any more: unsubscribe once it has stayed unwanted for a moment. A client
   * flooding subscribe/unsubscribe would otherwise churn ZeroMQ subscription messages through the MPC
   * to every publisher; those travel on pipes with high-water marks, and a lost one leaves a root
   * silently unsubscribed. Messages arriving meanwhile are dropped as `unrouted` (counted).
   */
  release(root: string): void {
    this.pendingUnsubscribes.set(
      root,
      setTimeout(() => {
        this.pendingUnsubscribes.delete(root);
        this.socket.unsubscribe(root);
      }, UNSUBSCRIBE_DELAY_MS).unref(),
    );
  }

  /** Every MPC link is connected. */
  isUp(): boolean {
    return this.connected.size === this.endpoints.length;
  }

  links(): Array<{ endpoint: string; up: boolean }> {
    return this.endpoints.map((endpoint) => ({ endpoint, up: this.connected.has(endpoint) }));
  }

  close(): void {
    this.closed = true;
    for (const timer of this.pendingUnsubscribes.values()) clearTimeout(timer);
    this.pendingUnsubscribes.clear();
    this.socket.close();
  }

  private async receive(onMessage: (frames: Buffer[]) => void): Promise<void> {
    try {
      for await (const frames of this.socket) onMessage(frames);
    } catch (error) {
      if (!this.closed) throw error;
    }
  }

  private async watchLinks(): Promise<void> {
    try {
      for await (const event of this.socket.events) {
        this.onLinkEvent(event);
        if (event.type === 'handshake:error:auth' || event.type === 'handshake:error:protocol') {
          // The MPC refused this gateway's CURVE key, or the two sides disagree on the mechanism.
          this.log.error({ mpc: normalise(event.address, this.endpoints), err: event.error?.message }, 'MPC link handshake failed');
        } else if (event.type === this.upEvent) {
          const endpoint = normalise(event.address, this.endpoints);
          this.connected.add(endpoint);
          this.log.info({ mpc: endpoint }, 'MPC link up');
        } else if (event.type === 'disconnect') {
          const endpoint = normalise(event.address, this.endpoints);
          this.connected.delete(endpoint);
          this.log.warn({ mpc: endpoint }, 'MPC link down; reconnecting');
        }
      }
    } catch {
      // Observer ends with the socket.
    }
  }
}

/** Events name the resolved address; map it back onto the configured endpoint. */
function normalise(address: string, endpoints: string[]): string {
  return endpoints.includes(address) ? address : (endpoints.find((e) => portOf(e) === portOf(address)) ?? address);
}

function portOf(endpoint: string): string {
  return endpoint.slice(endpoint.lastIndexOf(':') + 1);
}
