import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopicTrie, type TrieSubscriber } from '../../src/gateway/worker/trie.js';
import { topicMatches } from '../../src/protocol/topic.js';

class Sub implements TrieSubscriber {
  mark = 0;
  constructor(readonly name: string) {}
}

function recipients(trie: TopicTrie<Sub>, topic: string): string[] {
  const seen: string[] = [];
  trie.forEachRecipient(topic, (s) => seen.push(s.name));
  return seen.sort();
}

describe('TopicTrie', () => {
  // DESIGN.md "Matching": published M reaches subscribed S when S == M or S starts with M + ":".
  const table: Array<[published: string, subscribed: string, delivered: boolean]> = [
    ['ehr', 'ehr', true],
    ['ehr', 'ehr:api', true],
    ['ehr', 'ehr:api:1', true],
    ['ehr:api', 'ehr', false],
    ['ehr:api', 'ehr:api', true],
    ['ehr:api', 'ehr:api:1', true],
    ['ehr:api:1', 'ehr', false],
    ['ehr:api:1', 'ehr:api', false],
    ['ehr:api:1', 'ehr:api:1', true],
    ['ehr:api:1', 'ehr:api:1:x', true],
    ['ehr', 'ehrx', false],
    ['ehrx', 'ehr', false],
    ['ehr:api', 'ehr:apix', false],
    ['ehr:ap', 'ehr:api', false],
  ];

  for (const [published, subscribed, delivered] of table) {
    test(`publish "${published}" ${delivered ? 'reaches' : 'does not reach'} "${subscribed}"`, () => {
      const trie = new TopicTrie<Sub>();
      trie.add(subscribed, new Sub('s'));
      assert.deepEqual(recipients(trie, published), delivered ? ['s'] : []);
      assert.equal(topicMatches(published, subscribed), delivered, 'topicMatches agrees with the trie');
    });
  }

  test('a connection with several matching subscriptions is visited once per message', () => {
    const trie = new TopicTrie<Sub>();
    const both = new Sub('both');
    trie.add('ehr', both);
    trie.add('ehr:api', both);
    trie.add('ehr:api:1', both);
    const other = new Sub('other');
    trie.add('ehr:api:1', other);
    assert.deepEqual(recipients(trie, 'ehr'), ['both', 'other']);
    assert.deepEqual(recipients(trie, 'ehr'), ['both', 'other'], 'and again for the next message');
    assert.equal(trie.forEachRecipient('ehr:api', () => {}), 2);
  });

  test('add is idempotent and remove reports what it did', () => {
    const trie = new TopicTrie<Sub>();
    const s = new Sub('s');
    assert.equal(trie.add('a:b', s), true);
    assert.equal(trie.add('a:b', s), false);
    assert.equal(trie.size, 1);
    assert.equal(trie.remove('a:c', s), false);
    assert.equal(trie.remove('a', s), false);
    assert.equal(trie.remove('a:b', s), true);
    assert.equal(trie.remove('a:b', s), false);
    assert.equal(trie.size, 0);
  });

  test('unsubscribing prunes every empty node; every node is reported with its whole topic as it comes and goes', () => {
    const events: string[] = [];
    const trie = new TopicTrie<Sub>({
      onTopicAdded: (t) => events.push(`+${t}`),
      onTopicRemoved: (t) => events.push(`-${t}`),
    });
    const a = new Sub('a');
    const b = new Sub('b');
    trie.add('x:1:2:3', a);
    trie.add('x:1', b);
    trie.add('y', a);
    // The nodes are the topics whose messages these subscriptions receive: each one and its ancestors.
    assert.deepEqual(events, ['+x', '+x:1', '+x:1:2', '+x:1:2:3', '+y']);
    assert.equal(trie.nodeCount(), 5);
    events.length = 0;
    trie.remove('x:1:2:3', a);
    assert.equal(trie.nodeCount(), 3, 'x:1:2 and x:1:2:3 pruned, x:1 kept (b is there)');
    assert.deepEqual(events, ['-x:1:2:3', '-x:1:2']);
    trie.remove('x:1', b);
    trie.remove('y', a);
    assert.equal(trie.nodeCount(), 0);
    assert.deepEqual(events, ['-x:1:2:3', '-x:1:2', '-x:1', '-x', '-y']);
  });

  test('wide and deep trees deliver to exactly the subtree', () => {
    const trie = new TopicTrie<Sub>();
    const all: Sub[] = [];
    for (let i = 0; i < 50; i++) {
      for (let j = 0; j < 20; j++) {
        const s = new Sub(`r:${i}:${j}`);
        all.push(s);
        trie.add(`r:${i}:${j}`, s);
      }
    }
    assert.equal(trie.forEachRecipient('r', () => {}), 1000);
    assert.equal(trie.forEachRecipient('r:7', () => {}), 20);
    assert.deepEqual(recipients(trie, 'r:7:3'), ['r:7:3']);
    assert.equal(trie.forEachRecipient('r:70', () => {}), 0);
    assert.equal(trie.forEachRecipient('q', () => {}), 0);
  });
});
