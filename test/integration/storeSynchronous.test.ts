import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../src/database/db.js';
import { ROOT, tempDir } from '../helpers/processes.js';

const run = promisify(execFile);
const TURNS = 100;

/**
 * The fsyncs a writer process makes for TURNS commits, counted by strace (installed by
 * scripts/install-test-deps.sh): what `store.synchronous` promises is about the disk, so the test watches the
 * system calls that reach it.
 */
async function syncsFor(mode: 'normal' | 'full'): Promise<number> {
  const dir = tempDir();
  try {
    const trace = join(dir.path, 'trace');
    await run(
      'strace',
      [
        '-f',
        '-qq',
        '-e',
        'trace=fsync,fdatasync',
        '-o',
        trace,
        process.execPath,
        join(ROOT, 'test/helpers/commitTurns.mjs'),
        join(dir.path, 'data'),
        mode,
        String(TURNS),
      ],
      { timeout: 60_000 },
    );
    return readFileSync(trace, 'utf8')
      .split('\n')
      .filter((l) => /\b(fsync|fdatasync)\(/.test(l)).length;
  } finally {
    dir.remove();
  }
}

describe('store.synchronous (docs/operations.md "Durability")', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  it('full waits for the disk at every commit; normal does not', async () => {
    const full = await syncsFor('full');
    const normal = await syncsFor('normal');
    expect(full).toBeGreaterThanOrEqual(TURNS);
    // normal: the WAL is synced at checkpoints only, not per commit (9 syncs here: creating the database and closing it).
    expect(normal).toBeLessThan(TURNS / 4);
  }, 120_000);

  it('sets SQLite to WAL with synchronous FULL or NORMAL', () => {
    for (const [mode, level] of [
      ['full', 2],
      ['normal', 1],
    ] as const) {
      const dir = tempDir();
      const db = openDb(dir.path, { synchronous: mode });
      cleanups.push(() => {
        db.close();
        dir.remove();
      });
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(level);
    }
  });
});
