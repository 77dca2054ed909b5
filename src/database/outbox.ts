import { randomBytes } from 'node:crypto';
import type { Statement } from 'better-sqlite3';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { type Db, metaValue, OUTBOX_SEQ_LIMIT } from './db.js';
import type { WriteHealth } from './writeHealth.js';

/** MQTT 5 properties that travel with a message upstream. */
export interface MessageProps {
  correlationData?: Buffer;
  responseTopic?: string;
  contentType?: string;
  userProperties?: Record<string, string>;
}

export interface OutboxMessage {
  /** The device the message belongs to: the unit of ordering. */
  device: string;
  /** The edge topic (`devices/{id}/...`), without the upstream prefix. */
  topic: string;
  payload: Buffer;
  props?: MessageProps;
}

export interface OutboxEntry extends OutboxMessage {
  seq: number;
  /** Stable across retries and restarts: `{epoch}-{seq}`, the epoch being unique to this database. */
  msgId: string;
  bytes: number;
}

export interface OutboxOptions {
  maxBytes: number;
  overflow: 'drop-oldest' | 'reject-new';
  /** Committed entries kept in memory for the bridge, so a caught-up bridge does not read back what was written. */
  tailBytes?: number;
}

export class OutboxFullError extends LeafbridgeError {
  constructor(bytes: number) {
    super('OUTBOX_FULL', `outbox full: a ${bytes}-byte message was refused (overflow policy reject-new)`);
  }
}

/** Told once whether the message was committed (no argument) or refused. */
export type AppendDone = (err?: Error) => void;

interface Pending {
  msg: OutboxMessage;
  bytes: number;
  done: AppendDone;
}

/** What a write dropped under drop-oldest: applied to the totals and the bridge's view only once committed. */
interface Dropped {
  /** Rows deleted from the table, up to and including `through`, and their bytes. */
  rows: number;
  bytes: number;
  through: number;
}

/** What a commit wrote: its entries (for the bridge's tail), the rows it dropped, and where the numbering is. */
interface Written {
  added: OutboxEntry[];
  dropped: Dropped;
  nextSeq: number;
  seqLimit: number;
}

interface Row {
  seq: number;
  device: string;
  topic: string;
  payload: Buffer;
  props: string | null;
  bytes: number;
}

const ENTRY_OVERHEAD = 64;
/** Rows read from the table per statement while the bridge is behind. */
const READ_AHEAD = 512;
/** Rows per INSERT statement (7 parameters each, far below SQLite's limit of 32,766). */
const INSERT_ROWS = 64;
const ACK_RETRY_MS = 500;
/** Sequence numbers reserved at a time: the bound kept in meta is written once per this many messages. */
const SEQ_BLOCK = 1 << 16;
/**
 * Group commit over a window, while several devices send: a commit waits until COMMIT_WINDOW_MS after the one before
 * it, so that it carries more messages (the slow shape's 3,000 sensors at 1 Hz gave one to three a turn): each
 * commit, and the upstream write after it, has a fixed cost (docs/performance.md, seventh round). A single device
 * sending one message at a time is not held back: nothing else would join its commit, and it would be paced at
 * one message per window.
 */
const COMMIT_WINDOW_MS = 2;

/**
 * The durable outbox: a bounded FIFO in SQLite. `append` resolves once the message is committed (group
 * commit: every append in one event-loop turn shares one transaction). The bridge `take`s entries in
 * sequence order and `ack`s them after the upstream PUBACK; only then are they deleted.
 */
export class Outbox {
  private readonly epoch: string;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  /** When the last commit started (performance.now()), and whether it carried messages of several devices. */
  private lastCommit = 0;
  private shared = false;
  private acks: number[] = [];
  private ackScheduled = false;
  private cursor = 0;
  private tail: OutboxEntry[] = [];
  /** Index of the first entry of `tail` not yet taken (taking from the front of an array by splice is O(n)). */
  private tailHead = 0;
  private tailSize = 0;
  /** Entries read from the table ahead of the bridge while it is behind (the tail not valid). */
  private readAhead: OutboxEntry[] = [];
  private readAheadHead = 0;
  private tailValid = false;
  /**
   * The tail reached its size limit: it stops growing, and what was committed after it is in the table only. It is
   * still served, and the bridge reads the table after it (committed entries are never dropped from memory to be
   * read back: that cost as much as writing them).
   */
  private tailTruncated = false;
  private closed = false;
  /** The next row's sequence number, and the bound in meta that every number used is below. */
  private nextSeq: number;
  private seqLimit: number;
  private count = 0;
  private size = 0;
  private readonly listeners = new Set<() => void>();
  private readonly statements;
  private readonly inserts: (Statement | undefined)[] = [];
  private readonly writeBatch: (batch: Pending[], acked: number[], now: number) => Written;
  private readonly removeRuns: (seqs: number[]) => void;
  /** Messages dropped by the overflow policy, by reason. */
  readonly dropped = { oldest: 0, rejected: 0 };
  private dropLog = { count: 0, timer: undefined as NodeJS.Timeout | undefined };

