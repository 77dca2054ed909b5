// An outbox writer in a process of its own (the built dist/), for the outbox test that SIGKILLs it.
// argv: DATA_DIR. Appends messages in turns of 10 without end; after each turn's commit it prints one JSON
// line {"committed": [[msgId, payloadByte], ...]}, so the parent knows what the outbox promised was durable.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const { openDb } = await import(join(root, 'dist/src/database/db.js'));
const { Outbox } = await import(join(root, 'dist/src/database/outbox.js'));
const { silentLogger } = await import(join(root, 'dist/src/util/logger.js'));

const db = openDb(process.argv[2], { synchronous: 'normal' });
const outbox = new Outbox(db, { maxBytes: 1 << 30, overflow: 'drop-oldest' }, silentLogger());
for (let n = 0; ; n += 10) {
  const turn = Array.from({ length: 10 }, (_, i) =>
    outbox.append({ device: `d${(n + i) % 3}`, topic: 't', payload: Buffer.from([(n + i) % 256]) }),
  );
  await Promise.all(turn);
  const entries = outbox.take(1000);
  process.stdout.write(`${JSON.stringify({ committed: entries.map((e) => [e.msgId, e.payload[0]]) })}\n`);
}
