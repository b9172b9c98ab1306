// comlink ships ESM builds without an `exports` map or `.d.mts` files: point the ESM paths at its types.
declare module 'comlink/dist/esm/comlink.mjs' {
  export * from 'comlink';
}
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink';
  interface NodeEndpoint {
    postMessage(message: unknown, transfer?: unknown[]): void;
    on(type: string, listener: (value: unknown) => void, options?: object): void;
    off(type: string, listener: (value: unknown) => void, options?: object): void;
    start?(): void;
  }
  export default function nodeEndpoint(nep: NodeEndpoint): Endpoint;
}
