import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LeafbridgeError } from '../util/errors.js';

export type Db = Database.Database;

export interface OpenOptions {
  /** `normal`: a committed write survives a process crash (SIGKILL); `full`: also a power loss. */
  synchronous: 'normal' | 'full';
}

/**
 * The meta key under which the outbox keeps a bound on its sequence numbers: every number it has used is below it,
 * so that none is used twice (a message id is the database's epoch and the number), even after the table empties.
 */
export const OUTBOX_SEQ_LIMIT = 'outbox.seqLimit';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     device TEXT NOT NULL,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     props TEXT,
     bytes INTEGER NOT NULL,
     created INTEGER NOT NULL);
   CREATE TABLE broker_retained (topic TEXT PRIMARY KEY, packet TEXT NOT NULL, payload BLOB NOT NULL);
   CREATE TABLE broker_subscriptions (client_id TEXT NOT NULL, topic TEXT NOT NULL, sub TEXT NOT NULL,
     PRIMARY KEY (client_id, topic));
   CREATE TABLE broker_outgoing (id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL,
     broker_id TEXT, broker_counter INTEGER, message_id INTEGER, packet TEXT NOT NULL, payload BLOB NOT NULL);
   CREATE INDEX broker_outgoing_client ON broker_outgoing (client_id, message_id);
   CREATE TABLE broker_incoming (client_id TEXT NOT NULL, message_id INTEGER NOT NULL, packet TEXT NOT NULL,
     payload BLOB NOT NULL, PRIMARY KEY (client_id, message_id));
   CREATE TABLE broker_wills (client_id TEXT PRIMARY KEY, packet TEXT NOT NULL, payload BLOB NOT NULL);
   CREATE TABLE twins (device TEXT PRIMARY KEY,
     reported TEXT NOT NULL DEFAULT '{}', reported_version INTEGER NOT NULL DEFAULT 0,
     desired TEXT NOT NULL DEFAULT '{}', desired_version INTEGER NOT NULL DEFAULT 0,
     updated INTEGER NOT NULL);
   CREATE TABLE commands (id TEXT PRIMARY KEY, device TEXT NOT NULL, name TEXT NOT NULL,
     payload BLOB NOT NULL, correlation BLOB NOT NULL, expires INTEGER NOT NULL, created INTEGER NOT NULL);
   CREATE INDEX commands_device ON commands (device, created);`,
  // Device objects of the standalone agent (src/registry/localDeviceStore.ts); resource versions from one counter.
  `CREATE TABLE devices (name TEXT PRIMARY KEY, json TEXT NOT NULL, resource_version INTEGER NOT NULL);
   INSERT OR IGNORE INTO meta (key, value) VALUES ('devices.resourceVersion', '0');`,
  // The standalone agent's DiscoveryConfigs (from the config file, or created through the HTTP API), and the
  // cache of Kubernetes objects the agent runs from while the API server is away (configs, its Node).
  `CREATE TABLE discovery_configs (name TEXT PRIMARY KEY, json TEXT NOT NULL, source TEXT NOT NULL,
     resource_version INTEGER NOT NULL);
   CREATE TABLE kube_cache (kind TEXT NOT NULL, name TEXT NOT NULL, json TEXT NOT NULL,
     PRIMARY KEY (kind, name));`,
  // The outbox numbers its rows itself (src/database/outbox.ts, OUTBOX_SEQ_LIMIT): AUTOINCREMENT wrote the
  // sqlite_sequence page in every commit. What that table had handed out is where the numbering goes on.
  `CREATE TABLE outbox_numbered (
     seq INTEGER PRIMARY KEY,
     device TEXT NOT NULL,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     props TEXT,
     bytes INTEGER NOT NULL,
     created INTEGER NOT NULL);
   INSERT INTO outbox_numbered (seq, device, topic, payload, props, bytes, created)
     SELECT seq, device, topic, payload, props, bytes, created FROM outbox;
   INSERT INTO meta (key, value)
     SELECT '${OUTBOX_SEQ_LIMIT}', CAST(seq + 1 AS TEXT) FROM sqlite_sequence WHERE name = 'outbox';
   DROP TABLE outbox;
   ALTER TABLE outbox_numbered RENAME TO outbox;`,
];

/**
 * Opens (and migrates) the agent's one SQLite database in `dataDir`: WAL, one connection, in-process, held
 * exclusively. Exclusive locking spares every transaction its file locks (an `fcntl` pair each) and the
 * shared-memory index, and makes a second agent on the same directory, which would interleave its writes with
 * ours, fail at start instead.
 */
export function openDb(dataDir: string, options: OpenOptions): Db {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, 'leafbridge.db');
  const db = new Database(file);
  db.pragma('busy_timeout = 5000');
  db.pragma('locking_mode = EXCLUSIVE');
  try {
    db.pragma('journal_mode = WAL');
  } catch (err) {
    db.close();
    if ((err as { code?: unknown }).code !== 'SQLITE_BUSY') throw err;
    throw new LeafbridgeError(
      'STORE_IN_USE',
      `${file} is in use by another process (one agent per data directory: is another agent running with dataDir ${dataDir}?)`,
      { cause: err },
    );
  }
  db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('cache_size = -4000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** A value kept in the meta table, created on first use (e.g. the outbox epoch). */
export function metaValue(db: Db, key: string, create: () => string): string {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  if (row) return row.value;
  const value = create();
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run(key, value);
  return value;
}
