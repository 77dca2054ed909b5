// Commits TURNS outbox appends one after another, each its own transaction, with store.synchronous MODE, then
// closes the database. argv: DATA_DIR MODE TURNS. For the test that counts the fsyncs each mode makes.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const { openDb } = await import(join(root, 'dist/src/database/db.js'));
const { Outbox } = await import(join(root, 'dist/src/database/outbox.js'));
const { silentLogger } = await import(join(root, 'dist/src/util/logger.js'));

const [dir, mode, turns] = process.argv.slice(2);
const db = openDb(dir, { synchronous: mode });
const outbox = new Outbox(db, { maxBytes: 1 << 24, overflow: 'drop-oldest' }, silentLogger());
for (let n = 0; n < Number(turns); n++)
  await outbox.append({ device: 'd1', topic: 'devices/d1/telemetry/t', payload: Buffer.from([n]) });
outbox.close();
db.close();