  constructor(
    private readonly db: Db,
    private readonly options: OutboxOptions,
    private readonly logger: Logger,
    /** Told of every commit and failed write, so readiness follows whether the store can write. */
    private readonly health?: Pick<WriteHealth, 'succeeded' | 'failed'>,
  ) {
    this.epoch = metaValue(db, 'outbox.epoch', () => randomBytes(6).toString('hex'));
    this.statements = {
      // Counted first and deleted without RETURNING, which builds a temporary table per statement.
      rangeTotals: db.prepare(
        'SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM outbox WHERE seq BETWEEN ? AND ?',
      ),
      removeRange: db.prepare('DELETE FROM outbox WHERE seq BETWEEN ? AND ?'),
      setSeqLimit: db.prepare('UPDATE meta SET value = ? WHERE key = ?'),
      oldest: db.prepare('SELECT seq, bytes FROM outbox WHERE seq > ? ORDER BY seq LIMIT 256'),
      dropThrough: db.prepare('DELETE FROM outbox WHERE seq <= ?'),
      after: db.prepare(
        'SELECT seq, device, topic, payload, props, bytes FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?',
      ),
      totals: db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM outbox'),
    };
    // Transaction wrappers are built once: better-sqlite3 compiles one per db.transaction() call.
    // A turn's acknowledged entries leave in the transaction that adds its new ones: one commit a turn, not two.
    this.writeBatch = db.transaction((batch: Pending[], acked: number[], now: number) => {
      if (acked.length > 0) this.deleteRuns(acked);
      return this.insertAll(batch, now);
    });
    this.removeRuns = db.transaction((seqs: number[]) => this.deleteRuns(seqs));
    const totals = this.statements.totals.get() as { n: number; b: number };
    this.count = totals.n;
    this.size = totals.b;
    // Numbers from the bound up were never used; the numbering goes on there (a gap after a restart is harmless).
    this.seqLimit = Number(metaValue(db, OUTBOX_SEQ_LIMIT, () => '1'));
    const last = db.prepare('SELECT max(seq) FROM outbox').pluck().get() as number | null;
    this.nextSeq = Math.max(this.seqLimit, (last ?? 0) + 1);
  }

  get messages(): number {
    return this.count;
  }
  get bytes(): number {
    return this.size;
  }

