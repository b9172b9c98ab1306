/**
 * The tormq browser client (src/client/tormq-client.ts), served by every worker at `/tormq-client.js`
 * as one ready-to-load ES module: the compiled file's bytes, read once when the worker starts.
 */
import { readFileSync } from 'node:fs';

/** Where the gateway serves the client module. */
export const CLIENT_MODULE_PATH = '/tormq-client.js';

/** The compiled client, or null when it is missing from this installation (then the path is a 404). */
export const clientModule: Buffer | null = (() => {
  try {
    return readFileSync(new URL('../../client/tormq-client.js', import.meta.url));
  } catch {
    return null;
  }
})();

/**
 * Response headers: a JavaScript module any page may import (module scripts are fetched with CORS, so
 * an application on another origin needs `access-control-allow-origin`), revalidated on each load so a
 * gateway upgrade reaches browsers.
 */
export const CLIENT_MODULE_HEADERS = {
  'content-type': 'text/javascript; charset=utf-8',
  'access-control-allow-origin': '*',
  'cache-control': 'no-cache',
} as const;
