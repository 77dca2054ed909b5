import { type Logger as PinoLogger, pino } from 'pino';

/** The one logger type every module takes. Namespaces are child loggers (`discovery:onvif`, `sync:bridge`). */
export type Logger = PinoLogger;

export interface LoggerOptions {
  level?: string;
  /** Write to this stream instead of stdout (tests capture logs this way). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.LEAFBRIDGE_LOG_LEVEL ?? 'info';
  return options.destination
    ? pino({ level, base: undefined }, options.destination as pino.DestinationStream)
    : pino({ level, base: undefined });
}

/** A logger for one namespace, e.g. `child(logger, 'sync:bridge')`. */
export function child(logger: Logger, ns: string): Logger {
  return logger.child({ ns });
}

/** A logger that writes nothing, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Log an error at `error` with its message, and its stack at `debug` (STYLE.md). */
export function logError(
  logger: Logger,
  msg: string,
  err: unknown,
  fields: Record<string, unknown> = {},
): void {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  logger.error({ ...fields, err: e.message, ...(code === undefined ? {} : { code }) }, msg);
  logger.debug({ ...fields, stack: e.stack }, `${msg} (stack)`);
}
