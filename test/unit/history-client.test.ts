/**
 * History requests with several MPCs linked: whose answer stands. Only the MPC a topic is published
 * through holds its stream; the others answer for any topic as if nothing was published.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HistoryClient, type HistoryResult } from '../../src/gateway/main/history-client.js';
import type { Upstream } from '../../src/gateway/main/upstream.js';
import type { HistoryReplyHeader, LinkRequest } from '../../src/zmq/gateway-link.js';

function twoMpcs() {
  const sent: LinkRequest[] = [];
  const upstream = { idText: 'gw', upCount: () => 2, request: (r: LinkRequest) => sent.push(r) } as unknown as Upstream;
  const client = new HistoryClient(upstream);
  const answer = (header: Omit<HistoryReplyHeader, 'type' | 'id'>, bodies: string[] = []) =>
    client.reply({ type: 'history', id: sent.at(-1)!.id, ...header }, bodies.map((b) => Buffer.from(b)));
  return { client, answer };
}

test('several MPCs: an "ok" from an MPC holding no stream of the topic does not speak for the one holding it', async () => {
  const { client, answer } = twoMpcs();
  // A client resumes from B's fresh epoch at 0 (its ack came before anyone published); A has since
  // published on the topic. B: "ok, nothing after 0"; A: another epoch. Before, B's ok won: recovered.
  const result = client.page('t', 'FreshOfB', 0, 100);
  answer({ status: 'ok', epoch: 'FreshOfB', top: 0, from: 1, more: false, held: false });
  answer({ status: 'epoch', epoch: 'EpochOfA', top: 3, from: 0, more: false });
  assert.deepEqual(await result, { status: 'epoch', epoch: 'EpochOfA', top: 3, from: 1, bodies: [], more: false });
});

test('several MPCs: the holder\'s messages win at once; when nobody holds the stream, the first answer stands', async () => {
  const { client, answer } = twoMpcs();
  const fromA = client.page('t', 'EpochOfA', 1, 100);
  answer({ status: 'epoch', epoch: 'FreshOfB', top: 0, from: 0, more: false, held: false });
  answer({ status: 'ok', epoch: 'EpochOfA', top: 3, from: 2, more: false }, ['two', 'three']);
  const page: HistoryResult = await fromA;
  assert.deepEqual([page.status, page.from, page.bodies.map(String)], ['ok', 2, ['two', 'three']]);
  const nobody = client.page('u', 'FreshOfA', 0, 100);
  answer({ status: 'ok', epoch: 'FreshOfA', top: 0, from: 1, more: false, held: false });
  answer({ status: 'epoch', epoch: 'FreshOfB', top: 0, from: 0, more: false, held: false });
  assert.deepEqual(await nobody, { status: 'ok', epoch: 'FreshOfA', top: 0, from: 1, bodies: [], more: false });
});
