/**
 * A ZAP handler (ZeroMQ RFC 27) that admits CURVE clients by public key. libzmq asks the handler
 * bound at `inproc://zeromq.zap.01` in the socket's context about every CURVE handshake; each
 * server socket names its `zapDomain`, and each domain here has its own allowlist.
 *
 * One handler serves the whole process (the endpoint is per context and zeromq.js sockets share the
 * default one); MPCs register and release domains. A request for a domain nobody registered is
 * refused: fail closed.
 */
import type { Router } from 'zeromq';
import { zeromq } from './zeromq.js';
import { z85Encode } from './curve.js';

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

export interface ZapDecision {
  domain: string;
  /** The client's public key (Z85), or null for a non-CURVE request. */
  publicKey: string | null;
  /** The client's IP address. */
  address: string;
}

export interface ZapDomain {
  /** Public keys (Z85) admitted; null admits any key (encryption without client authentication). */
  allowed: ReadonlySet<string> | null;
  onDenied?(decision: ZapDecision): void;
}

let router: Router | null = null;
let binding: Promise<void> | null = null;
const domains = new Map<string, ZapDomain>();
let nextDomain = 1;

/**
 * Registers a domain and makes sure the handler runs. Resolves with the domain name to set as the
 * server socket's `zapDomain` (before it binds). Call the returned `release` when the socket closes.
 */
export async function registerZapDomain(label: string, domain: ZapDomain): Promise<{ name: string; release(): void }> {
  const name = `tormq-${nextDomain++}-${label}`;
  domains.set(name, domain);
  if (router === null) {
    const socket = new (zeromq().Router)({ linger: 0 });
    router = socket;
    binding = socket.bind(ZAP_ENDPOINT).then(() => void serve(socket));
  }
  await binding;
  return {
    name,
    release() {
      if (!domains.delete(name) || domains.size > 0 || router === null) return;
      router.close();
      router = null;
      binding = null;
    },
  };
}

async function serve(socket: Router): Promise<void> {
  try {
    for await (const frames of socket) {
      // [routing id, empty, version, request id, domain, address, identity, mechanism, credentials...]
      const [routingId, empty, version, requestId, domainFrame, addressFrame, , mechanism, credentials] = frames;
      if (routingId === undefined || requestId === undefined) continue;
      const domainName = domainFrame?.toString() ?? '';
      const publicKey = mechanism?.toString() === 'CURVE' && credentials?.length === 32 ? z85Encode(credentials) : null;
      const domain = domains.get(domainName);
      const ok = version?.toString() === '1.0' && domain !== undefined && publicKey !== null &&
        (domain.allowed === null || domain.allowed.has(publicKey));
      if (!ok) domain?.onDenied?.({ domain: domainName, publicKey, address: addressFrame?.toString() ?? '' });
      await socket.send([routingId, empty ?? '', '1.0', requestId, ok ? '200' : '400', ok ? 'OK' : 'Denied', ok ? publicKey! : '', '']);
    }
  } catch {
    // The socket was closed (last domain released).
  }
}
