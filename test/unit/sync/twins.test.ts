import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../../src/database/db.js';
import { mergePatch, TwinStore, twinDelta } from '../../../src/sync/twins.js';
import { PayloadError } from '../../../src/util/errors.js';
import { tempDir } from '../../helpers/processes.js';

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('TwinStore', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });
  function store() {
    const dir = tempDir();
    const db = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(
      () => dir.remove(),
      () => db.close(),
    );
    return new TwinStore(db);
  }

  it('merges reported patches (null deletes, objects merge) and versions each', () => {
    const twins = store();
    twins.applyReported('d1', json({ fw: '1.0', net: { ip: '10.0.0.2', rssi: -60 }, tmp: 1 }));
    const t = twins.applyReported('d1', json({ net: { rssi: -50 }, tmp: null, $version: 99 }));
    expect(t.reported).toEqual({ fw: '1.0', net: { ip: '10.0.0.2', rssi: -50 } });
    expect(t.reportedVersion).toBe(2);
    expect(twins.get('d1').reported).toEqual(t.reported);
  });

  it('takes desired only with a newer $version (cloud-authoritative, stale ignored)', () => {
    const twins = store();
    expect(twins.applyDesired('d1', json({ $version: 2, mode: 'eco' }))?.desired).toEqual({ mode: 'eco' });
    expect(twins.applyDesired('d1', json({ $version: 1, mode: 'old' }))).toBeUndefined();
    expect(twins.applyDesired('d1', json({ $version: 2, mode: 'same' }))).toBeUndefined();
    expect(twins.applyDesired('d1', json({ $version: 3, rate: 5 }))?.desired).toEqual({ rate: 5 });
    expect(() => twins.applyDesired('d1', json({ mode: 'x' }))).toThrow(/\$version/);
  });

  it('delta lists the desired keys the device has not reached', () => {
    const twins = store();
    twins.applyDesired('d1', json({ $version: 1, mode: 'eco', rate: 5, cfg: { a: 1 } }));
    const t = twins.applyReported('d1', json({ mode: 'eco', rate: 1, cfg: { a: 1 } }));
    expect(twinDelta(t)).toEqual({ rate: 5 });
  });

  it('refuses payloads that are not JSON objects, or nest without end', () => {
    const twins = store();
    for (const bad of ['not json', '[1,2]', '"s"', 'null']) {
      expect(() => twins.applyReported('d1', Buffer.from(bad))).toThrow(PayloadError);
    }
    const deep = `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`;
    expect(() => twins.applyReported('d1', Buffer.from(deep))).toThrow(/deeper/);
  });

  it('merge patch ignores prototype keys', () => {
    const out = mergePatch({}, JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}'));
    expect(out).toEqual({ ok: 1 });
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});
