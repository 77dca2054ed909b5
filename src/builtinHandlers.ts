import type { TSchema } from '@sinclair/typebox';
import { DebugEchoDetailsSchema } from '../discovery-handlers/debugEcho/schema.js';
import { ModbusDetailsSchema } from '../discovery-handlers/modbus/schema.js';
import { MqttDetailsSchema } from '../discovery-handlers/mqtt/schema.js';
import { OnvifDetailsSchema } from '../discovery-handlers/onvif/schema.js';
import { opcuaDetailsSchema } from '../discovery-handlers/opcua/detailsSchema.js';
import { SerialDetailsSchema } from '../discovery-handlers/serial/schema.js';
import type { DiscoveryHandler } from './model/handler.js';

type Spec = Pick<DiscoveryHandler, 'name' | 'shared' | 'sharedFor'> & { detailsSchema: TSchema };

/**
 * A handler whose implementation is imported on first use: its name and schema are known at once (to check
 * configs and write the CRD), but an agent pays the memory of a protocol stack only when a config uses it.
 */
export function lazyHandler(spec: Spec, load: () => Promise<unknown>): DiscoveryHandler {
  let loaded: Promise<DiscoveryHandler> | undefined;
  return {
    ...spec,
    async *discover(details, ctx) {
      loaded ??= load() as Promise<DiscoveryHandler>;
      yield* (await loaded).discover(details, ctx);
    },
  };
}

/** Every discovery handler the agent knows, listed explicitly. */
export const builtinHandlers: readonly DiscoveryHandler[] = [
  lazyHandler(
    { name: 'onvif', shared: true, detailsSchema: OnvifDetailsSchema },
    async () => (await import('../discovery-handlers/onvif/index.js')).onvifHandler,
  ),
  lazyHandler(
    { name: 'opcua', shared: true, detailsSchema: opcuaDetailsSchema },
    async () => (await import('../discovery-handlers/opcua/index.js')).opcuaHandler,
  ),
  lazyHandler(
    { name: 'serial', shared: false, detailsSchema: SerialDetailsSchema },
    async () => (await import('../discovery-handlers/serial/index.js')).serialHandler,
  ),
  lazyHandler(
    { name: 'mqtt', shared: false, detailsSchema: MqttDetailsSchema },
    async () => (await import('../discovery-handlers/mqtt/index.js')).mqttHandler,
  ),
  lazyHandler(
    {
      name: 'modbus',
      shared: true,
      detailsSchema: ModbusDetailsSchema,
      sharedFor: (details) => ((details as { serialPorts?: unknown[] }).serialPorts ?? []).length === 0,
    },
    async () => (await import('../discovery-handlers/modbus/index.js')).modbusHandler,
  ),
  lazyHandler(
    {
      name: 'debug-echo',
      shared: false,
      detailsSchema: DebugEchoDetailsSchema,
      sharedFor: (details) => (details as { shared?: boolean }).shared ?? false,
    },
    async () => (await import('../discovery-handlers/debugEcho/index.js')).debugEchoHandler,
  ),
];
