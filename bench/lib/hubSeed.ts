// The Devices the hub bench seeds, as the agents' mqtt discovery writes them: one place for both API servers
// (bench/lib/hubApi.ts, the test double; bench/lib/hubRealApi.ts, kube-apiserver).
import { API_VERSION } from '../../src/model/resources.js';

export const CONFIG = 'sensors';
export const T0 = '2026-01-01T00:00:00Z';

export interface Seed {
  name: string;
  id: string;
  node: string;
}

/** The Device of `d` (its status goes separately: the CRD has a status subresource). */
export function seedDevice(d: Seed, namespace: string, labels: Record<string, string> = {}) {
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: { name: d.name, namespace, labels: { 'leafbridge.io/config': CONFIG, ...labels } },
    spec: {
      id: d.id,
      configName: CONFIG,
      handler: 'mqtt',
      shared: false,
      nodes: [d.node],
      capacity: 1,
      properties: { MQTT_DEVICE_ID: d.id },
      deviceNodes: [],
      mounts: [],
    },
  };
}

/** The status an agent writes for a device it sees. */
export function seedStatus(d: Seed) {
  return {
    online: true,
    lastSeen: T0,
    conditions: [
      {
        type: 'Online',
        status: 'True',
        reason: 'Discovered',
        message: `seen by mqtt from ${d.node}`,
        lastTransitionTime: T0,
      },
    ],
  };
}
