// A stand-alone upstream broker for tests and benchmarks: aedes (in-memory) on 127.0.0.1.
// argv: PORT (0 for any) [JOURNAL]. Prints {"port": N} on stdout once listening; exits on SIGTERM.
// With JOURNAL, every PUBLISH is appended to that file (topic, lb-msg-id, payload; tab-separated) before the
// broker acknowledges it, so a test can count at the upstream side even across a SIGKILL of this broker.
import { closeSync, openSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? 0);
const journal = process.argv[3] ? openSync(process.argv[3], 'a') : undefined;

const broker = await Aedes.createBroker({
  authorizePublish(client, packet, done) {
    if (journal !== undefined && client) {
      const id = packet.properties?.userProperties?.['lb-msg-id'] ?? '';
      writeSync(
        journal,
        `${packet.topic}\t${id}\t${packet.payload.toString('utf8').replace(/[\t\n]/g, ' ')}\n`,
      );
    }
    done(null);
  },
});
const server = createServer(broker.handle);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  broker.close(() => {
    if (journal !== undefined) closeSync(journal);
    process.exit(0);
  });
});
