import { API_VERSION, type DeviceObject } from '../../src/model/resources.js';

export interface DeviceObjectParts {
  /** The DiscoveryConfig that found it (its owner); 'cams' unless given. */
  configName?: string;
  metadata?: Partial<DeviceObject['metadata']>;
  spec?: Partial<DeviceObject['spec']>;
  status?: Partial<DeviceObject['status']>;
}

const CREATED = '2026-12-01T10:00:00Z';

/**
 * A Device as a store holds it, for the device-plugin tests: an unshared ONVIF camera with one slot on node
 * `n1`, online, in namespace `default`; a test names only what it is about.
 */
export function deviceObject(name: string, parts: DeviceObjectParts = {}): DeviceObject {
  const configName = parts.configName ?? 'cams';
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: {
      name,
      namespace: 'default',
      uid: `uid-${name}`,
      creationTimestamp: CREATED,
      resourceVersion: '0',
      labels: {},
      ownerReferences: [{ apiVersion: API_VERSION, kind: 'DiscoveryConfig', name: configName }],
      ...parts.metadata,
    },
    spec: {
      id: `id-${name}`,
      configName,
      handler: 'onvif',
      shared: false,
      nodes: ['n1'],
      capacity: 1,
      properties: {},
      deviceNodes: [],
      mounts: [],
      ...parts.spec,
    },
    status: { online: true, lastSeen: CREATED, conditions: [], ...parts.status },
  };
}
