/**
 * Server -> client WebSocket text frames (RFC 6455 §5.2: FIN, opcode 1, unmasked), built once per
 * published message and written as-is to every recipient. ws would frame per `send`; building the
 * bytes once is what makes a broadcast cost one buffer, not one per subscriber.
 */

/** Bytes of header for a payload of `length` bytes. */
export function frameHeaderLength(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/** A complete text frame whose payload is `source[offset, offset + length)`. */
export function encodeTextFrame(source: Uint8Array, offset: number, length: number): Buffer {
  const headerLength = frameHeaderLength(length);
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x81;
  if (length < 126) {
    frame[1] = length;
  } else if (length < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  frame.set(source.subarray(offset, offset + length), headerLength);
  return frame;
}

/**
 * How many pieces a client message may arrive in: reads of one frame still arriving (ws's
 * `maxBufferedChunks`) and frames of one fragmented message (`maxFragments`). ws holds each piece as a
 * Buffer of its own, ≈ 200 bytes of memory however small the piece. 256 covers a 64 KB frame read one
 * TCP segment at a time even at an IPv6-minimum MSS (1,220 bytes: 54 reads), and any client that
 * fragments (browsers do not); a larger `maxFrameBytes` allows one piece per KB.
 */
export function maxMessagePieces(maxFrameBytes: number): number {
  return Math.max(256, Math.ceil(maxFrameBytes / 1024));
}
