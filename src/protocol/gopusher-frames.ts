/**
 * gopusher's server -> client frames, byte for byte. gopusher writes every frame with gorilla's
 * `Conn.WriteJSON(ServerMsg{Type: 1, Data: …})`: Go's `encoding/json` Encoder, which escapes `<`, `>`,
 * `&`, U+2028 and U+2029 as `\u003c`-style sequences and ends each value with a newline. A connection
 * that joined gets exactly that:
 *
 * | when                      | frame                           |
 * |---------------------------|---------------------------------|
 * | join, ping                | `{"type":1,"data":"ok"}` + `\n` |
 * | a push with content `X`   | `{"type":1,"data":"X"}` + `\n`  |
 *
 * A push is published as an ordinary message (`{"topic": "C", "data": {"from": …, "content": X}}`,
 * what TORMQ connections subscribed to the card's topic receive unchanged); the joined connections'
 * frame is derived from that body once per message (delivery.ts), never per connection.
 */

import { nestedDeeperThan } from './json-depth.js';

/** The answer to a join and to a ping, on a connection that joined. */
export const GOPUSHER_OK_FRAME = '{"type":1,"data":"ok"}\n';

const GO_ESCAPED = /[<>&\u2028\u2029]/g;
const goEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * JSON as Go's `encoding/json` Encoder writes it (HTML-safe escaping). The characters it escapes
 * only ever occur inside JSON strings, so escaping the serialised text is the same as escaping each
 * string. (Go before 1.22 wrote `\b` and `\f` as `\u0008` and `\u000c`; since 1.22, as JSON.stringify
 * does.)
 */
export function goJson(value: unknown): string {
  return (JSON.stringify(value) ?? 'null').replace(GO_ESCAPED, goEscape);
}

/**
 * What a joined connection receives for a published body: the push's `content` (`data.content` of a
 * body published by a gopusher push), or for any other message on the card's topic its `data`.
 * gopusher's content is always a string; tormq's HTTP `/push` also takes any JSON value as content,
 * which is sent as that value.
 */
export function gopusherPayload(body: unknown): unknown {
  if (body === null || typeof body !== 'object') return '';
  const data = (body as { data?: unknown }).data;
  if (data !== null && typeof data === 'object' && !Array.isArray(data) && Object.hasOwn(data, 'content')) {
    return (data as { content: unknown }).content ?? '';
  }
  return data === undefined ? '' : data;
}

/**
 * Deepest payload re-encoded as JSON. JSON.stringify recurses: a publisher's data nested some
 * thousands of levels deep (the MPC takes any depth; found by `npm run fuzz`) overflowed the stack and
 * took the worker down. Such a payload is sent as the body's text instead, a JSON string.
 */
export const MAX_PAYLOAD_DEPTH = 256;

/** The gopusher frame text for a published body (UTF-8 JSON text). */
export function gopusherPushText(bodyText: string): string {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    // The MPC forwards only JSON objects; anything else would still reach the client as text.
    return `{"type":1,"data":${goJson(bodyText)}}\n`;
  }
  const payload = gopusherPayload(body);
  if (typeof payload === 'object' && payload !== null && nestedDeeperThan(payload, MAX_PAYLOAD_DEPTH)) return `{"type":1,"data":${goJson(bodyText)}}\n`;
  return `{"type":1,"data":${goJson(payload)}}\n`;
}
