/**
 * Topic-prefix trie, one per worker. Keyed by `:` segments; a subscription sits at its topic's node.
 * A message on `M` walks to node(M) and reaches every subscriber in that subtree, so delivery costs
 * the walk plus the recipients, independent of how many other topics exist.
 *
 * The nodes are exactly the topics whose messages some subscriber here receives (each subscription
 * and its ancestors): the trie reports each node as it appears and goes, and the worker routes those
 * topics from the main thread (interest-routing.ts).
 */

/** What the trie stores: `mark` is scratch space for at-most-once delivery per message. */
export interface TrieSubscriber {
  mark: number;
}

interface TrieNode<T> {
  readonly segment: string;
  /** The node's whole topic. */
  readonly topic: string;
  readonly parent: TrieNode<T> | null;
  children: Map<string, TrieNode<T>> | null;
  subscribers: Set<T> | null;
}

export interface TrieEvents {
  /** A node appeared: some subscription here is `topic` or below it. */
  onTopicAdded?(topic: string): void;
  /** A node went: no subscription here is `topic` or below it any more. */
  onTopicRemoved?(topic: string): void;
}

export class TopicTrie<T extends TrieSubscriber> {
  private readonly root: TrieNode<T> = { segment: '', topic: '', parent: null, children: null, subscribers: null };
  private readonly events: TrieEvents;
  private epoch = 0;
  // Reused traversal stack: delivery allocates nothing per message.
  private readonly stack: TrieNode<T>[] = [];
  private subscriptionCount = 0;

  constructor(events: TrieEvents = {}) {
    this.events = events;
  }

  /** Number of (topic, subscriber) pairs stored. */
  get size(): number {
    return this.subscriptionCount;
  }


  /** Adds `subscriber` at `topic`. Returns false when it was already there. */
  add(topic: string, subscriber: T): boolean {
    let node = this.root;
    let start = 0;
    for (;;) {
      const end = topic.indexOf(':', start);
      const segment = end === -1 ? topic.slice(start) : topic.slice(start, end);
      let child = node.children?.get(segment);
      if (child === undefined) {
        child = { segment, topic: end === -1 ? topic : topic.slice(0, end), parent: node, children: null, subscribers: null };
        (node.children ??= new Map()).set(segment, child);
        this.events.onTopicAdded?.(child.topic);
      }
      node = child;
      if (end === -1) break;
      start = end + 1;
    }
    const subscribers = (node.subscribers ??= new Set());
    if (subscribers.has(subscriber)) return false;
    subscribers.add(subscriber);
    this.subscriptionCount++;
    return true;
  }

  /** Removes `subscriber` from `topic`, pruning nodes left empty. Returns false if it was not there. */
  remove(topic: string, subscriber: T): boolean {
    const node = this.find(topic);
    if (node === null || node.subscribers === null || !node.subscribers.delete(subscriber)) return false;
    this.subscriptionCount--;
    if (node.subscribers.size === 0) node.subscribers = null;
    this.prune(node);
    return true;
  }

  /**
   * Calls `visit` once for every subscriber of a topic that `topic` reaches (its node and all below),
   * however many of a subscriber's subscriptions match. Returns the number of calls.
   */
  forEachRecipient(topic: string, visit: (subscriber: T) => void): number {
    const start = this.find(topic);
    if (start === null) return 0;
    const epoch = ++this.epoch;
    const stack = this.stack;
    let count = 0;
    stack.push(start);
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.subscribers !== null) {
        for (const subscriber of node.subscribers) {
          if (subscriber.mark !== epoch) {
            subscriber.mark = epoch;
            visit(subscriber);
            count++;
          }
        }
      }
      if (node.children !== null) for (const child of node.children.values()) stack.push(child);
    }
    return count;
  }

  /** Number of nodes, root excluded (for tests and stats). */
  nodeCount(): number {
    let count = 0;
    const stack: TrieNode<T>[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.children !== null) for (const child of node.children.values()) { count++; stack.push(child); }
    }
    return count;
  }

  private find(topic: string): TrieNode<T> | null {
    let node = this.root;
    let start = 0;
    for (;;) {
      const end = topic.indexOf(':', start);
      const child = node.children?.get(end === -1 ? topic.slice(start) : topic.slice(start, end));
      if (child === undefined) return null;
      node = child;
      if (end === -1) return node;
      start = end + 1;
    }
  }

  private prune(node: TrieNode<T>): void {
    while (node.parent !== null && node.subscribers === null && node.children === null) {
      const parent = node.parent;
      parent.children!.delete(node.segment);
      if (parent.children!.size === 0) parent.children = null;
      this.events.onTopicRemoved?.(node.topic);
      node = parent;
    }
  }
}
