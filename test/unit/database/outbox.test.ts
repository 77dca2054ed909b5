import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openDb } from '../../../src/database/db.js';
import { Outbox, OutboxFullError } from '../../../src/database/outbox.js';
import { createLogger, silentLogger } from '../../../src/util/logger.js';
import { ROOT, tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/wait.js';

const WRITER = join(ROOT, 'test/helpers/outboxWriter.mjs');

const msg = (device: string, n: number, size = 10) => ({
  device,
  topic: `devices/${device}/telemetry/t`,
  payload: Buffer.alloc(size, n % 256),
});
const ENTRY = (size: number, device = 'd1') => size + Buffer.byteLength(`devices/${device}/telemetry/t`) + 64;

describe('Outbox', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });
  function open(
    options: Partial<ConstructorParameters<typeof Outbox>[1]> = {},
    dir = tempDir(),
    logger = silentLogger(),
    health?: ConstructorParameters<typeof Outbox>[3],
  ) {
    const db = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(() => dir.remove());
    const outbox = new Outbox(db, { maxBytes: 1 << 30, overflow: 'drop-oldest', ...options }, logger, health);
    cleanups.push(() => {
      if (!db.open) return;
      outbox.close();
      db.close();
    });
    return { db, outbox, dir };
  }

  it('commits a turn of appends in one transaction and hands them out in order', async () => {
    const { db, outbox } = open();
    let commits = 0;
    outbox.onAppended(() => commits++);
    await Promise.all(Array.from({ length: 500 }, (_, i) => outbox.append(msg(`d${i % 5}`, i))));
    expect(commits).toBe(1);
    expect(outbox.messages).toBe(500);
    expect((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBe(500);
    const taken = [...outbox.take(200), ...outbox.take(1000)];
    // Exactly what was appended, in append order, each with its seq and the id made of it.
    expect(taken.map((e) => [e.device, e.topic, e.payload])).toEqual(
      Array.from({ length: 500 }, (_, i) => {
        const m = msg(`d${i % 5}`, i);
        return [m.device, m.topic, m.payload];
      }),
    );
    const seqs = taken.map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: 500 }, (_, i) => (seqs[0] as number) + i));
    const epoch = taken[0]?.msgId.split('-')[0];
    expect(epoch).toMatch(/^[0-9a-f]{12}$/);
    expect(taken.map((e) => e.msgId)).toEqual(seqs.map((q) => `${epoch}-${q}`));
  });

  it('deletes only acked entries; rewind hands out the rest again, same ids', async () => {
    const { outbox } = open();
    await Promise.all([1, 2, 3, 4].map((i) => outbox.append(msg('d1', i))));
    const first = outbox.take(10);
    outbox.ack(first[0]!.seq);
    outbox.ack(first[2]!.seq);
    outbox.rewind();
    const again = outbox.take(10);
    expect(again.map((e) => e.msgId)).toEqual([first[1]!.msgId, first[3]!.msgId]);
    expect(outbox.messages).toBe(2);
  });

  it('serves new commits from memory once caught up, and from the table after a rewind', async () => {
    const { outbox } = open();
    expect(outbox.take(10)).toEqual([]);
    await outbox.append(msg('d1', 1));
    await outbox.append(msg('d1', 2));
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([1, 2]);
    outbox.rewind();
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([1, 2]);
  });

  it('keeps entries and their ids across a clean reopen', async () => {
    const dir = tempDir();
    const a = open({}, dir);
    await Promise.all([1, 2, 3].map((i) => a.outbox.append(msg('d1', i))));
    const ids = a.outbox.take(10).map((e) => e.msgId);
    a.outbox.close();
    a.db.close();
    const b = open({}, dir);
    expect(b.outbox.messages).toBe(3);
    expect(b.outbox.take(10).map((e) => e.msgId)).toEqual(ids);
  });

  it('never numbers two messages alike: not once the table has emptied, nor after a reopen', async () => {
    const dir = tempDir();
    const a = open({}, dir);
    const seen: number[] = [];
    const drain = async (o: Outbox) => {
      const taken = o.take(100);
      seen.push(...taken.map((e) => e.seq));
      for (const e of taken) o.ack(e.seq);
      await new Promise((resolve) => setImmediate(resolve));
      expect(o.messages).toBe(0);
    };
    await Promise.all([1, 2, 3].map((i) => a.outbox.append(msg('d1', i))));
    await drain(a.outbox);
    await a.outbox.append(msg('d1', 4));
    await drain(a.outbox);
    a.outbox.close();
    a.db.close();
    const b = open({}, dir);
    await Promise.all([5, 6].map((i) => b.outbox.append(msg('d1', i))));
    await drain(b.outbox);
    expect(seen).toHaveLength(6);
    // Increasing, so never repeated (a reopen may skip numbers).
    expect(seen.every((s, i) => i === 0 || s > (seen[i - 1] as number))).toBe(true);
  });

  it('a write that fails does not move the numbering on: the next one keeps numbers unique across a reopen', async () => {
    const dir = tempDir();
    const a = open({}, dir);
    a.db.exec(`CREATE TRIGGER full BEFORE INSERT ON outbox WHEN NEW.device = 'bad'
      BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    // The first write of a database moves the bound in meta; this one rolls back with it.
    await expect(a.outbox.append(msg('bad', 1))).rejects.toThrow(/disk is full/);
    await a.outbox.append(msg('d1', 2));
    const [written] = a.outbox.take(10);
    a.outbox.close();
    a.db.close();
    // Emptied while the agent is down: only the bound in meta can keep the next number past the last.
    const raw = new Database(join(dir.path, 'leafbridge.db'));
    raw.exec('DELETE FROM outbox');
    raw.close();
    const b = open({}, dir);
    await b.outbox.append(msg('d1', 3));
    const [after] = b.outbox.take(10);
    expect(after!.seq).toBeGreaterThan(written!.seq);
  });

  it('an outbox from before its own numbering (AUTOINCREMENT) keeps its rows and numbers on past what it handed out', () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    // The tables the numbering migration reads, as the migrations before it left them, at user_version 3.
    const old = new Database(join(dir.path, 'leafbridge.db'));
    old.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, topic TEXT NOT NULL,
        payload BLOB NOT NULL, props TEXT, bytes INTEGER NOT NULL, created INTEGER NOT NULL);
      INSERT INTO outbox (device, topic, payload, props, bytes, created) VALUES
        ('d1', 'devices/d1/telemetry/t', x'01', NULL, 87, 0), ('d1', 'devices/d1/telemetry/t', x'02', NULL, 87, 0),
        ('d1', 'devices/d1/telemetry/t', x'03', NULL, 87, 0);
      DELETE FROM outbox WHERE seq = 3;
      PRAGMA user_version = 3;`);
    old.close();
    const db = openDb(dir.path, { synchronous: 'normal' });
    const outbox = new Outbox(db, { maxBytes: 1 << 30, overflow: 'drop-oldest' }, silentLogger());
    cleanups.push(() => {
      outbox.close();
      db.close();
    });
    expect(outbox.messages).toBe(2);
    const kept = outbox.take(10);
    expect(kept.map((e) => [e.seq, e.payload[0]])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    // 3 was handed out (and deleted): the next message is numbered past it.
    return outbox.append(msg('d1', 4)).then(() => {
      expect(outbox.take(10).map((e) => e.seq)).toEqual([4]);
    });
  });

  it('crash-safe after commit: a writer killed with SIGKILL mid-stream loses nothing it had committed', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const child = spawn(process.execPath, [WRITER, dir.path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const committed: [string, number][] = [];
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const l of lines)
        committed.push(...(JSON.parse(l) as { committed: [string, number][] }).committed);
    });
    await until(() => committed.length >= 300, 10_000, 'the writer to commit 300 messages');
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL'); // while it is appending its next turns
    await exited;

    const { outbox } = open({}, dir);
    const kept = outbox.take(100_000);
    // Every message reported committed is there, first, in order, with its id and payload; what follows
    // (turns committed after the last report) continues the sequence with no gap.
    expect(kept.slice(0, committed.length).map((e) => [e.msgId, e.payload[0]])).toEqual(committed);
    const seqs = kept.map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: kept.length }, (_, i) => (seqs[0] as number) + i));
    expect(kept.length % 10).toBe(0); // whole turns only: a turn is one transaction
  });

  it('drop-oldest: stays within maxBytes, drops the oldest, counts every drop', async () => {
    const { outbox } = open({ maxBytes: ENTRY(100) * 10, overflow: 'drop-oldest' });
    for (let i = 0; i < 25; i++) await outbox.append(msg('d1', i, 100));
    expect(outbox.messages).toBe(10);
    expect(outbox.bytes).toBeLessThanOrEqual(ENTRY(100) * 10);
    expect(outbox.dropped.oldest).toBe(15);
    expect(outbox.take(100).map((e) => e.payload[0])).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
  });

  it('drop-oldest: a turn whose appends exceed maxBytes on their own keeps its newest within maxBytes', async () => {
    const { db, outbox } = open({ maxBytes: ENTRY(100) * 3, overflow: 'drop-oldest' });
    await Promise.all([0, 1].map((i) => outbox.append(msg('d1', i, 100))));
    // One turn of five: the two already kept and the turn's own first two give way to its newest three.
    const turn = await Promise.allSettled([2, 3, 4, 5, 6].map((i) => outbox.append(msg('d1', i, 100))));
    expect(turn.map((r) => r.status)).toEqual(Array(5).fill('fulfilled'));
    expect(outbox.messages).toBe(3);
    expect(outbox.bytes).toBe(ENTRY(100) * 3);
    expect(outbox.dropped).toEqual({ oldest: 4, rejected: 0 });
    const totals = db.prepare('SELECT count(*) AS n, sum(bytes) AS b FROM outbox').get();
    expect(totals).toEqual({ n: 3, b: ENTRY(100) * 3 });
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([4, 5, 6]);
  });

  it('drop-oldest: a failed write counts no drops, since its deletes were rolled back too', async () => {
    const { db, outbox } = open({ maxBytes: ENTRY(10) * 2, overflow: 'drop-oldest' });
    await Promise.all([0, 1].map((i) => outbox.append(msg('d1', i))));
    db.exec(`CREATE TRIGGER full BEFORE INSERT ON outbox WHEN NEW.device = 'bad'
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    const turn = await Promise.allSettled(
      [2, 3, 4].map((i) => outbox.append(msg(i === 4 ? 'bad' : 'd1', i))),
    );
    expect(turn.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(outbox.dropped).toEqual({ oldest: 0, rejected: 0 });
    expect(outbox.messages).toBe(2);
    db.exec('DROP TRIGGER full');
    await outbox.append(msg('d1', 5));
    expect(outbox.dropped.oldest).toBe(1);
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([1, 5]);
  });

  it('reject-new: refuses what does not fit, keeps what it has, counts the refusals', async () => {
    const { outbox } = open({ maxBytes: ENTRY(100) * 3, overflow: 'reject-new' });
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => outbox.append(msg('d1', i, 100))),
    );
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'rejected',
    ]);
    expect((results[3] as PromiseRejectedResult).reason).toBeInstanceOf(OutboxFullError);
    expect((results[3] as PromiseRejectedResult).reason).toMatchObject({
      code: 'OUTBOX_FULL',
      message: `outbox full: a ${ENTRY(100)}-byte message was refused (overflow policy reject-new)`,
    });
    expect(outbox.dropped.rejected).toBe(2);
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([0, 1, 2]);
  });

  it('refuses a message larger than the whole outbox under either policy', async () => {
    const { outbox } = open({ maxBytes: 1000, overflow: 'drop-oldest' });
    await outbox.append(msg('d1', 1, 10));
    await expect(outbox.append(msg('d1', 2, 5000))).rejects.toBeInstanceOf(OutboxFullError);
    expect(outbox.messages).toBe(1);
  });

  it('round-trips MQTT 5 properties', async () => {
    const { outbox } = open();
    const props = {
      correlationData: Buffer.from([0, 1, 255]),
      contentType: 'application/json',
      userProperties: { a: 'b' },
    };
    await outbox.append({ ...msg('d1', 1), props });
    outbox.rewind();
    expect(outbox.take(1)[0]?.props).toEqual(props);
  });

  it('a bridge behind the table takes every entry once and in order, with commits and drops between its takes', async () => {
    // tailBytes 1: every commit goes past the in-memory tail, so takes read the table (READ_AHEAD rows at a time).
    const { db, outbox } = open({ tailBytes: 1, maxBytes: ENTRY(10) * 1500, overflow: 'drop-oldest' });
    await Promise.all(Array.from({ length: 1200 }, (_, i) => outbox.append(msg(`d${i % 3}`, i))));
    const taken: number[] = [];
    for (let round = 0; round < 40; round++) {
      for (const e of outbox.take(7)) taken.push(e.seq);
      // More commits while the bridge is behind; past 1,500 entries the oldest are dropped.
      await Promise.all(Array.from({ length: 20 }, (_, i) => outbox.append(msg('d9', round * 20 + i))));
    }
    let batch = outbox.take(500);
    while (batch.length > 0) {
      for (const e of batch) taken.push(e.seq);
      batch = outbox.take(500);
    }
    const dropped = outbox.dropped.oldest;
    expect(dropped).toBeGreaterThan(0);
    expect(taken).toEqual([...new Set(taken)].sort((a, b) => a - b));
    // Everything still in the table was taken, and nothing taken is missing from it unless it was dropped.
    const inTable = (db.prepare('SELECT seq FROM outbox ORDER BY seq').all() as { seq: number }[]).map(
      (r) => r.seq,
    );
    const takenSet = new Set(taken);
    expect(inTable.filter((seq) => !takenSet.has(seq))).toEqual([]);
    expect(inTable.length + dropped).toBe(1200 + 40 * 20);
    expect(taken.length - inTable.length).toBeLessThanOrEqual(dropped);
  });

  it('drop-oldest while the bridge reads ahead of the table: no dropped entry is handed out, nor counted twice', async () => {
    // 600 committed entries: the first take reads 512 rows (READ_AHEAD) and keeps the 511 it does not hand out.
    const { db, outbox } = open({ tailBytes: 1, maxBytes: ENTRY(10) * 600 });
    await Promise.all(Array.from({ length: 600 }, (_, i) => outbox.append(msg('d1', i))));
    const [first] = outbox.take(1);
    // 50 more: the 50 oldest are dropped, 49 of them among those read ahead and not yet handed out.
    await Promise.all(Array.from({ length: 50 }, (_, i) => outbox.append(msg('d2', i))));
    expect(outbox.dropped.oldest).toBe(50);
    const inTable = (db.prepare('SELECT seq FROM outbox ORDER BY seq').all() as { seq: number }[]).map(
      (r) => r.seq,
    );
    expect(inTable).toHaveLength(600);
    expect(inTable[0]).toBe((first?.seq as number) + 50);
    const taken: number[] = [];
    for (let batch = outbox.take(100); batch.length > 0; batch = outbox.take(100))
      for (const e of batch) taken.push(e.seq);
    // Exactly what is left, each once: a dropped message is never delivered after it was counted as dropped.
    expect(taken).toEqual(inTable);
  });

  it('a tail that reached its size limit is served, then the table after it, every entry once and in order', async () => {
    // Room in memory for 5 entries: past that, commits are in the table only, and are read from there after the tail.
    const { outbox } = open({ tailBytes: ENTRY(10) * 5 });
    expect(outbox.take(10)).toEqual([]); // caught up: new commits go to the in-memory tail
    await Promise.all(Array.from({ length: 20 }, (_, i) => outbox.append(msg('d1', i))));
    const taken: number[] = [];
    for (let round = 0; round < 6; round++) {
      for (const e of outbox.take(3)) taken.push(e.payload[0] as number);
      await Promise.all(Array.from({ length: 2 }, (_, i) => outbox.append(msg('d1', 20 + round * 2 + i))));
    }
    let batch = outbox.take(7);
    while (batch.length > 0) {
      for (const e of batch) taken.push(e.payload[0] as number);
      batch = outbox.take(7);
    }
    expect(taken).toEqual(Array.from({ length: 32 }, (_, i) => i));
  });

  it('close commits the appends of the current turn and the acks; later appends are refused', async () => {
    const dir = tempDir();
    const a = open({}, dir);
    await Promise.all([1, 2, 3].map((i) => a.outbox.append(msg('d1', i))));
    const [first] = a.outbox.take(1);
    a.outbox.ack(first!.seq);
    const last = a.outbox.append(msg('d1', 4));
    a.outbox.close();
    await expect(last).resolves.toBeUndefined();
    await expect(a.outbox.append(msg('d1', 5))).rejects.toMatchObject({ code: 'OUTBOX_CLOSED' });
    a.db.close();
    const b = open({}, dir);
    expect(b.outbox.messages).toBe(3);
    expect(b.outbox.take(10).map((e) => e.payload[0])).toEqual([2, 3, 4]);
  });

  it('a failed write rejects its whole turn, reports it, keeps the totals true; the next turn commits', async () => {
    const health = { ok: 0, failed: [] as unknown[] };
    const { db, outbox } = open({}, undefined, undefined, {
      succeeded: () => {
        health.ok++;
      },
      failed: (err: unknown) => health.failed.push(err) > 0,
    });
    await outbox.append(msg('d1', 1));
    expect(outbox.take(10)).toHaveLength(1); // caught up: served from memory from now on
    expect(health.ok).toBe(1);
    db.exec(`CREATE TRIGGER full BEFORE INSERT ON outbox WHEN NEW.device = 'bad'
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    const turn = await Promise.allSettled([outbox.append(msg('d1', 2)), outbox.append(msg('bad', 3))]);
    expect(turn.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((turn[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'OUTBOX_WRITE' });
    expect(String((turn[0] as PromiseRejectedResult).reason.message)).toContain('database or disk is full');
    expect(health.failed).toHaveLength(1);
    expect(outbox.messages).toBe(1);
    expect(outbox.bytes).toBe(ENTRY(10));
    db.exec('DROP TRIGGER full');
    await outbox.append(msg('d1', 4));
    expect(health.ok).toBe(2);
    expect(outbox.messages).toBe(2);
    // After the failure the bridge reads the table again: the new entry once, nothing of the failed turn.
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([4]);
  });

  it('a failed delete keeps the acks and retries them; the entries go once the store can write', async () => {
    const health = { ok: 0, failed: 0 };
    const { db, outbox } = open({}, undefined, undefined, {
      succeeded: () => {
        health.ok++;
      },
      failed: () => ++health.failed > 0,
    });
    await Promise.all([1, 2, 3].map((i) => outbox.append(msg('d1', i))));
    const taken = outbox.take(10);
    db.exec(`CREATE TRIGGER stuck BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
    for (const e of taken) outbox.ack(e.seq);
    await until(() => health.failed > 0, 5_000, 'the delete to fail');
    expect(outbox.messages).toBe(3);
    db.exec('DROP TRIGGER stuck');
    await until(() => outbox.messages === 0, 5_000, 'the retried delete');
    expect(outbox.bytes).toBe(0);
    expect((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBe(0);
  });

  it('a turn with acks and appends commits once: the acked entries leave in the transaction that adds the new', async () => {
    const health = { ok: 0 };
    const { db, outbox } = open({}, undefined, undefined, {
      succeeded: () => {
        health.ok++;
      },
      failed: () => false,
    });
    await Promise.all([1, 2, 3].map((i) => outbox.append(msg('d1', i))));
    const taken = outbox.take(10);
    health.ok = 0;
    for (const e of taken) outbox.ack(e.seq);
    await outbox.append(msg('d1', 4));
    await new Promise((resolve) => setImmediate(resolve)); // a separate delete, had there been one, ran by now
    expect(health.ok).toBe(1);
    expect(outbox.messages).toBe(1);
    expect(outbox.bytes).toBe(ENTRY(10));
    const rows = db.prepare('SELECT payload FROM outbox').all() as { payload: Buffer }[];
    expect(rows.map((r) => r.payload[0])).toEqual([4]);
    // Acks alone still go at once, in a transaction of their own.
    outbox.ack((outbox.take(10)[0] as { seq: number }).seq);
    await until(() => outbox.messages === 0, 5_000, 'the delete of the last ack');
    expect(health.ok).toBe(2);
  });

  it('a failed write keeps the acks of its turn and retries them; the entries go once the store can write', async () => {
    const { db, outbox } = open();
    await Promise.all([1, 2].map((i) => outbox.append(msg('d1', i))));
    const taken = outbox.take(10);
    db.exec(`CREATE TRIGGER full BEFORE INSERT ON outbox WHEN NEW.device = 'bad'
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    for (const e of taken) outbox.ack(e.seq);
    await expect(outbox.append(msg('bad', 3))).rejects.toMatchObject({ code: 'OUTBOX_WRITE' });
    // Rolled back with the insert: both entries are still there, and counted.
    expect((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBe(2);
    expect(outbox.messages).toBe(2);
    await until(() => outbox.messages === 0, 5_000, 'the retried delete');
    expect((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBe(0);
    expect(outbox.bytes).toBe(0);
  });

  it('rewind deletes what was acked first, also while the turn’s appends wait to be written', async () => {
    const { outbox } = open();
    await Promise.all([1, 2].map((i) => outbox.append(msg('d1', i))));
    for (const e of outbox.take(10)) outbox.ack(e.seq);
    const appended = outbox.append(msg('d1', 3));
    outbox.rewind();
    expect(outbox.messages).toBe(0);
    expect(outbox.take(10)).toEqual([]);
    await appended;
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([3]);
  });

  it('while several devices send, a commit waits until 2 ms after the one before and carries what came meanwhile; one device alone is not held back', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    cleanups.push(() => vi.useRealTimers());
    const { outbox } = open();
    let commits = 0;
    outbox.onAppended(() => commits++);
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    await Promise.all([outbox.append(msg('d1', 1)), outbox.append(msg('d2', 2))]);
    expect(commits).toBe(1);
    // Two devices in that commit: the next one waits for the window, turns go by, and joins what comes meanwhile.
    const first = outbox.append(msg('d1', 3));
    for (let i = 0; i < 3; i++) await turn();
    expect(commits).toBe(1);
    const second = outbox.append(msg('d2', 4));
    vi.advanceTimersByTime(1);
    await turn();
    expect(commits).toBe(1);
    vi.advanceTimersByTime(1);
    await Promise.all([first, second]);
    expect(commits).toBe(2);
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([1, 2, 3, 4]);
    // One device in a commit: its next message commits in the next turn, no timer needed.
    const alone = outbox.append(msg('d1', 5));
    vi.advanceTimersByTime(2);
    await alone;
    expect(commits).toBe(3);
    await outbox.append(msg('d1', 6));
    expect(commits).toBe(4);
    // A window already past: no wait either.
    await Promise.all([outbox.append(msg('d1', 7)), outbox.append(msg('d2', 8))]);
    vi.advanceTimersByTime(5);
    await outbox.append(msg('d1', 9));
    expect(commits).toBe(6);
  });

  it('deletes acks in runs, out of order and with gaps, and keeps the totals', async () => {
    const { db, outbox } = open();
    await Promise.all(Array.from({ length: 10 }, (_, i) => outbox.append(msg('d1', i, 10 + i))));
    const taken = outbox.take(10);
    for (const i of [7, 0, 1, 2, 5, 9, 8]) outbox.ack(taken[i]!.seq);
    await until(() => outbox.messages === 3, 5_000, 'the deletes');
    const left = (db.prepare('SELECT seq FROM outbox ORDER BY seq').all() as { seq: number }[]).map(
      (r) => r.seq,
    );
    expect(left).toEqual([3, 4, 6].map((i) => taken[i]!.seq));
    expect(outbox.bytes).toBe([3, 4, 6].reduce((sum, i) => sum + ENTRY(10 + i), 0));
  });

  it('logs drops at once with their count, then at most once a second', async () => {
    const lines: { msg: string; dropped: number; policy: string }[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    const { outbox } = open(
      { maxBytes: ENTRY(100) * 2, overflow: 'reject-new' },
      undefined,
      createLogger({ destination }),
    );
    await outbox.append(msg('d1', 1, 100));
    await outbox.append(msg('d1', 2, 100));
    for (let i = 0; i < 5; i++) await outbox.append(msg('d1', 3, 100)).catch(() => {});
    expect(lines.map((l) => [l.msg, l.dropped, l.policy])).toEqual([
      ['outbox full: messages dropped', 1, 'reject-new'],
    ]);
    await until(() => lines.length === 2, 5_000, 'the second drop report');
    expect(lines[1]?.dropped).toBe(4);
    expect(outbox.dropped.rejected).toBe(5);
  });

  it('drop-oldest while the bridge is caught up: a dropped entry is never handed out, whether in memory or the table', async () => {
    const { outbox } = open({ maxBytes: ENTRY(10) * 4, overflow: 'drop-oldest', tailBytes: ENTRY(10) * 3 });
    await outbox.append(msg('d1', 0));
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([0]);
    // Caught up: these are held in memory for the bridge; the fifth drops the oldest (0, taken but not acked).
    for (let i = 1; i <= 4; i++) await outbox.append(msg('d1', i));
    expect(outbox.dropped.oldest).toBe(1);
    expect(outbox.take(2).map((e) => e.payload[0])).toEqual([1, 2]);
    await outbox.append(msg('d1', 5)); // drops 1, taken
    await outbox.append(msg('d1', 6)); // drops 2, taken
    await outbox.append(msg('d1', 7)); // drops 3, in memory and not taken yet
    expect(outbox.dropped.oldest).toBe(4);
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([4, 5, 6, 7]);
    expect(outbox.messages).toBe(4);
  });
  it('once caught up, take hands out at most `max` entries from memory, with the seqs and ids the table has', async () => {
    const { outbox } = open();
    expect(outbox.take(10)).toEqual([]);
    let calls = 0;
    const stop = outbox.onAppended(() => calls++);
    await Promise.all([1, 2, 3, 4, 5].map((i) => outbox.append(msg('d1', i))));
    const first = outbox.take(2);
    const rest = outbox.take(10);
    expect(first.map((e) => e.payload[0])).toEqual([1, 2]);
    expect(rest.map((e) => e.payload[0])).toEqual([3, 4, 5]);
    expect(outbox.take(10)).toEqual([]);
    outbox.rewind();
    expect(outbox.take(10)).toEqual([...first, ...rest]);
    expect(calls).toBe(1);
    stop();
    await outbox.append(msg('d1', 6));
    expect(calls).toBe(1);
  });

  it('a turn of exactly 128 appends (two full INSERT statements) commits them all', async () => {
    const { outbox } = open();
    await Promise.all(Array.from({ length: 128 }, (_, i) => outbox.append(msg('d1', i))));
    expect(outbox.messages).toBe(128);
    expect(outbox.take(200).map((e) => e.payload[0])).toEqual(Array.from({ length: 128 }, (_, i) => i));
  });

  it('a message of exactly maxBytes fits', async () => {
    const { outbox } = open({ maxBytes: ENTRY(10), overflow: 'drop-oldest' });
    await outbox.append(msg('d1', 1));
    expect(outbox.messages).toBe(1);
    expect(outbox.bytes).toBe(ENTRY(10));
  });

  it('drop-oldest logs its drops with the policy: at once, then once a second with the count since, nothing for a quiet second', async () => {
    // Only the drop log's one-second clock is faked; commits still run on the real event loop.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanups.push(() => vi.useRealTimers());
    const { lines, logger } = capturedLogger();
    const maxBytes = ENTRY(10) * 2;
    const { outbox } = open({ maxBytes, overflow: 'drop-oldest' }, undefined, logger);
    await outbox.append(msg('d1', 0));
    await outbox.append(msg('d1', 1));
    expect(lines).toEqual([]); // commits that drop nothing log nothing
    await outbox.append(msg('d1', 2)); // drops 0
    expect(lines).toEqual([
      {
        level: 40,
        time: expect.any(Number),
        msg: 'outbox full: messages dropped',
        dropped: 1,
        policy: 'drop-oldest',
        maxBytes,
      },
    ]);
    // One turn of four: 1 and 2 leave the table, and the turn's own 3 and 4 give way to 5 and 6 (never written).
    await Promise.all([3, 4, 5, 6].map((i) => outbox.append(msg('d1', i))));
    expect(outbox.dropped.oldest).toBe(5);
    expect(lines).toHaveLength(1); // within the second: counted, not logged yet
    vi.advanceTimersByTime(1000);
    expect(lines.slice(1)).toMatchObject([{ dropped: 4, policy: 'drop-oldest', maxBytes }]);
    vi.advanceTimersByTime(1000); // a second without drops: no report of zero
    expect(lines).toHaveLength(2);
    vi.advanceTimersByTime(5000);
    expect(lines).toHaveLength(2);
    await outbox.append(msg('d1', 7)); // after a quiet second the next drop is logged at once
    expect(lines.slice(2)).toMatchObject([{ dropped: 1, policy: 'drop-oldest' }]);
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([6, 7]);
  });

  it('close cancels the pending drop report: an outbox logs nothing after it is closed (its drops stay counted)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanups.push(() => vi.useRealTimers());
    const { lines, logger } = capturedLogger();
    const { outbox } = open({ maxBytes: ENTRY(10) * 2, overflow: 'drop-oldest' }, undefined, logger);
    await Promise.all([0, 1, 2].map((i) => outbox.append(msg('d1', i))));
    expect(lines).toHaveLength(1); // the first drop, at once
    await Promise.all([3, 4].map((i) => outbox.append(msg('d1', i))));
    expect(lines).toHaveLength(1); // counted, to be reported within the second
    outbox.close();
    vi.advanceTimersByTime(5000);
    expect(lines).toHaveLength(1);
    expect(outbox.dropped.oldest).toBe(3);
  });

  it('after close nothing scheduled touches the database, so its owner may close it in the same turn', async () => {
    const failures: unknown[] = [];
    const { db, outbox } = open({}, undefined, undefined, {
      succeeded: () => {},
      failed: (err: unknown) => failures.push(err) > 0,
    });
    await Promise.all([1, 2, 3].map((i) => outbox.append(msg('d1', i))));
    const [first] = outbox.take(1);
    outbox.ack(first!.seq); // schedules a delete for the next turn
    const last = outbox.append(msg('d1', 4)); // schedules a commit for the next turn
    outbox.close(); // does both now
    db.close();
    await expect(last).resolves.toBeUndefined();
    await new Promise((r) => setImmediate(r)); // the turn in which the delete and the commit were scheduled
    expect(failures).toEqual([]);
    await expect(outbox.append(msg('d1', 5))).rejects.toMatchObject({
      code: 'OUTBOX_CLOSED',
      message: 'outbox closed',
    });
  });

  it('a failed delete is logged at debug with the number of acks kept, and retried without a health watcher', async () => {
    const { lines, logger } = capturedLogger('debug');
    const { db, outbox } = open({}, undefined, logger);
    await Promise.all([1, 2, 3].map((i) => outbox.append(msg('d1', i))));
    db.exec(`CREATE TRIGGER stuck BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
    for (const e of outbox.take(10)) outbox.ack(e.seq);
    await until(() => lines.length > 0, 5_000, 'the delete to fail');
    expect(lines[0]).toMatchObject({ level: 20, msg: 'outbox delete failed; retrying', acks: 3 });
    expect(String(lines[0]?.err)).toContain('disk I/O error');
    expect(outbox.messages).toBe(3);
    db.exec('DROP TRIGGER stuck');
    await until(() => outbox.messages === 0, 5_000, 'the retried delete');
    expect((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n).toBe(0);
  });

  it('a throwing append callback is logged, and the others of its turn are still told and committed', async () => {
    const { lines, logger } = capturedLogger();
    const { outbox } = open({}, undefined, logger);
    let appended = 0;
    outbox.onAppended(() => appended++);
    outbox.appendThen(msg('d1', 1), () => {
      throw new Error('caller bug');
    });
    const second = new Promise<Error | undefined>((resolve) => outbox.appendThen(msg('d1', 2), resolve));
    await expect(second).resolves.toBeUndefined();
    expect(lines).toMatchObject([{ level: 50, msg: 'outbox append callback threw', err: 'caller bug' }]);
    expect(appended).toBe(1);
    expect(outbox.messages).toBe(2);
    expect(outbox.take(10).map((e) => e.payload[0])).toEqual([1, 2]);
  });

  it('a caught-up bridge gets new commits with their MQTT 5 properties from memory, and the same from the table', async () => {
    const { outbox } = open();
    expect(outbox.take(10)).toEqual([]);
    const props = { correlationData: Buffer.from([9, 8]), responseTopic: 'r/1', userProperties: { k: 'v' } };
    const plain = { contentType: 'text/plain' }; // no correlation data
    await outbox.append({ ...msg('d1', 1), props });
    await outbox.append(msg('d1', 2));
    await outbox.append({ ...msg('d1', 3), props: plain });
    const fresh = outbox.take(10);
    expect(fresh.map((e) => e.props)).toEqual([props, undefined, plain]);
    outbox.rewind();
    // The same entries, key for key: one without properties has no `props` key from memory either.
    expect(outbox.take(10)).toStrictEqual(fresh);
  });

  it('a caught-up bridge is handed the very buffers appended, not read back from SQLite, also when it took while appends were pending', async () => {
    const { outbox } = open();
    expect(outbox.take(10)).toEqual([]); // caught up
    const a = msg('d1', 1);
    const b = msg('d1', 2);
    const c = msg('d1', 3);
    await outbox.append(a);
    const [first] = outbox.take(10);
    expect(first?.payload).toBe(a.payload);
    const pending = outbox.append(b); // the bridge takes while this append waits for its commit
    expect(outbox.take(10)).toEqual([]);
    await pending;
    await outbox.append(c);
    const next = outbox.take(10);
    expect(next.map((e) => e.payload)).toEqual([b.payload, c.payload]);
    expect(next[0]?.payload).toBe(b.payload);
    expect(next[1]?.payload).toBe(c.payload);
    // What the table hands out after a rewind is equal, but a copy: the checks above tell the two apart.
    outbox.rewind();
    const again = outbox.take(10);
    expect(again.map((e) => e.payload)).toEqual([a.payload, b.payload, c.payload]);
    expect(again[0]?.payload).not.toBe(a.payload);
  });

  it('the in-memory tail holds at most tailBytes: what fits is handed out as appended, the rest read back after it', async () => {
    const { outbox } = open({ tailBytes: ENTRY(10) * 3 });
    const sent = Array.from({ length: 10 }, (_, i) => msg('d1', i));
    const fromMemory = (e: { payload: Buffer; seq: number }, i: number) => e.payload === sent[i]?.payload;
    const take = (max: number) =>
      outbox.take(max).map((e) => [e.payload[0], fromMemory(e, e.payload[0] as number)]);
    // Two committed before the bridge caught up; its first take reads both and keeps the second in memory.
    await Promise.all([0, 1].map((i) => outbox.append(sent[i]!)));
    expect(take(1)).toEqual([[0, false]]);
    // The second takes one entry's room: two more fit the tail (exactly tailBytes), the third is in the table only.
    await Promise.all([2, 3, 4].map((i) => outbox.append(sent[i]!)));
    expect(take(10)).toEqual([
      [1, false],
      [2, true],
      [3, true],
    ]);
    expect(take(10)).toEqual([[4, false]]);
    // Caught up again with an empty tail: three fill it exactly; after two are taken there is room for two more.
    await Promise.all([5, 6, 7].map((i) => outbox.append(sent[i]!)));
    expect(take(2)).toEqual([
      [5, true],
      [6, true],
    ]);
    await Promise.all([8, 9].map((i) => outbox.append(sent[i]!)));
    expect(take(10)).toEqual([
      [7, true],
      [8, true],
      [9, true],
    ]);
    expect(take(10)).toEqual([]);
  });

  it('a caught-up bridge taking a long in-memory tail in parts gets each entry once, in order', async () => {
    const { outbox } = open();
    expect(outbox.take(10)).toEqual([]);
    const sent = Array.from({ length: 2000 }, (_, i) => msg('d1', i));
    await Promise.all(sent.map((m) => outbox.append(m)));
    const taken = [...outbox.take(1100), ...outbox.take(600), ...outbox.take(600)];
    expect(taken).toHaveLength(2000);
    expect(taken.every((e, i) => e.payload === sent[i]?.payload)).toBe(true);
    expect(outbox.take(10)).toEqual([]);
  });

  it('drop-oldest frees the in-memory room of what it drops: the next commits are still served from memory', async () => {
    const { outbox } = open({ maxBytes: ENTRY(10) * 3, tailBytes: ENTRY(10) * 3 });
    expect(outbox.take(10)).toEqual([]);
    const sent = Array.from({ length: 5 }, (_, i) => msg('d1', i));
    await Promise.all([0, 1, 2].map((i) => outbox.append(sent[i]!)));
    await outbox.append(sent[3]!); // drops 0, held in memory and not taken
    await outbox.append(sent[4]!); // drops 1
    const taken = outbox
      .take(10)
      .map((e) => [e.payload[0], e.payload === sent[e.payload[0] as number]?.payload]);
    expect(taken).toEqual([
      [2, true],
      [3, true],
      [4, true],
    ]);
    expect(outbox.dropped.oldest).toBe(2);
  });

  it('acks over several turns, each out of order, delete exactly the acked entries', async () => {
    const { db, outbox } = open();
    await Promise.all(Array.from({ length: 12 }, (_, i) => outbox.append(msg('d1', i))));
    const taken = outbox.take(12);
    const ack = (indexes: number[]) => {
      for (const i of indexes) outbox.ack(taken[i]!.seq);
    };
    ack([1, 0]);
    await until(() => outbox.messages === 10, 5_000, 'the first deletes');
    ack([9, 5, 4, 11, 3]);
    await until(() => outbox.messages === 5, 5_000, 'the second deletes');
    const left = (db.prepare('SELECT seq FROM outbox ORDER BY seq').all() as { seq: number }[]).map(
      (r) => r.seq,
    );
    expect(left).toEqual([2, 6, 7, 8, 10].map((i) => taken[i]!.seq));
    expect(outbox.bytes).toBe(5 * ENTRY(10));
  });

  it('a failed write tells each caller why: OUTBOX_WRITE with the SQLite error, the one health was told, as its cause', async () => {
    const failures: unknown[] = [];
    const { db, outbox } = open({}, undefined, undefined, {
      succeeded: () => {},
      failed: (err: unknown) => failures.push(err) > 0,
    });
    db.exec(
      `CREATE TRIGGER full BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
    );
    const err = (await outbox.append(msg('d1', 1)).catch((e: unknown) => e)) as Error & { code: string };
    expect(err).toMatchObject({
      code: 'OUTBOX_WRITE',
      message: 'outbox write failed: database or disk is full',
    });
    expect(failures).toHaveLength(1);
    expect(err.cause).toBe(failures[0]);
    expect((err.cause as Error).message).toBe('database or disk is full');
  });

  it('a bridge behind the table gets at most `max` entries per take from what was read ahead, none for take(0)', async () => {
    const { outbox } = open({ tailBytes: 1 });
    await Promise.all(Array.from({ length: 600 }, (_, i) => outbox.append(msg('d1', i))));
    const numbers = (entries: { payload: Buffer }[]) => entries.map((e) => e.payload[0]);
    const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => (from + i) % 256);
    expect(outbox.take(0)).toEqual([]); // reads ahead, hands out nothing
    expect(numbers(outbox.take(7))).toEqual(range(0, 7));
    expect(outbox.take(0)).toEqual([]);
    expect(numbers(outbox.take(5))).toEqual(range(7, 12));
    const rest: { payload: Buffer }[] = [];
    for (let batch = outbox.take(100); batch.length > 0; batch = outbox.take(100)) {
      expect(batch.length).toBeLessThanOrEqual(100);
      rest.push(...batch);
    }
    expect(numbers(rest)).toEqual(range(12, 600));
  });

  it('a delete that fails part-way leaves the totals as the table has them, and is retried whole', async () => {
    const health = { failed: 0 };
    const { db, outbox } = open({}, undefined, undefined, {
      succeeded: () => {},
      failed: () => ++health.failed > 0,
    });
    await Promise.all(Array.from({ length: 6 }, (_, i) => outbox.append(msg('d1', i))));
    const taken = outbox.take(6);
    // Two runs in one transaction: 0–1 is deleted, then 4 fails and the whole transaction rolls back.
    db.exec(`CREATE TRIGGER stuck BEFORE DELETE ON outbox WHEN OLD.seq = ${taken[4]!.seq}
             BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
    for (const i of [0, 1, 4]) outbox.ack(taken[i]!.seq);
    await until(() => health.failed > 0, 5_000, 'the delete to fail');
    expect(outbox.messages).toBe(6);
    expect(outbox.bytes).toBe(6 * ENTRY(10));
    db.exec('DROP TRIGGER stuck');
    await until(() => outbox.messages === 3, 5_000, 'the retried delete');
    expect(outbox.bytes).toBe(3 * ENTRY(10));
    const left = (db.prepare('SELECT seq FROM outbox ORDER BY seq').all() as { seq: number }[]).map(
      (r) => r.seq,
    );
    expect(left).toEqual([2, 3, 5].map((i) => taken[i]!.seq));
  });
});

/** A logger at `level` whose lines land in `lines`, parsed. */
function capturedLogger(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, logger: createLogger({ destination, level }) };
}
