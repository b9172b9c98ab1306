/**
 * Drives test/fixtures/gopusher_grpc_client.py: an independent gRPC client (Debian's python3-grpcio,
 * stubs compiled from proto/rpc.proto by python3-grpc-tools when it starts).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SYSTEM_PYTHON } from './python-publisher.js';

const SCRIPT = fileURLToPath(new URL('../../../test/fixtures/gopusher_grpc_client.py', import.meta.url));
export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));

export type GrpcResult = { reply: Record<string, unknown> } | { code: string; details: string };

export class PythonGrpcClient {
  private readonly lines: string[] = [];
  private readonly waiters: Array<(line: string) => void> = [];
  private stderr = '';
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(line);
      else this.lines.push(line);
    });
    child.stderr.on('data', (d) => (this.stderr += d));
  }

  /** Starts the client against `127.0.0.1:port`; resolves once its stubs are compiled. */
  static async start(port: number): Promise<PythonGrpcClient> {
    const client = new PythonGrpcClient(spawn(SYSTEM_PYTHON, [SCRIPT, PROTO_DIR, `127.0.0.1:${port}`], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const ready = JSON.parse(await client.next()) as { ready?: boolean };
    if (ready.ready !== true) throw new Error(`python gRPC client did not start: ${client.stderr}`);
    return client;
  }

  /** One call: `Push`, `System`, `IsOnline` or `Group`, the request as proto3 JSON. */
  async call(method: string, request: Record<string, unknown> = {}, metadata: Array<[string, string]> = []): Promise<GrpcResult> {
    this.child.stdin.write(`${JSON.stringify({ method, request, metadata })}\n`);
    return JSON.parse(await this.next()) as GrpcResult;
  }

  close(): void {
    this.child.stdin.end();
  }

  private next(timeoutMs = 30_000): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python gRPC client: no answer within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.child.once('exit', (code) => reject(new Error(`python gRPC client exited ${code}: ${this.stderr}`)));
      this.waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  }
}