  /** Resolves when the message is committed; rejects with OutboxFullError under `reject-new` when full. */
  append(msg: OutboxMessage): Promise<void> {
    return new Promise((resolve, reject) => this.appendThen(msg, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * `append` for the ingest path, which runs once per device message: `done` is called after the commit (or with
   * OutboxFullError at once), without a promise per message.
   */
  appendThen(msg: OutboxMessage, done: AppendDone): void {
    const bytes = msg.payload.length + Buffer.byteLength(msg.topic) + ENTRY_OVERHEAD;
    if (
      bytes > this.options.maxBytes ||
      (this.options.overflow === 'reject-new' && this.wouldOverflow(bytes))
    ) {
      this.dropped.rejected++;
      this.noteDrop(1, 'reject-new');
      done(new OutboxFullError(bytes));
      return;
    }
    this.pending.push({ msg, bytes, done });
    this.pendingBytes += bytes;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      const wait = this.shared ? COMMIT_WINDOW_MS - (performance.now() - this.lastCommit) : 0;
      if (wait > 0) setTimeout(this.flushNow, wait);
      else setImmediate(this.flushNow);
    }
  }

  private readonly flushNow = (): void => this.flush();

  /** Called after each commit that added entries. Returns an unsubscribe function. */
  onAppended(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The next entries not yet taken, in sequence order. */
  take(max: number): OutboxEntry[] {
    if (this.tailValid && this.tailTruncated && this.tailHead === this.tail.length) {
      // The tail is used up and the table holds entries past it: read them from there, and from memory again
      // once caught up.
      this.tailValid = false;
      this.dropTail();
    }
    if (this.tailValid) {
      const end = Math.min(this.tail.length, this.tailHead + max);
      const out = this.tail.slice(this.tailHead, end);
      this.tailHead = end;
      if (this.tailHead === this.tail.length) {
        this.tail = [];
        this.tailHead = 0;
      } else if (this.tailHead > 1024 && this.tailHead * 2 > this.tail.length) {
        this.tail = this.tail.slice(this.tailHead);
        this.tailHead = 0;
      }
      for (const e of out) this.tailSize -= e.bytes;
      if (out.length > 0) this.cursor = (out[out.length - 1] as OutboxEntry).seq;
      return out;
    }
    if (this.readAheadHead < this.readAhead.length) {
      const end = Math.min(this.readAhead.length, this.readAheadHead + max);
      const out = this.readAhead.slice(this.readAheadHead, end);
      this.readAheadHead = end;
      if (out.length > 0) this.cursor = (out[out.length - 1] as OutboxEntry).seq;
      return out;
    }
    // One statement reads READ_AHEAD rows: the bridge takes a few at a time as PUBACKs free its window.
    const limit = Math.max(max, READ_AHEAD);
    const rows = this.statements.after.all(this.cursor, limit) as Row[];
    const entries = rows.map((r) => this.toEntry(r));
    const out = entries.slice(0, max);
    const rest = entries.slice(max);
    if (out.length > 0) this.cursor = (out[out.length - 1] as OutboxEntry).seq;
    this.readAhead = [];
    this.readAheadHead = 0;
    if (rows.length < limit && this.pending.length === 0) {
      // Caught up with the table: from now on new commits are served from memory, after what was read.
      this.tailValid = true;
      this.tail = rest;
      this.tailHead = 0;
      this.tailSize = rest.reduce((sum, e) => sum + e.bytes, 0);
    } else this.readAhead = rest;
    return out;
  }

  /** Forget what was taken and not acked: the next `take` starts again at the oldest entry. */
  rewind(): void {
    if (this.acks.length > 0) this.deleteAcked();
    this.cursor = 0;
    this.readAhead = [];
    this.readAheadHead = 0;
    this.tailValid = false;
    this.dropTail();
  }

  /** The upstream acknowledged this entry: delete it (batched). */
  ack(seq: number): void {
    this.acks.push(seq);
    if (!this.ackScheduled) {
      this.ackScheduled = true;
      setImmediate(() => this.flushAcks());
    }
  }

  /** Commit whatever is pending and stop; the database stays open for its owner to close. */
  close(): void {
    if (this.pending.length > 0) this.flush();
    if (this.acks.length > 0) this.deleteAcked();
    this.closed = true;
    if (this.dropLog.timer) clearTimeout(this.dropLog.timer);
  }

  private wouldOverflow(bytes: number): boolean {
    return this.size + this.pendingBytes + bytes > this.options.maxBytes;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) {
      const e = new LeafbridgeError('OUTBOX_CLOSED', 'outbox closed');
      for (const p of this.pending.splice(0)) this.settle(p, e);
      return;
    }
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (batch.length === 0) return;
    this.lastCommit = performance.now();
    this.shared = severalDevices(batch);
    const kept = this.newestWithin(batch);
    const acked = this.takeAcks();
    let written: Written;
    try {
      written = this.writeBatch(kept, acked, Date.now());
    } catch (err) {
      this.health?.failed(err);
      this.resync();
      this.retryAcks(acked, err);
      const e = new LeafbridgeError('OUTBOX_WRITE', `outbox write failed: ${errorMessage(err)}`, {
        cause: err,
      });
      for (const p of batch) this.settle(p, e);
      return;
    }
    this.health?.succeeded();
    this.nextSeq = written.nextSeq;
    this.seqLimit = written.seqLimit;
    this.forgetDropped(written.dropped, batch.length - kept.length);
    this.count += kept.length;
    for (const p of kept) this.size += p.bytes;
    this.extendTail(written.added);
    for (const p of batch) this.settle(p);
    for (const l of this.listeners) l();
  }

  /** One caller's `done`: a throwing one is logged, and the others of the batch are still told. */
  private settle(p: Pending, err?: Error): void {
    try {
      p.done(err);
    } catch (thrown) {
      this.logger.error({ err: errorMessage(thrown) }, 'outbox append callback threw');
    }
  }

  /**
   * drop-oldest, for a turn whose appends alone exceed `maxBytes`: its newest that fit, the rest dropped as the
   * oldest (never written; their callers are told of success, as for an entry dropped after its commit). Each
   * message fits on its own (`appendThen` refuses larger ones), so at least one is kept.
   */
  private newestWithin(batch: Pending[]): Pending[] {
    if (this.options.overflow !== 'drop-oldest') return batch;
    let bytes = 0;
    let first = batch.length;
    while (first > 0 && bytes + (batch[first - 1] as Pending).bytes <= this.options.maxBytes)
      bytes += (batch[--first] as Pending).bytes;
    return first === 0 ? batch : batch.slice(first);
  }

  /** drop-oldest: delete the oldest entries until `needed` bytes are free. Runs inside the write transaction. */
  private makeRoom(needed: number): Dropped {
    const dropped: Dropped = { rows: 0, bytes: 0, through: 0 };
    while (dropped.bytes < needed) {
      const rows = this.statements.oldest.all(dropped.through) as { seq: number; bytes: number }[];
      if (rows.length === 0) break;
      for (const r of rows) {
        if (dropped.bytes >= needed) break;
        dropped.bytes += r.bytes;
        dropped.rows++;
        dropped.through = r.seq;
      }
    }
    if (dropped.rows > 0) this.statements.dropThrough.run(dropped.through);
    return dropped;
  }

  /** After a commit: the rows it dropped leave the totals and the bridge's view; every drop is counted. */
  private forgetDropped(dropped: Dropped, unwritten: number): void {
    const last = dropped.through;
    this.count -= dropped.rows;
    this.size -= dropped.bytes;
    while (
      this.readAheadHead < this.readAhead.length &&
      (this.readAhead[this.readAheadHead] as OutboxEntry).seq <= last
    )
      this.readAheadHead++;
    if (this.tailValid) {
      while (this.tailHead < this.tail.length && (this.tail[this.tailHead] as OutboxEntry).seq <= last) {
        this.tailSize -= (this.tail[this.tailHead++] as OutboxEntry).bytes;
      }
    }
    this.dropped.oldest += dropped.rows + unwritten;
    this.noteDrop(dropped.rows + unwritten, 'drop-oldest');
  }

  private extendTail(added: OutboxEntry[]): void {
    if (!this.tailValid || this.tailTruncated) return;
    const limit = this.options.tailBytes ?? 2 * 1024 * 1024;
    for (const e of added) {
      if (this.tailSize + e.bytes > limit) {
        this.tailTruncated = true;
        return;
      }
      this.tail.push(e);
      this.tailSize += e.bytes;
    }
  }

  private dropTail(): void {
    this.tailTruncated = false;
    this.tail = [];
    this.tailHead = 0;
    this.tailSize = 0;
  }

  /** After a rolled-back transaction: totals from the table, and the bridge served from it (not memory). */
  private resync(): void {
    const totals = this.statements.totals.get() as { n: number; b: number };
    this.count = totals.n;
    this.size = totals.b;
    this.readAhead = [];
    this.readAheadHead = 0;
    this.tailValid = false;
    this.dropTail();
  }

  /** The scheduled delete of acknowledged entries; left to the turn's write when appends are waiting too. */
  private flushAcks(): void {
    this.ackScheduled = false;
    if (this.closed || this.flushScheduled) return;
    this.deleteAcked();
  }

  private deleteAcked(): void {
    const seqs = this.takeAcks();
    if (seqs.length === 0) return;
    try {
      this.removeRuns(seqs);
    } catch (err) {
      this.health?.failed(err);
      this.resync();
      this.retryAcks(seqs, err);
      return;
    }
    this.health?.succeeded();
  }

  private takeAcks(): number[] {
    const seqs = this.acks.sort((a, b) => a - b);
    this.acks = [];
    return seqs;
  }

  /** A full disk fails deletes too (WAL): the acks are kept and tried again later; the entries stay until then. */
  private retryAcks(seqs: number[], err: unknown): void {
    if (seqs.length === 0) return;
    this.acks = seqs.concat(this.acks);
    this.logger.debug({ err: errorMessage(err), acks: seqs.length }, 'outbox delete failed; retrying');
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setTimeout(() => this.flushAcks(), ACK_RETRY_MS).unref();
  }

  /**
   * Inside the write transaction: room made by the overflow policy (counted by the caller once committed), then
   * every message of the turn inserted, up to INSERT_ROWS rows per statement (one call into SQLite per row was a
   * tenth of the agent's CPU under load). The rows are numbered here, from `nextSeq`; the bound in meta moves a
   * block ahead, in the same transaction, only when the numbers reach it. The caller takes the numbering over
   * once committed.
   */
  private insertAll(batch: Pending[], now: number): Written {
    const added: OutboxEntry[] = [];
    let seq = this.nextSeq;
    let seqLimit = this.seqLimit;
    if (seq + batch.length > seqLimit) {
      seqLimit = seq + batch.length + SEQ_BLOCK;
      this.statements.setSeqLimit.run(String(seqLimit), OUTBOX_SEQ_LIMIT);
    }
    const incoming = batch.reduce((sum, p) => sum + p.bytes, 0);
    const dropped =
      this.size + incoming > this.options.maxBytes
        ? this.makeRoom(this.size + incoming - this.options.maxBytes)
        : { rows: 0, bytes: 0, through: 0 };
    for (let start = 0; start < batch.length; start += INSERT_ROWS) {
      const rows = batch.slice(start, start + INSERT_ROWS);
      const values: unknown[] = [];
      const first = seq;
      for (const p of rows)
        values.push(
          seq++,
          p.msg.device,
          p.msg.topic,
          p.msg.payload,
          p.msg.props ? encodeProps(p.msg.props) : null,
          p.bytes,
          now,
        );
      this.insertStatement(rows.length).run(values);
      // Entries are only built when the bridge is caught up and will take them from memory.
      if (!this.tailValid || this.tailTruncated) continue;
      rows.forEach((p, i) => {
        const m = p.msg;
        const entry: OutboxEntry = {
          seq: first + i,
          device: m.device,
          topic: m.topic,
          payload: m.payload,
          msgId: `${this.epoch}-${first + i}`,
          bytes: p.bytes,
        };
        if (m.props) entry.props = m.props;
        added.push(entry);
      });
    }
    return { added, dropped, nextSeq: seq, seqLimit };
  }

  /** `INSERT … VALUES (…), (…)` for `rows` rows, prepared once per row count. */
  private insertStatement(rows: number): Statement {
    let statement = this.inserts[rows];
    if (!statement) {
      const tuples = Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, ?, ?)').join(', ');
      statement = this.db.prepare(
        `INSERT INTO outbox (seq, device, topic, payload, props, bytes, created) VALUES ${tuples}`,
      );
      this.inserts[rows] = statement;
    }
    return statement;
  }

  /** PUBACKs come mostly in order: each run of consecutive sequence numbers goes with one statement. */
  private deleteRuns(seqs: number[]): void {
    let start = 0;
    for (let i = 1; i <= seqs.length; i++) {
      if (i < seqs.length && (seqs[i] as number) <= (seqs[i - 1] as number) + 1) continue;
      const range = this.statements.rangeTotals.get(seqs[start], seqs[i - 1]) as { n: number; b: number };
      this.statements.removeRange.run(seqs[start], seqs[i - 1]);
      this.count -= range.n;
      this.size -= range.b;
      start = i;
    }
  }

  /** Drops are counted always, and logged at once and then at most once a second with their count. */
  private noteDrop(n: number, policy: string): void {
    if (n === 0) return;
    this.dropLog.count += n;
    if (!this.dropLog.timer) this.reportDrops(policy);
  }

  private reportDrops(policy: string): void {
    this.logger.warn(
      { dropped: this.dropLog.count, policy, maxBytes: this.options.maxBytes },
      'outbox full: messages dropped',
    );
    this.dropLog.count = 0;
    this.dropLog.timer = setTimeout(() => {
      this.dropLog.timer = undefined;
      if (this.dropLog.count > 0) this.reportDrops(policy);
    }, 1000);
    this.dropLog.timer.unref();
  }

  private toEntry(r: Row): OutboxEntry {
    const msgId = `${this.epoch}-${r.seq}`;
    const entry: OutboxEntry = {
      seq: r.seq,
      device: r.device,
      topic: r.topic,
      payload: r.payload,
      msgId,
      bytes: r.bytes,
    };
    if (r.props) entry.props = decodeProps(r.props);
    return entry;
  }
}

function severalDevices(batch: Pending[]): boolean {
  const first = (batch[0] as Pending).msg.device;
  return batch.some((p) => p.msg.device !== first);
}

function encodeProps(props: MessageProps): string {
  return JSON.stringify({
    ...props,
    ...(props.correlationData ? { correlationData: props.correlationData.toString('base64') } : {}),
  });
}

function decodeProps(text: string): MessageProps {
  const raw = JSON.parse(text) as MessageProps & { correlationData?: string };
  return {
    ...raw,
    ...(raw.correlationData ? { correlationData: Buffer.from(raw.correlationData, 'base64') } : {}),
  } as MessageProps;
}
