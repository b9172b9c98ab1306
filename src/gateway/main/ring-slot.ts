/**
 * The main thread's end of one worker's ring. Messages are written or dropped (never waited for);
 * control records (routing marks, gaps) must not be lost or overtaken, so one that does not fit waits
 * in a backlog that is written, in order, before anything else. A message dropped for a full ring
 * owes the worker a GAP record for its topic (the worker tells its tormq.v2 clients).
 */
import { WorkerStat } from '../shared/counters.js';
import { ALL_TOPICS, RecordKind, type RecordSource, type RingWriter } from '../shared/ring.js';

interface ControlRecord {
  kind: number;
  topic: Buffer;
  epoch: Buffer;
  offset: number;
  seq: number;
}

const EMPTY = Buffer.alloc(0);
/** Gap topics remembered per slot before they collapse into one gap for every topic (ALL_TOPICS). */
const MAX_OWED_GAPS = 10_000;

export class RingSlot {
  private readonly backlog: ControlRecord[] = [];
  /** Topics with a GAP record in the backlog (one is enough until it is written). */
  private readonly owedGaps = new Set<string>();
  private readonly controlRecord: RecordSource = {
    kind: 0, topicSource: EMPTY, epochSource: EMPTY, bodySource: EMPTY,
    topicStart: 0, topicEnd: 0, epochStart: 0, epochEnd: 0, bodyStart: 0, bodyEnd: 0, offset: 0, seq: 0, receivedAt: 0,
  };

  constructor(
    readonly index: number,
    readonly ring: RingWriter,
    /** The worker's counters (counters.ts); main writes its own entries (ring drops, restarts). */
    readonly stats: Float64Array,
  ) {}

  /** Hot path: writes a message record; false when it was dropped (and counted, and a gap owed). */
  message(r: RecordSource, topic: string): boolean {
    if ((this.backlog.length === 0 || this.flush()) && this.ring.tryWrite(r)) return true;
    this.stats[WorkerStat.ringDrops]++;
    this.owe(topic);
    return false;
  }

  /** A routing mark for the worker's report or request `seq`: everything of `topic` after (epoch, offset) follows. */
  mark(topic: string, epoch: Buffer, offset: number, seq: number): void {
    this.enqueue({ kind: RecordKind.MARK, topic: Buffer.from(topic, 'utf8'), epoch, offset, seq });
  }

  /** Continuity of `topic` was lost: the worker's tormq.v2 recipients of it get a gap. */
  gap(topic: string): void {
    this.owe(topic);
  }

  /** Writes the backlog in order; true when it is empty. */
  flush(): boolean {
    let written = 0;
    const r = this.controlRecord;
    for (; written < this.backlog.length; written++) {
      const record = this.backlog[written]!;
      r.kind = record.kind;
      r.topicSource = record.topic;
      r.topicEnd = record.topic.length;
      r.epochSource = record.epoch;
      r.epochEnd = record.epoch.length;
      r.offset = record.offset;
      r.seq = record.seq;
      if (!this.ring.tryWrite(r)) break;
      if (record.kind === RecordKind.GAP) this.owedGaps.delete(record.topic.toString('utf8'));
    }
    if (written > 0) this.backlog.splice(0, written);
    this.ring.notify();
    return this.backlog.length === 0;
  }

  /** The worker is gone: what it was owed goes with it. */
  reset(): void {
    this.backlog.length = 0;
    this.owedGaps.clear();
  }

  private owe(topic: string): void {
    if (this.owedGaps.has(topic) || this.owedGaps.has(ALL_TOPICS)) return;
    if (this.owedGaps.size >= MAX_OWED_GAPS) topic = ALL_TOPICS;
    this.owedGaps.add(topic);
    this.enqueue({ kind: RecordKind.GAP, topic: Buffer.from(topic, 'utf8'), epoch: EMPTY, offset: 0, seq: 0 });
  }

  private enqueue(record: ControlRecord): void {
    this.backlog.push(record);
    this.flush();
  }
}
