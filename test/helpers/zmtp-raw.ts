/**
 * Raw ZMTP 3.0 over TCP for the tests of tormq's own ZMTP endpoints (the MPC's publisher port and
 * gateway link): greetings, commands and frames written by hand, and the frames a peer sent parsed.
 */
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/** A ZMTP 3.0 greeting (NULL unless `mechanism` says otherwise). */
export function greeting(mechanism = 'NULL'): Buffer {
  const g = Buffer.alloc(64);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3;
  g.write(mechanism, 12, 'latin1');
  return g;
}

export function readyCommand(socketType: string): Buffer {
  const body = Buffer.concat([Buffer.from([5]), Buffer.from('READY'), Buffer.from([11]), Buffer.from('Socket-Type'), Buffer.alloc(4), Buffer.from(socketType)]);
  body.writeUInt32BE(socketType.length, 1 + 5 + 1 + 11);
  return Buffer.concat([Buffer.from([0x04, body.length]), body]);
}

/** A message frame (long form when over 255 bytes). */
export function frame(data: Buffer | string, more: boolean): Buffer {
  const bytes = Buffer.from(data);
  if (bytes.length > 255) {
    const header = Buffer.alloc(9);
    header[0] = (more ? 1 : 0) | 2;
    header.writeBigUInt64BE(BigInt(bytes.length), 1);
    return Buffer.concat([header, bytes]);
  }
  return Buffer.concat([Buffer.from([more ? 1 : 0, bytes.length]), bytes]);
}

export function message(parts: Array<Buffer | string>): Buffer {
  return Buffer.concat(parts.map((p, i) => frame(p, i < parts.length - 1)));
}

/** Connects raw TCP to an MPC port; `received` collects what the MPC sends. */
export type RawPeer = net.Socket & { received: Buffer[]; ended: Promise<unknown> };

export async function rawConnect(port: number): Promise<RawPeer> {
  const socket = net.connect(port, '127.0.0.1') as unknown as RawPeer;
  socket.received = [];
  socket.on('data', (d: Buffer) => socket.received.push(d));
  socket.on('error', () => {});
  socket.ended = once(socket, 'close');
  await once(socket, 'connect');
  return socket;
}

/** A ZMTP 3.1 command frame (e.g. SUBSCRIBE with its data). */
export function commandFrame(name: string, data: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1'), Buffer.from(data)]);
  return Buffer.concat([Buffer.from([0x04, body.length]), body]);
}

/** The frames in what a peer sent after its 64-byte greeting (a trailing partial frame is left out). */
export function parseFrames(received: Buffer[]): Array<{ command: boolean; more: boolean; data: Buffer }> {
  const all = Buffer.concat(received);
  const frames: Array<{ command: boolean; more: boolean; data: Buffer }> = [];
  let at = 64;
  while (at + 2 <= all.length) {
    const flags = all[at]!;
    const long = (flags & 2) !== 0;
    if (long && at + 9 > all.length) break;
    const size = long ? Number(all.readBigUInt64BE(at + 1)) : all[at + 1]!;
    const start = at + (long ? 9 : 2);
    if (start + size > all.length) break;
    frames.push({ command: (flags & 4) !== 0, more: (flags & 1) !== 0, data: all.subarray(start, start + size) });
    at = start + size;
  }
  return frames;
}

/**
 * Handshakes cut or reset at every stage: `full` (greeting, READY, a message) sent up to each cut, the
 * last `lastShort` bytes before its end, then the connection closed (even cuts) or reset (odd ones).
 */
export async function cutAtEveryStage(port: number, full: Buffer, lastShort: number): Promise<void> {
  for (const cut of [0, 1, 10, 11, 63, 64, 65, 70, full.length - lastShort]) {
    const peer = await rawConnect(port);
    peer.write(full.subarray(0, cut));
    await sleep(5);
    if (cut % 2 === 0) peer.resetAndDestroy();
    else peer.destroy();
  }
}

/**
 * Peers a plain ZMTP endpoint must close: an HTTP request, a ZMTP peer of socket type `wrongType`, a
 * CURVE greeting. Resolves once the endpoint has closed all three.
 */
export async function wrongPeers(port: number, wrongType: string): Promise<void> {
  const http = await rawConnect(port);
  http.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.padEnd(64, ' '));
  await http.ended;
  const wrong = await rawConnect(port);
  wrong.write(Buffer.concat([greeting(), readyCommand(wrongType)]));
  await wrong.ended;
  const curve = await rawConnect(port);
  curve.write(greeting('CURVE'));
  await curve.ended;
}
