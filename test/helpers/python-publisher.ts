/** Drives test/fixtures/tormq_publisher.py: the original Python SDK's wire behaviour, for real. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestClient } from './ws-client.js';

const SCRIPT = fileURLToPath(new URL('../../../test/fixtures/tormq_publisher.py', import.meta.url));
/** Debian's python3 with python3-zmq (the `python3` on PATH may be another build without it). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/**
 * Publishes `messages` from a Python PUB socket. `probeClient` must already be subscribed to
 * `probeTopic` (a root of its own): publishing starts once a probe reaches it.
 */
export async function publishFromPython(
  publisherPort: number,
  probeTopic: string,
  probeClient: TestClient,
  messages: Array<{ topic: string; data: unknown }>,
  options: { sendHighWaterMark?: number } = {},
): Promise<{ sent: number; probes: number }> {
  const args = [SCRIPT, String(publisherPort), probeTopic];
  if (options.sendHighWaterMark !== undefined) args.push(String(options.sendHighWaterMark));
  const child = spawn(SYSTEM_PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    await probeClient.waitFor((m) => m.includes(`"topic": "${probeTopic}"`), 0, 15_000);
  } catch (error) {
    child.kill();
    throw new Error(`python publisher never got through: ${(error as Error).message}; stderr: ${stderr}`);
  }
  child.stdin.write('go\n');
  for (const m of messages) child.stdin.write(`${JSON.stringify(m)}\n`);
  child.stdin.end();
  const code = await exited;
  if (code !== 0) throw new Error(`python publisher exited ${code}: ${stderr}`);
  return JSON.parse(stdout.trim()) as { sent: number; probes: number };
}
