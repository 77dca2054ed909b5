// The outbox alone, as the slow shape drives it: each commit carries K appended messages and the deletes of the K
// before, which the upstream acknowledged meanwhile, as the bridge does once caught up. Prints the CPU per message
// (user and system) of the outbox and SQLite, without sockets, so that a change to the store can be compared in a
// few seconds and with little noise. Uses the build (npm run build); ROOT=<other checkout> measures another build.
//   node bench/probes/outboxTurns.mjs [K=10] [MESSAGES=100000] [normal|full]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = process.env.ROOT ?? new URL('../..', import.meta.url).pathname;
const load = (path) => import(pathToFileURL(join(root, 'dist/src', path)).href);
const { openDb } = await load('database/db.js');
const { Outbox } = await load('database/outbox.js');
const { silentLogger } = await load('util/logger.js');

const [k = '10', total = '100000', synchronous = 'normal'] = process.argv.slice(2);
const perTurn = Number(k);
const messages = Number(total);
const dir = mkdtempSync(join(tmpdir(), 'outbox-turns-'));
const db = openDb(dir, { synchronous });
const outbox = new Outbox(db, { maxBytes: 64 * 1024 * 1024, overflow: 'drop-oldest' }, silentLogger());
const payload = Buffer.alloc(80, 1);
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** K appends and the acks of the K before, then wait for their commit: K messages a commit. */
async function run(n) {
  let inflight = [];
  for (let sent = 0; sent < n; sent += perTurn) {
    for (const e of inflight) outbox.ack(e.seq);
    const committed = new Promise((resolve) => {
      for (let i = 0; i < perTurn; i++) {
        const last = i === perTurn - 1;
        // One device: the outbox's commit window (for several devices) would only add waits between the commits.
        const message = { device: 's1', topic: 'devices/s1/telemetry', payload };
        outbox.appendThen(message, last ? resolve : () => {});
      }
    });
    await committed;
    inflight = outbox.take(perTurn * 4);
  }
  for (const e of inflight) outbox.ack(e.seq);
  await turn();
}

await run(Math.min(messages, 20_000)); // warm up: JIT, statements, WAL grown
const cpu = process.cpuUsage();
const wall = process.hrtime.bigint();
await run(messages);
const used = process.cpuUsage(cpu);
const wallMs = Number(process.hrtime.bigint() - wall) / 1e6;
outbox.close();
db.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    root,
    perTurn,
    messages,
    synchronous,
    userUsPerMessage: +(used.user / messages).toFixed(2),
    systemUsPerMessage: +(used.system / messages).toFixed(2),
    wallMs: Math.round(wallMs),
    left: outbox.messages,
  }),
);
