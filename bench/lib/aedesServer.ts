// A plain aedes broker (in-memory persistence, the aedes default) on 127.0.0.1, in its own process.
// Forked by the benches with an IPC channel. argv: PORT (0 for any) [GATE_PREFIX].
// With GATE_PREFIX, CONNECTs from client ids starting with it are refused (3, server unavailable) until the
// parent sends {cmd:'open'}: the bench's subscriber gets in first, then the broker "comes up" for the agent.
// Events: {ev:'listening', port}, {ev:'opened', at}. {cmd:'close'} closes and exits.
import { createServer } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();
const port = Number(process.argv[2] ?? 0);
const gatePrefix = process.argv[3];
let gated = Boolean(gatePrefix);

const options: AedesOptions = {};
if (gatePrefix) {
  options.authenticate = (client, _username, _password, done) => {
    if (gated && client.id.startsWith(gatePrefix)) {
      done(Object.assign(new Error('gate closed'), { returnCode: 3 }) as Parameters<typeof done>[0], false);
      return;
    }
    done(null, true);
  };
}

try {
  const broker = await Aedes.createBroker(options);
  const server = createServer(broker.handle);
  server.once('error', childFatal);
  server.listen(port, '127.0.0.1', () => {
    const address = server.address() as { port: number };
    process.send?.({ ev: 'listening', port: address.port });
  });
  process.on('message', (m: { cmd?: string }) => {
    if (m.cmd === 'open') {
      gated = false;
      process.send?.({ ev: 'opened', at: now() });
    } else if (m.cmd === 'close') {
      server.close();
      broker.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    }
  });
} catch (err) {
  childFatal(err);
}
