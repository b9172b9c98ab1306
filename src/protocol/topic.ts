/**
 * Topics: `:`-separated segments, e.g. `ehr:api:1`. A message on `M` reaches a subscriber of `S`
 * when `S === M` or `S` starts with `M + ':'` (DESIGN.md, "Matching").
 */

export const SEPARATOR = ':';
const SEPARATOR_CODE = 0x3a;

/** Default maximum topic length in UTF-16 code units. */
export const DEFAULT_MAX_TOPIC_LENGTH = 256;

/**
 * Why `topic` is not a valid topic, or `null` when it is. Valid: 1..maxLength characters, no empty
 * segment (no leading, trailing or doubled `:`), no control characters, no lone surrogates.
 */
export function topicError(topic: unknown, maxLength = DEFAULT_MAX_TOPIC_LENGTH): string | null {
  if (typeof topic !== 'string') return 'topic must be a string';
  const n = topic.length;
  if (n === 0) return 'topic must not be empty';
  if (n > maxLength) return `topic must be at most ${maxLength} characters`;
  let segmentStart = 0;
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return 'topic must not contain control characters';
    if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate (valid JSON as "\ud800", not Unicode) would become U+FFFD on its way to the
      // MPC as UTF-8: the route would never be confirmed under the name it was asked for.
      const next = topic.charCodeAt(i + 1);
      if (c >= 0xdc00 || !(next >= 0xdc00 && next <= 0xdfff)) return 'topic must be well-formed Unicode (no lone surrogates)';
      i++;
    }
    if (c === SEPARATOR_CODE) {
      if (i === segmentStart) return 'topic must not have empty segments';
      segmentStart = i + 1;
    }
  }
  if (segmentStart === n) return 'topic must not have empty segments';
  return null;
}

/** Number of segments of a valid topic: `ehr:api:1` has 3 (what it costs in trie nodes). */
export function topicDepth(topic: string): number {
  let depth = 1;
  for (let i = topic.indexOf(SEPARATOR); i !== -1; i = topic.indexOf(SEPARATOR, i + 1)) depth++;
  return depth;
}

/** The first segment of a topic: the ZeroMQ routing key (`ehr` for `ehr:api:1`). */
export function rootOf(topic: string): string {
  const i = topic.indexOf(SEPARATOR);
  return i === -1 ? topic : topic.slice(0, i);
}

/** `true` when a message published on `published` is delivered to a subscription on `subscribed`. */
export function topicMatches(published: string, subscribed: string): boolean {
  return (
    subscribed === published ||
    (subscribed.length > published.length &&
      subscribed.charCodeAt(published.length) === SEPARATOR_CODE &&
      subscribed.startsWith(published))
  );
}

/** `true` when `topic` lies inside `prefix` (equal, or below it). Used for grants. */
export function isWithin(topic: string, prefix: string): boolean {
  return topicMatches(prefix, topic);
}
