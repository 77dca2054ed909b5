import type { DiscoveredDevice, DiscoveryContext, DiscoveryHandler } from '../../src/model/handler.js';
import { child, type Logger, logError } from '../../src/util/logger.js';
import { FileTrigger } from './fileTrigger.js';
import { type Presence, presentDevices, readPresence } from './presence.js';
import {
  type DebugEchoDetails,
  DebugEchoDetailsSchema,
  type DebugEchoDetailsSchemaType,
  debugEchoDefaults,
} from './schema.js';

/** How long a burst of file events is gathered into one read of the presence file. */
const debounceMs = 30;

export type DebugEchoHandler = DiscoveryHandler<DebugEchoDetailsSchemaType> & {
  /** `details.shared`: this handler's devices are shared or not per config, not per handler. */
  sharedFor(details: DebugEchoDetails): boolean;
};

/**
 * The devices its details list, each present while the presence file names it (or there is no such file).
 * Yields the full list whenever it changes; ends when `ctx.signal` aborts; never throws.
 */
export async function* discoverDebugEcho(
  details: DebugEchoDetails,
  ctx: DiscoveryContext,
): AsyncGenerator<DiscoveredDevice[]> {
  const logger = child(ctx.logger, 'discovery:debug-echo');
  const devices = listedDevices(details, logger);
  if (details.presenceFile === undefined) {
    yield devices;
    await aborted(ctx.signal);
    return;
  }
  const path = details.presenceFile.replaceAll('{node}', ctx.node ?? '');
  yield* watchPresence(path, devices, details, { ...ctx, logger });
}

async function* watchPresence(
  path: string,
  devices: readonly DiscoveredDevice[],
  details: DebugEchoDetails,
  ctx: DiscoveryContext,
): AsyncGenerator<DiscoveredDevice[]> {
  const { logger, clock, signal } = ctx;
  const trigger = new FileTrigger(path, { clock, logger, debounceMs });
  const interval = details.pollIntervalMs ?? debugEchoDefaults.pollIntervalMs;
  let last: string | undefined;
  try {
    while (!signal.aborted) {
      trigger.ensureWatching();
      const presence = await readSafely(path, logger);
      if (signal.aborted) break;
      const present = presence && presentDevices(devices, presence);
      const snapshot = present && JSON.stringify(present);
      if (present && snapshot !== last) {
        last = snapshot;
        logger.debug({ ids: present.map((d) => d.id) }, 'present devices changed');
        yield present;
      }
      await trigger.wait(interval, signal);
    }
  } finally {
    trigger.close();
  }
}

/** The configured devices, each id once (the first wins). */
function listedDevices(details: DebugEchoDetails, logger: Logger): DiscoveredDevice[] {
  const byId = new Map<string, DiscoveredDevice>();
  for (const { id, properties } of details.devices) {
    if (byId.has(id)) logger.warn({ id }, 'device listed twice in the details; the first wins');
    else byId.set(id, { id, properties: { ...properties } });
  }
  return [...byId.values()];
}

/** An unreadable file (not a missing one) keeps the last list; the next event or poll tries again. */
async function readSafely(path: string, logger: Logger): Promise<Presence | undefined> {
  try {
    return await readPresence(path);
  } catch (err) {
    logError(logger, 'cannot read the presence file', err, { path });
    return undefined;
  }
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** A debug-echo handler; `shared` is what the handler says when the agent does not ask `sharedFor`. */
export function createDebugEchoHandler(options: { shared?: boolean } = {}): DebugEchoHandler {
  const shared = options.shared ?? debugEchoDefaults.shared;
  return {
    name: 'debug-echo',
    detailsSchema: DebugEchoDetailsSchema,
    shared,
    sharedFor: (details) => details.shared ?? shared,
    discover: discoverDebugEcho,
  };
}

export const debugEchoHandler: DebugEchoHandler = createDebugEchoHandler();
