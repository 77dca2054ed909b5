import type { Logger } from '../util/logger.js';

/** How long a stop may take before the process exits anyway (docs/operations.md, "Stopping"). */
export const STOP_GRACE_MS = 5000;

export interface StopGuardOptions {
  graceMs?: number;
  /** process.exit in production; a test passes its own. */
  exit?: (code: number) => void;
}

/**
 * Arms the safety net of a stop: a process still here `graceMs` from now logs why and exits 1. Returns the
 * disarm. The timer is unref'd, so it never keeps alive a process that has nothing left to do.
 */
export function exitUnlessStoppedWithin(logger: Logger, options: StopGuardOptions = {}): () => void {
  const graceMs = options.graceMs ?? STOP_GRACE_MS;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const timer = setTimeout(() => {
    logger.error({ graceMs }, `shutdown took over ${graceMs / 1000} s; exiting`);
    exit(1);
  }, graceMs);
  timer.unref();
  return () => clearTimeout(timer);
}

/** Where SIGTERM and SIGINT come from: the process, or a test's emitter. */
export interface SignalSource {
  once(signal: 'SIGTERM' | 'SIGINT', listener: () => void): unknown;
}

export interface RunUntilSignalOptions extends StopGuardOptions {
  signals?: SignalSource;
  /** Fields for the "shutting down" line (the hub adds its counters). */
  details?: () => Record<string, unknown>;
}

/**
 * Resolves once SIGTERM or SIGINT has come and `stop` has finished (or failed, which is logged). A stop that
 * takes over the grace period ends the process with status 1 instead.
 */
export function runUntilSignal(
  logger: Logger,
  stop: () => Promise<void>,
  options: RunUntilSignalOptions = {},
): Promise<void> {
  const signals = options.signals ?? process;
  return new Promise((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal, ...options.details?.() }, 'shutting down');
      exitUnlessStoppedWithin(logger, options);
      stop().then(resolve, (err: unknown) => {
        logger.error({ err: String(err) }, 'shutdown failed');
        resolve();
      });
    };
    signals.once('SIGTERM', () => shutdown('SIGTERM'));
    signals.once('SIGINT', () => shutdown('SIGINT'));
  });
}
