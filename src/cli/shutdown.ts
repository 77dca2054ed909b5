import type { Logger } from '../util/logger.js';

/** How long a stop may take before the process exits anyway (docs/operations.md, "Durability"). */
const STOP_GRACE_MS = 5000;

/**
 * Arms the safety net of a stop: a process still here 5 s from now logs why and exits 1. Returns the disarm.
 * The timer is unref'd, so it never keeps alive a process that has nothing left to do.
 */
export function exitUnlessStoppedWithin(logger: Logger): () => void {
  const timer = setTimeout(() => {
    logger.error({ graceMs: STOP_GRACE_MS }, `shutdown took over ${STOP_GRACE_MS / 1000} s; exiting`);
    process.exit(1);
  }, STOP_GRACE_MS);
  timer.unref();
  return () => clearTimeout(timer);
}

/**
 * Resolves once SIGTERM or SIGINT has come and `stop` has finished (or failed, which is logged). The safety net
 * stays armed: a stop that takes over 5 s, or one that leaves something open that keeps the process alive,
 * ends the process with status 1. `details` adds fields to the "shutting down" line (the hub's counters).
 */
export function runUntilSignal(
  logger: Logger,
  stop: () => Promise<void>,
  details: () => Record<string, unknown> = () => ({}),
): Promise<void> {
  return new Promise((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal, ...details() }, 'shutting down');
      exitUnlessStoppedWithin(logger);
      stop().then(resolve, (err: unknown) => {
        logger.error({ err: String(err) }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}
