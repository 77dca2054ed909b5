import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

/** node-opcua messages span lines ("... rejected by server,\n Err = (...)"): one line for logs and conditions. */
export function oneLine(err: unknown): string {
  return errorMessage(err).replace(/\s+/g, ' ').trim();
}

/**
 * Per-server failures, logged when they start or change (warn) and when they end (info); the same failure
 * at every poll goes to debug, so a server that hangs for a day does not fill the log.
 */
export class FailureLog {
  private readonly last = new Map<string, string>();

  constructor(private readonly logger: Logger) {}

  /** `what` names the exchange that failed and keys the record with the URL ('OPC UA FindServers failed'). */
  fail(url: string, what: string, err: unknown): void {
    const key = `${what} ${url}`;
    const message = oneLine(err);
    const code = (err as { code?: unknown } | undefined)?.code;
    const fields = { url, err: message, ...(typeof code === 'string' && { code }) };
    if (this.last.get(key) === message) this.logger.debug(fields, what);
    else this.logger.warn(fields, what);
    this.logger.debug({ url, stack: err instanceof Error ? err.stack : undefined }, `${what} (stack)`);
    this.last.set(key, message);
  }

  ok(url: string, what: string): void {
    if (this.last.delete(`${what} ${url}`)) this.logger.info({ url }, `${what}: answers again`);
  }
}
