/**
 * gopusher's online query on the admin port: `GET /online?card_id=C[&app_id=A]` answers whether, and
 * through how many connections, that identity is connected to THIS gateway process (each gateway
 * answers for its own clients; ask every gateway, or sum, for a fleet-wide view).
 */
import { identityIdError, identityTopic } from '../../protocol/identity.js';

export interface OnlineAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** Per-worker counts of connections a publish on a topic reaches (WorkerControl.reachable over comlink). */
export type ReachableCounter = (topic: string) => Promise<number[]>;

export async function answerOnline(query: URLSearchParams, reachable: ReachableCounter): Promise<OnlineAnswer> {
  const cardId = query.get('card_id');
  const appId = query.get('app_id');
  const problem = identityIdError(cardId ?? undefined, 'card_id') ?? (appId === null ? null : identityIdError(appId, 'app_id'));
  if (problem !== null) return { status: 400, body: { error: problem } };
  const perWorker = await reachable(identityTopic(cardId!, appId));
  const connections = perWorker.reduce((sum, n) => sum + n, 0);
  const body: Record<string, unknown> = { card_id: cardId, online: connections > 0, connections };
  if (appId !== null) body.app_id = appId;
  return { status: 200, body };
}
