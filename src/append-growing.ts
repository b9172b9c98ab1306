/**
 * Reads gathered into one buffer, for parsers that must wait for more bytes (the ZMTP reader, the HTTP
 * ingress's body). Kept as a list, each read is a Buffer of its own, ≈ 250 bytes of memory however
 * small: a frame or body dripped one byte per TCP segment cost ≈ 250× its size (300 KB grew the MPC's
 * RSS by 74 MB). Gathered this way, what is held is at most about twice what arrived.
 */

/**
 * `chunk` appended to `held[0, used)`: in `held` when it has room, else in a new buffer that doubles
 * (at least `minBytes`) but never passes `cap` unless the bytes themselves do, so that a size announced
 * ahead of its bytes allocates nothing ahead of them. Returns the buffer now holding `used + chunk.length`.
 */
export function appendGrowing(held: Buffer, used: number, chunk: Buffer, cap: number, minBytes: number): Buffer {
  const total = used + chunk.length;
  let into = held;
  if (total > held.length) {
    into = Buffer.allocUnsafe(Math.max(total, Math.min(cap, Math.max(2 * total, minBytes))));
    held.copy(into, 0, 0, used);
  }
  chunk.copy(into, used);
  return into;
}
