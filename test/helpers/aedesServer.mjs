// A stand-alone upstream broker for tests and benchmarks: aedes (in-memory) on 127.0.0.1.
// argv: PORT (0 for any). Prints {"port": N} on stdout once listening; exits on SIGTERM.
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? 0);
const broker = await Aedes.createBroker();
const server = createServer(broker.handle);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
});
