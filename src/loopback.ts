/** Whether a listen address reaches only this machine, and what to say about it at start-up. */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/** `localhost`, 127.0.0.0/8, `::1` and IPv4-mapped loopback: only this machine can connect. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** `0.0.0.0` or `::`: every interface. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/**
 * The start-up hint for a loopback-only listener (null otherwise): the original TORMQ bound every
 * interface, so a migration that relies on that must be told how to open the port.
 */
export function loopbackHint(host: string, flag: string): string | null {
  return isLoopbackHost(host) ? `only this machine can connect (${host}); use ${flag} 0.0.0.0 to accept connections from other hosts` : null;
}

/**
 * The addresses a listener on `host` can be reached at: `host` itself, or for a wildcard every
 * interface address of this machine (IPv4 for 0.0.0.0, both families for ::).
 */
export function listenAddresses(host: string): string[] {
  if (!isWildcardHost(host)) return [host];
  const v6 = host !== '0.0.0.0';
  const addresses: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) if (entry.family === 'IPv4' || v6) addresses.push(entry.address);
  }
  return addresses;
}

/** `scheme://host:port` with IPv6 hosts in brackets. */
export function urlOf(scheme: string, host: string, port: number, path = ''): string {
  return `${scheme}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}${path}`;
}
