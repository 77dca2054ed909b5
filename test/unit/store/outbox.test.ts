import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../../src/store/db.js';
import { Outbox, OutboxFullError } from '../../../src/store/outbox.js';
import { silentLogger } from '../../../src/util/logger.js';
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
  function open(options: Partial<ConstructorParameters<typeof Outbox>[1]> = {}, dir = tempDir()) {
    const db = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(() => dir.remove());
    const outbox = new Outbox(db, { maxBytes: 1 << 30, overflow: 'drop-oldest', ...options }, silentLogger());
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
});
