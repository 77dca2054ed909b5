import type { DiscoveredDevice } from '../../src/discovery/handler.js';
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
    const key = `${f.application.applicationUri}\n${f.endpoint?.endpointUrl ?? f.serverUrl}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Devices sorted by id. The id is the applicationUri; when two different servers share one applicationUri (a
 * cloned configuration), each id gets `|<endpoint URL>` so that both stay listed.
 */
export function toDevices(found: readonly FoundServer[]): DiscoveredDevice[] {
  const unique = dedupe(found);
  const perUri = new Map<string, number>();
  for (const f of unique) {
    const uri = f.application.applicationUri;
    perUri.set(uri, (perUri.get(uri) ?? 0) + 1);
  }
  return unique
    .map((f) => toDevice(f, (perUri.get(f.application.applicationUri) ?? 0) > 1))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function toDevice(f: FoundServer, ambiguous: boolean): DiscoveredDevice {
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
  const id = ambiguous ? `${uri}|${f.endpoint?.endpointUrl ?? f.serverUrl}` : uri;
  return { id, properties, ...(f.conditions.length > 0 && { conditions: f.conditions }) };
}
