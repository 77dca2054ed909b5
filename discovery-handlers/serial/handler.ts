import {
  DEFAULT_PROBE_WRITE_PATHS,
  type DiscoveredDevice,
  type DiscoveryContext,
  type DiscoveryHandler,
} from '../../src/model/handler.js';
import { backoffDelay } from '../../src/util/clock.js';
import { type Logger, logError } from '../../src/util/logger.js';
import { DirWatcher } from './dirWatcher.js';
import { globBaseDir } from './glob.js';
import { type ScanResult, SerialScanner } from './scanner.js';
import { type SerialDetails, SerialDetailsSchema } from './schema.js';
import { resolveSettings } from './settings.js';
import { type SysRoots, systemRoots } from './sysfs.js';
import { RescanTrigger } from './trigger.js';

export interface SerialHandlerOptions {
  /** sysfs and udev database locations; tests point them at fake trees. */
  roots?: SysRoots;
  /** Always watched for hot-plug, whatever the globs say. Default /dev. */
  devDir?: string;
  /** How long a burst of file-system events is gathered into one rescan. Default 50 ms. */
  debounceMs?: number;
}

/** First retry after a probe that could not run (port locked by another prober); doubles up to the interval. */
const retryBaseMs = 200;

export type SerialHandler = DiscoveryHandler<typeof SerialDetailsSchema>;

/** The serial-port handler: local devices (not shared), found by glob, sysfs identity and an optional probe. */
export function createSerialHandler(options: SerialHandlerOptions = {}): SerialHandler {
  return {
    name: 'serial',
    detailsSchema: SerialDetailsSchema,
    shared: false,
    discover: (details, ctx) => discoverSerial(details, ctx, options),
  };
}

export const serialHandler: SerialHandler = createSerialHandler();

/**
 * Scans once at start, then again on every create/delete in /dev, the globs' directories and the
 * directories the matched nodes live in (e.g. /dev/pts), with a slow periodic rescan as a fallback.
 * Yields the full list whenever it changes. Throws only for details that cannot work (a bad probe).
 */
async function* discoverSerial(
  details: SerialDetails,
  ctx: DiscoveryContext,
  options: SerialHandlerOptions,
): AsyncGenerator<DiscoveredDevice[]> {
  const settings = resolveSettings(details);
  const { logger, clock, signal } = ctx;
  const trigger = new RescanTrigger(clock, options.debounceMs ?? 50);
  const watcher = new DirWatcher(() => trigger.fire(), logger);
  const scanner = new SerialScanner(settings, {
    logger,
    clock,
    signal,
    roots: options.roots ?? systemRoots,
    probeWritePaths: ctx.probeWritePaths ?? DEFAULT_PROBE_WRITE_PATHS,
  });
  const staticDirs = [options.devDir ?? '/dev', ...settings.paths.map(globBaseDir)];
  let last: string | undefined;
  let retries = 0;
  try {
    watcher.update(staticDirs);
    while (!signal.aborted) {
      trigger.reset();
      const result = await scanSafely(scanner, logger);
      if (signal.aborted) break;
      watcher.update([...staticDirs, ...(result?.nodeDirs ?? [])]);
      const snapshot = result && JSON.stringify(result.devices);
      if (result && snapshot !== last) {
        last = snapshot;
        logger.debug(
          { count: result.devices.length, ids: result.devices.map((d) => d.id) },
          'serial devices changed',
        );
        yield result.devices;
      }
      const retry = result?.retry ?? true;
      retries = retry ? retries + 1 : 0;
      const interval = settings.rescanIntervalMs;
      await trigger.wait(retry ? backoffDelay(retries - 1, retryBaseMs, interval) : interval, signal);
    }
  } finally {
    watcher.close();
    trigger.close();
  }
}

/** A scan that fails as a whole (a bug, not a bad port: those are skipped inside) is logged and retried. */
async function scanSafely(scanner: SerialScanner, logger: Logger): Promise<ScanResult | undefined> {
  try {
    return await scanner.scan();
  } catch (err) {
    logError(logger, 'serial scan failed', err);
    return undefined;
  }
}
