import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../../src/database/db.js';
import { storageFailure, WriteHealth } from '../../../src/database/writeHealth.js';
import { systemClock } from '../../../src/util/clock.js';
import { LeafbridgeError } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/wait.js';

const full = () => Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });

describe('WriteHealth', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  it('finds a storage failure in the cause chain, and only a storage failure', () => {
    const wrapped = new LeafbridgeError('OUTBOX_WRITE', 'outbox write failed', { cause: full() });
    expect(storageFailure(wrapped)?.code).toBe('SQLITE_FULL');
    expect(storageFailure(Object.assign(new Error('x'), { code: 'ENOSPC' }))?.code).toBe('ENOSPC');
    expect(storageFailure(Object.assign(new Error('x'), { code: 'SQLITE_IOERR_WRITE' }))?.code).toBe(
      'SQLITE_IOERR_WRITE',
    );
    expect(storageFailure(new LeafbridgeError('PAYLOAD_NOT_JSON', 'not json'))).toBeUndefined();
    expect(storageFailure(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }))).toBeUndefined();
  });

  it('is unwritable from a storage failure until a write succeeds; the probe brings it back without traffic', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const db = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(() => db.close());
    const health = new WriteHealth({ db, logger: silentLogger(), clock: systemClock, probeMs: 20 });
    cleanups.push(() => health.stop());
    expect(health.failed(new Error('not a storage error'))).toBe(false);
    expect(health.writable).toBe(true);
    expect(health.failed(full())).toBe(true);
    expect(health.state).toMatchObject({ code: 'SQLITE_FULL', message: 'database or disk is full' });
    health.succeeded();
    expect(health.writable).toBe(true);
    health.failed(full());
    expect(health.writable).toBe(false);
    await until(() => health.writable, 2000, 'the probe write');
    expect(db.prepare("SELECT value FROM meta WHERE key = 'store.probe'").get()).toBeDefined();
  });
});
