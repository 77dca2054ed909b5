import { debugEchoHandler } from '../../discovery-handlers/debugEcho/index.js';
import { mqttHandler } from '../../discovery-handlers/mqtt/index.js';
import { onvifHandler } from '../../discovery-handlers/onvif/index.js';
import { opcuaHandler } from '../../discovery-handlers/opcua/index.js';
import { serialHandler } from '../../discovery-handlers/serial/index.js';
import type { DiscoveryHandler } from './handler.js';

/** Every discovery handler the agent knows, listed explicitly. */
export const builtinHandlers: readonly DiscoveryHandler[] = [
  onvifHandler as unknown as DiscoveryHandler,
  opcuaHandler as unknown as DiscoveryHandler,
  serialHandler as unknown as DiscoveryHandler,
  mqttHandler as unknown as DiscoveryHandler,
  debugEchoHandler as unknown as DiscoveryHandler,
];
