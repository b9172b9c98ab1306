/**
 * zeromq.js, loaded on first use. Loading it maps libzmq and its addon (≈ 9 MB of RSS, measured:
 * `node -e "import('zeromq')"` 50 MB against 41 bare), which an MPC on plain TCP never needs: its
 * publisher and gateway ports are served by tormq's own ZMTP endpoints (zmtp-subscriber.ts,
 * zmtp-publisher.ts). Modules that may run in such a process take zeromq.js from here; the rest
 * import it as usual (both get the same module instance).
 */
import { createRequire } from 'node:module';
import type * as Zmq from 'zeromq';

const require = createRequire(import.meta.url);
let loaded: typeof Zmq | null = null;

export function zeromq(): typeof Zmq {
  return (loaded ??= require('zeromq') as typeof Zmq);
}
