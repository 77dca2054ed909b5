import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startTcpHandler } from './handler.js';

/**
 * `node dist/examples/tcp-handler/main.js --dir DIR [--name NAME]`: the TCP-endpoint discovery handler as
 * its own process, beside an agent whose discovery.external lists NAME (default tcp-endpoints).
 */
const { values } = parseArgs({
  options: { dir: { type: 'string' }, name: { type: 'string', default: 'tcp-endpoints' } },
  strict: true,
});
const logger = pino({ name: 'tcp-handler' });
if (!values.dir) {
  logger.error('usage: main.js --dir DIR [--name NAME]   (DIR: where agent-registration.sock is)');
  process.exit(2);
}
const handler = await startTcpHandler({ dir: values.dir, name: values.name, logger });
logger.info({ endpoint: handler.endpoint }, 'serving Discover');
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => void handler.stop().then(() => process.exit(0)));
