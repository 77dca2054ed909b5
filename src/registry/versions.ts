import type { Db } from '../database/db.js';
import type { DeviceObject } from '../model/resources.js';

/** The next resourceVersion of a local collection: one counter per collection in the `meta` table. */
export function nextResourceVersion(db: Db, key: string): number {
  const row = db
    .prepare('UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ? RETURNING value')
    .get(key) as { value: string | number };
  return Number(row.value);
}

/** An object without the fields its store sets (uid, creation time, resourceVersion), to tell real changes. */
export function unversioned(o: DeviceObject): unknown {
  const { uid: _u, creationTimestamp: _c, resourceVersion: _r, ...metadata } = o.metadata;
  return { ...o, metadata };
}
