/**
 * The usual end-to-end fixture: a real tormq-mpc and tormq-gateway (port 0), an SDK publisher, and
 * WebSocket clients that are all closed before the servers stop. Call inside a `describe`.
 */
import { after, before } from 'node:test';
import type { WebSocket } from 'ws';
import { Publisher } from '../../src/index.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type MpcProcess } from './processes.js';
import { TestClient } from './ws-client.js';

export interface SystemOptions {
  /** Extra tormq-gateway flags (the defaults are port 0, admin port 0, 2 workers). */
  gatewayArgs?: string[];
  /** Extra tormq-mpc flags after `-s 0 -p 0`. */
  mpcArgs?: string[];
  /** The gateway's open-files limit (`ulimit -n`). */
  gatewayFileLimit?: number;
}

export interface System {
  mpc: MpcProcess;
  gateway: GatewayProcess;
  publisher: Publisher;
  readonly clients: TestClient[];
  /** Connects a client to the gateway's WebSocket URL (or `url`), closed in the teardown. */
  connect(options?: ConstructorParameters<typeof WebSocket>[2], url?: string): Promise<TestClient>;
}

export function useSystem(options: SystemOptions = {}): System {
  const system = {
    clients: [] as TestClient[],
    async connect(wsOptions?: ConstructorParameters<typeof WebSocket>[2], url?: string) {
      const client = await TestClient.connect(url ?? system.gateway.url, wsOptions);
      system.clients.push(client);
      return client;
    },
  } as System;

  before(async () => {
    system.mpc = await startMpcProcess(undefined, options.mpcArgs);
    system.gateway = await startGatewayProcess(system.mpc.gatewayPort, options.gatewayArgs, { fileLimit: options.gatewayFileLimit });
    system.publisher = new Publisher('127.0.0.1', system.mpc.publisherPort);
  });

  after(async () => {
    await Promise.all(system.clients.map((c) => c.close()));
    await system.publisher?.close();
    await system.gateway?.stop();
    await system.mpc?.stop();
  });

  return system;
}
