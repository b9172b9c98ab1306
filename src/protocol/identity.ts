/**
 * gopusher-style identities on tormq topics. A connection that joins card `C` (a user: all of their
 * tabs and devices), optionally narrowed by app `A`, is subscribed to a topic:
 *
 * | join                         | topic  | reached by a push to |
 * |------------------------------|--------|----------------------|
 * | `{"card_id":"C"}`            | `C`    | `C`                  |
 * | `{"card_id":"C","app_id":"A"}` | `C:A`  | `C`, or `C` with app `A` |
 *
 * So the ordinary prefix matching does the work: a push to `C` is a publish on `C` (every connection
 * of the card, whatever the app), a push to `C` with app `A` is a publish on `C:A` (only that app's).
 * Card ids share the topic namespace with ordinary topics: `C` is also the ZeroMQ root, which keeps
 * per-card filtering upstream (a gateway receives only the cards its clients joined).
 */
import { topicError } from './topic.js';

/** Why `value` cannot be a card or app id (one topic segment), or `null` when it can; `name` names it in the message. */
export function identityIdError(value: unknown, name: string): string | null {
  if (typeof value !== 'string') return `${name} must be a string`;
  if (value.includes(':')) return `${name} must not contain ":"`;
  const problem = topicError(value);
  return problem === null ? null : `${name}: ${problem.replace(/^topic /, '')}`;
}

/** The topic a connection joining `cardId` (and `appId`, when given) subscribes to; also where a push goes. */
export function identityTopic(cardId: string, appId?: string | null): string {
  return appId === undefined || appId === null ? cardId : `${cardId}:${appId}`;
}
