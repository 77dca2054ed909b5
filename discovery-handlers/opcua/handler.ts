import type { DiscoveredDevice, DiscoveryContext, DiscoveryHandler } from '../../src/model/handler.js';
import { logError } from '../../src/util/logger.js';
import { openClientPki } from './clientPki.js';
import { type OpcuaDetails, opcuaDetailsSchema } from './detailsSchema.js';
import { toDevices } from './devices.js';
import type { OpcuaEnv } from './env.js';
import { FailureLog } from './failureLog.js';
import { loadOpcua } from './opcuaModule.js';
import { Scanners } from './scanners.js';
import { type OpcuaSettings, resolveSettings, settingsProblems } from './settings.js';
import type { FoundServer } from './types.js';
import { ConnectionWatch } from './watch.js';

/**
 * OPC UA discovery: FindServers on every discovery URL (a server or a Local Discovery Server), GetEndpoints on
 * each server found, the endpoint matching the wanted security, optionally browse-path values read in a
 * session. Polls (OPC UA servers announce nothing to clients) and watches each found server's connection.
 */
export const opcuaHandler: DiscoveryHandler<typeof opcuaDetailsSchema> = {
  name: 'opcua',
  detailsSchema: opcuaDetailsSchema,
  shared: true,
  discover: (details, ctx) => discover(details, ctx),
};

async function* discover(details: OpcuaDetails, ctx: DiscoveryContext): AsyncGenerator<DiscoveredDevice[]> {
  if (ctx.signal.aborted) return;
  const settings = resolveSettings(details);
  const problems = settingsProblems(settings);
  if (problems.length > 0) {
    ctx.logger.error({ problems }, 'invalid OPC UA discovery details; not discovering');
    return;
  }
  // Ours to abort too: a consumer that stops iterating ends the scans as surely as the agent's signal does.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  const env = await openEnv(settings, { ...ctx, signal: stop.signal });
  if (!env) return;
  const scanners = new Scanners(env);
  const watch = settings.watchConnections ? new ConnectionWatch(env, (url) => scanners.lost(url)) : undefined;
  try {
    scanners.start();
    yield* lists(env, scanners, watch);
  } catch (err) {
    logError(ctx.logger, 'OPC UA discovery failed', err);
  } finally {
    stop.abort();
    ctx.signal.removeEventListener('abort', onAbort);
    await scanners.stopped();
    await watch?.close();
    await env.pki.dispose().catch((err: unknown) => logError(ctx.logger, 'OPC UA PKI cleanup failed', err));
  }
}

/** The full device list each time it changes, once every discovery URL has answered (or failed) once. */
async function* lists(
  env: OpcuaEnv,
  scanners: Scanners,
  watch: ConnectionWatch | undefined,
): AsyncGenerator<DiscoveredDevice[]> {
  let last: string | undefined;
  const limit = limiter(env);
  while (!env.signal.aborted) {
    await scanners.changed.wait();
    if (env.signal.aborted || !scanners.complete()) continue;
    const found = scanners.current();
    const devices = limit(toDevices(found));
    watch?.sync(watchedUrls(found, devices));
    const key = JSON.stringify(devices);
    if (key === last) continue;
    last = key;
    env.logger.debug({ count: devices.length }, 'OPC UA device list changed');
    yield devices;
  }
}

async function openEnv(settings: OpcuaSettings, ctx: DiscoveryContext): Promise<OpcuaEnv | undefined> {
  try {
    const opcua = await loadOpcua();
    const pki = await openClientPki(opcua, settings, ctx.logger);
    const failures = new FailureLog(ctx.logger);
    return { opcua, settings, pki, failures, logger: ctx.logger, clock: ctx.clock, signal: ctx.signal };
  } catch (err) {
    logError(ctx.logger, 'OPC UA discovery cannot start', err);
    return undefined;
  }
}

/** At most maxDevices, logged when the number found over the limit changes. */
function limiter(env: OpcuaEnv): (devices: DiscoveredDevice[]) => DiscoveredDevice[] {
  const { maxDevices } = env.settings;
  let warnedAt = 0;
  return (devices) => {
    if (devices.length <= maxDevices) return devices;
    if (devices.length !== warnedAt) {
      env.logger.warn({ found: devices.length, maxDevices }, 'OPC UA devices over maxDevices dropped');
    }
    warnedAt = devices.length;
    return devices.slice(0, maxDevices);
  };
}

/** The server URLs behind the listed devices with a selected endpoint. */
function watchedUrls(found: readonly FoundServer[], devices: readonly DiscoveredDevice[]): Set<string> {
  const listed = new Set(devices.map((d) => d.properties.OPCUA_APPLICATION_URI));
  return new Set(
    found.filter((f) => f.endpoint && listed.has(f.application.applicationUri)).map((f) => f.serverUrl),
  );
}
