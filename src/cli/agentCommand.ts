import { parseArgs } from 'node:util';
import { Agent } from '../agent.js';
import { TokenFile } from '../api/tokenFile.js';
import { CredentialsFile } from '../broker/credentialsFile.js';
import { builtinHandlers } from '../builtinHandlers.js';
import { type AgentConfig, loadConfigFile } from '../config/load.js';
import { externalHandlerSpecs, withExternal } from '../discovery/external/schema.js';
import { discoveryConfigProblems } from '../model/discoveryConfigs.js';
import { ConfigError, errorMessage } from '../util/errors.js';
import { createLogger } from '../util/logger.js';
import { TlsFiles } from '../util/tlsFiles.js';
import { runUntilSignal } from './shutdown.js';

export const EXIT_CONFIG = 2;

/** `leafbridge agent --config FILE`: validate, then start; SIGTERM/SIGINT flush and exit 0 within 5 s. */
export async function agentCommand(argv: string[]): Promise<number> {
  const usage =
    'usage: leafbridge agent --config FILE   (docs/configuration.md; node from $NODE_NAME if absent)\n';
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`leafbridge agent: ${errorMessage(err)}\n${usage}`);
    return EXIT_CONFIG;
  }
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(usage);
    return EXIT_CONFIG;
  }
  let config: ReturnType<typeof loadConfigFile>;
  try {
    config = loadConfigFile(values.config);
    const handlers = withExternal(builtinHandlers, externalHandlerSpecs(config.discovery.external.handlers));
    const problems = discoveryConfigProblems(config.discoveryConfigs, handlers);
    if (problems.length > 0) throw new ConfigError(problems);
    // Bad tokens, credentials or TLS files stop the start here, with the config's other problems' exit status.
    checkFiles(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`leafbridge: ${err.message}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  const agent = new Agent(config, logger);
  process.on('uncaughtException', (err) =>
    logger.fatal({ err: err.message, stack: err.stack }, 'uncaught exception'),
  );
  process.on('unhandledRejection', (err) => logger.error({ err: String(err) }, 'unhandled rejection'));
  await agent.start();
  await runUntilSignal(logger, () => agent.stop());
  return 0;
}

/** Reads the files the config names (tokens, broker credentials, TLS); throws ConfigError on the first bad one. */
function checkFiles(config: AgentConfig): void {
  const silent = createLogger({ level: 'silent' });
  const tokensFile = config.http.auth.tokensFile;
  if (tokensFile) new TokenFile(tokensFile, silent).load();
  const credentialsFile = config.auth.credentialsFile;
  if (credentialsFile) new CredentialsFile(credentialsFile, config.auth, silent).load();
  const { tls } = config.broker;
  if (tls) {
    const paths = { cert: tls.cert, key: tls.key, ...(tls.clientCa ? { ca: tls.clientCa } : {}) };
    new TlsFiles(paths, { logger: silent, intervalMs: 0, what: 'broker.tls' }).load();
  }
  if (config.http.tls)
    new TlsFiles(config.http.tls, { logger: silent, intervalMs: 0, what: 'http.tls' }).load();
}
