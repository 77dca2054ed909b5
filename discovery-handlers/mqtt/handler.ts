import type { DiscoveredDevice, DiscoveryContext, DiscoveryHandler } from '../../src/model/handler.js';
import { child, logError } from '../../src/util/logger.js';
import { AnnounceWatch } from './announceWatch.js';
import { ChangeFeed } from './changeFeed.js';
import { type MqttDetails, MqttDetailsSchema, type MqttDetailsSchemaType } from './schema.js';
import { type MqttSettings, resolveSettings } from './settings.js';

/** A burst of announcements within this window becomes one list. */
export const coalesceMs = 50;

/**
 * Devices that announce themselves on the edge broker: a retained birth on `{prefix}/{id}/birth` and
 * presence on the retained `{prefix}/{id}/status`. Yields the full list whenever it changes, at most once per
 * `coalesceMs`; never throws; ends, with its client closed, when `ctx.signal` aborts.
 */
export async function* discoverMqtt(
  details: MqttDetails,
  ctx: DiscoveryContext,
): AsyncGenerator<DiscoveredDevice[]> {
  const logger = child(ctx.logger, 'discovery:mqtt');
  const settings = settingsOrLog(details, logger);
  if (!settings) return;
  const feed = new ChangeFeed(ctx.clock);
  const watch = new AnnounceWatch(settings, feed, { logger, clock: ctx.clock });
  try {
    watch.start();
    yield* lists(watch, feed, ctx.signal);
  } catch (err) {
    logError(logger, 'mqtt discovery failed', err);
  } finally {
    await watch.close();
  }
}

function settingsOrLog(details: MqttDetails, logger: DiscoveryContext['logger']): MqttSettings | undefined {
  try {
    return resolveSettings(details);
  } catch (err) {
    logError(logger, 'mqtt discovery cannot start', err);
    return undefined;
  }
}

async function* lists(
  watch: AnnounceWatch,
  feed: ChangeFeed,
  signal: AbortSignal,
): AsyncGenerator<DiscoveredDevice[]> {
  let last: string | undefined;
  while (!signal.aborted) {
    await feed.wait(signal);
    await feed.settle(coalesceMs, signal);
    if (signal.aborted) return;
    feed.take();
    if (!watch.ready) continue;
    const devices = watch.list();
    const snapshot = JSON.stringify(devices);
    if (snapshot === last) continue;
    last = snapshot;
    yield devices;
  }
}

export const mqttHandler: DiscoveryHandler<MqttDetailsSchemaType> = {
  name: 'mqtt',
  detailsSchema: MqttDetailsSchema,
  shared: false,
  discover: discoverMqtt,
};
