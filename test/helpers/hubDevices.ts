// Devices as the hub finds them on the API server, seeded into the test API server (kubeApiServer.ts).
import { deviceName } from '../../src/model/naming.js';
import type { KubeApiServer } from './kubeApiServer.js';

/** When the agent last saw the seeded Devices; the hub's `lastSeen` must move past it. */
export const SEEN_AT = '2026-01-01T00:00:00Z';

/**
 * A Device as the mqtt handler's discovery makes one for `id` on `node` (a local device of DiscoveryConfig
 * `config`), with the agent's status: online, its Online condition. Returns the Device's name.
 */
export function seedHubDevice(
  api: KubeApiServer,
  ns: string,
  config: string,
  id: string,
  node: string,
): string {
  const name = deviceName(config, id, node);
  api.seed('devices', {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'Device',
    metadata: { name, namespace: ns, labels: { 'leafbridge.io/config': config } },
    spec: {
      id,
      configName: config,
      handler: 'mqtt',
      shared: false,
      nodes: [node],
      capacity: 1,
      properties: { MQTT_DEVICE_ID: id },
      deviceNodes: [],
      mounts: [],
    },
  });
  const status = {
    online: true,
    lastSeen: SEEN_AT,
    conditions: [
      {
        type: 'Online',
        status: 'True',
        reason: 'Discovered',
        message: `seen by mqtt from ${node}`,
        lastTransitionTime: SEEN_AT,
      },
    ],
  };
  api.resources.patch(
    api.type('devices'),
    ns,
    name,
    'application/merge-patch+json',
    { status },
    {
      subresource: 'status',
    },
  );
  return name;
}
