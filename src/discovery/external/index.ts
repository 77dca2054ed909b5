import type { ExternalHandlersConfig } from '../../config/load.js';
import type { DiscoveryHandler } from '../../model/handler.js';
import { child, type Logger } from '../../util/logger.js';
import { externalHandler } from './externalHandler.js';
import { RegistrationServer } from './registrationServer.js';
import { HandlerRegistrations } from './registrations.js';

export { withExternal } from './schema.js';

/**
 * Akri-compatible discovery handlers in their own processes: the registration socket, and one handler per
 * name the config lists, for the DiscoveryManager to run like the built-in ones.
 */
export class ExternalHandlers {
  readonly handlers: readonly DiscoveryHandler[];
  private readonly server: RegistrationServer;

  constructor(config: ExternalHandlersConfig, logger: Logger) {
    const registrations = new HandlerRegistrations(config.handlers);
    this.server = new RegistrationServer({
      dir: config.dir,
      registrations,
      logger: child(logger, 'discovery:external'),
    });
    const socketPath = this.server.socketPath;
    this.handlers = config.handlers.map((name) =>
      externalHandler(name, { ...config, registrations, socketPath }),
    );
  }

  get socketPath(): string {
    return this.server.socketPath;
  }

  start(): Promise<void> {
    return this.server.start();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }
}
