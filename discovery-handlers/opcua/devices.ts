import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { FoundServer } from './types.js';

export const Property = {
  discoveryUrl: 'OPCUA_DISCOVERY_URL',
  endpointUrl: 'OPCUA_ENDPOINT_URL',
  applicationUri: 'OPCUA_APPLICATION_URI',
  applicationName: 'OPCUA_APPLICATION_NAME',
  securityMode: 'OPCUA_SECURITY_MODE',
  securityPolicy: 'OPCUA_SECURITY_POLICY',
} as const;

/** `serialNumber`, `serial-number`, `Serial_Number` → `SERIAL_NUMBER`. */
export function upperSnake(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .toUpperCase();
}

export function browsePathProperty(name: string): string {
  return `OPCUA_${upperSnake(name)}`;
}

/** Same server reached twice (through a discovery server and directly): keep the first, in discoveryUrls order. */
export function dedupe(found: readonly FoundServer[]): FoundServer[] {
  const seen = new Set<string>();
  return found.filter((f) => {
    const key = serverId(f);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Devices sorted by id. The id is `<applicationUri>|<endpoint URL>` (the server's URL when no endpoint was
 * selected), for every server: many PLCs ship one library-default applicationUri, and an id that took the
 * endpoint only when a sibling with the same URI was present would change whenever that sibling came or went.
 */
export function toDevices(found: readonly FoundServer[]): DiscoveredDevice[] {
  return dedupe(found)
    .map(toDevice)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** One server's id: a function of that server alone. */
export function serverId(f: FoundServer): string {
  return `${f.application.applicationUri}|${f.endpoint?.endpointUrl ?? f.serverUrl}`;
}

function toDevice(f: FoundServer): DiscoveredDevice {
  const uri = f.application.applicationUri;
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(f.values)) properties[browsePathProperty(name)] = value;
  Object.assign(properties, {
    [Property.discoveryUrl]: f.discoveryUrl,
    [Property.applicationUri]: uri,
    [Property.applicationName]: f.application.applicationName,
  });
  if (f.endpoint) {
    properties[Property.endpointUrl] = f.endpoint.endpointUrl;
    properties[Property.securityMode] = f.endpoint.securityMode;
    properties[Property.securityPolicy] = f.endpoint.securityPolicy;
  }
  return {
    id: serverId(f),
    // Before the endpoint was always part of the id, a server alone with its URI had the bare URI.
    formerIds: [uri],
    properties,
    ...(f.conditions.length > 0 && { conditions: f.conditions }),
  };
}
