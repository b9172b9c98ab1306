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
