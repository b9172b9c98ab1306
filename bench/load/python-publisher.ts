/**
 * Drives bench/load/python-publisher.py (Debian's python3-zmq): the original SDK's wire shape at a
 * fraction of the tormq SDK's CPU per message, so a high unicast rate is not limited by the publisher
 * sharing the load core with the client fleet. It inherits this process's core (taskset -a).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../../bench/load/python-publisher.py', import.meta.url));
/** Debian's python3 with python3-zmq (`npm run setup` installs it). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export class PythonPublisher {
  private readonly waiting: Array<(line: string) => void> = [];
  private stderr = '';
  private next = 0;

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => this.waiting.shift()?.(line));
    child.stderr!.on('data', (d) => (this.stderr += String(d)));
    child.once('exit', () => {
      for (const w of this.waiting.splice(0)) w(`exited: ${this.stderr.slice(0, 500)}`);
    });
  }

  static async start(port: number, kind: 'unicast' | 'broadcast', connections: number, pad: string): Promise<PythonPublisher> {
    const child = spawn(SYSTEM_PYTHON, [SCRIPT, String(port), kind, String(connections), pad], { stdio: ['pipe', 'pipe', 'pipe'] });
    const pub = new PythonPublisher(child);
    const line = await pub.line();
    if (line !== 'ready') throw new Error(`python publisher: ${line} (needs /usr/bin/python3 with python3-zmq: npm run setup)`);
    return pub;
  }

  /** Publishes messages `first` .. `first + count - 1` at `rate` per second; resolves to the number sent. */
  async publish(first: number, count: number, rate: number): Promise<number> {
    const tag = String(this.next++);
    this.child.stdin!.write(`${tag} ${first} ${count} ${rate}\n`);
    const line = await this.line();
    const m = /^done (\S+) (\d+)$/.exec(line);
    if (m === null || m[1] !== tag) throw new Error(`python publisher: ${line}`);
    return Number(m[2]);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private line(): Promise<string> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}
