import type { DiscoveredDevice, DiscoveryContext, DiscoveryHandler } from '../../src/model/handler.js';
import { child } from '../../src/util/logger.js';
import { OnvifDiscovery } from './engine.js';
import { resolveOptions } from './options.js';
import { type OnvifDetails, OnvifDetailsSchema, type OnvifDetailsSchemaType } from './schema.js';

/**
 * Discovers ONVIF cameras (WS-Discovery on one interface) and reads each over SOAP: device information,
 * MAC, media profiles and their RTSP stream URIs. Yields the full list whenever it changes.
 */
export async function* discoverOnvif(
  details: OnvifDetails,
  ctx: DiscoveryContext,
): AsyncGenerator<DiscoveredDevice[]> {
  const logger = child(ctx.logger, 'discovery:onvif');
  const engine = new OnvifDiscovery(resolveOptions(details), { ...ctx, logger });
  try {
    await engine.start();
    yield* engine.lists();
  } finally {
    await engine.stop();
  }
}

export const onvifHandler: DiscoveryHandler<OnvifDetailsSchemaType> = {
  name: 'onvif',
  detailsSchema: OnvifDetailsSchema,
  shared: true,
  discover: discoverOnvif,
};

export { OnvifError, OnvifErrorCode } from './errors.js';
export { OnvifCondition, OnvifProperty } from './properties.js';
export { type OnvifDetails, OnvifDetailsSchema, onvifDefaults } from './schema.js';
