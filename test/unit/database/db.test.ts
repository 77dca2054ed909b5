import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../../src/database/db.js';
import { tempDir } from '../../helpers/processes.js';

describe('openDb', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  it('holds the database exclusively: a second opening of the same directory fails with STORE_IN_USE, and succeeds once the first is closed', {
    timeout: 20_000,
  }, () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const first = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(() => first.open && first.close());
    first.prepare("INSERT INTO meta (key, value) VALUES ('k', 'v')").run();
    let thrown: unknown;
    try {
      openDb(dir.path, { synchronous: 'normal' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: 'STORE_IN_USE' });
    expect((thrown as Error).message).toContain(`one agent per data directory`);
    expect((thrown as Error).message).toContain(dir.path);
    first.close();
    const second = openDb(dir.path, { synchronous: 'normal' });
    expect(second.prepare("SELECT value FROM meta WHERE key = 'k'").pluck().get()).toBe('v');
    expect(second.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(second.pragma('locking_mode', { simple: true })).toBe('exclusive');
    second.close();
  });
});
