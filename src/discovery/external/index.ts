import type { ExternalHandlersConfig } from '../../config/load.js';
import { child, type Logger } from '../../util/logger.js';
import type { DiscoveryHandler } from '../handler.js';
import { ExternalDetailsSchema, externalHandler } from './externalHandler.js';
import { RegistrationServer } from './registrationServer.js';
import { HandlerRegistrations } from './registrations.js';

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

/** The handlers configs may name: `external` ones in place of built-in ones of the same name. */
export function withExternal(
  builtin: readonly DiscoveryHandler[],
  external: readonly DiscoveryHandler[],
): DiscoveryHandler[] {
  const names = new Set(external.map((h) => h.name));
  return [...builtin.filter((h) => !names.has(h.name)), ...external];
}

/** What checking a config needs of external handlers (their names and schema), before any runs. */
export function externalHandlerSpecs(names: readonly string[]): DiscoveryHandler[] {
  return names.map((name) => ({
    name,
    shared: false,
    detailsSchema: ExternalDetailsSchema,
    discover: () => {
      throw new Error(`${name}: a specification only`);
    },
  }));
}
