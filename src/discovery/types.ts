import type { DeviceCondition, DeviceMount, DeviceNode } from './handler.js';

export const API_GROUP = 'leafbridge.io';
export const API_VERSION = `${API_GROUP}/v1alpha1`;

export interface DiscoveryConfigSpec {
  handler: { name: string; details: Record<string, unknown> };
  capacity: number;
  properties: Record<string, string>;
}

export interface Condition extends DeviceCondition {
  lastTransitionTime: string;
}

export interface DiscoveryConfigObject {
  apiVersion: typeof API_VERSION;
  kind: 'DiscoveryConfig';
  metadata: { name: string; namespace: string };
  spec: DiscoveryConfigSpec;
  status: { conditions: Condition[]; devices: number };
}

export interface DeviceObject {
  apiVersion: typeof API_VERSION;
  kind: 'Device';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    creationTimestamp: string;
    resourceVersion: string;
    labels: Record<string, string>;
    ownerReferences: { apiVersion: string; kind: 'DiscoveryConfig'; name: string }[];
  };
  spec: {
    id: string;
    configName: string;
    handler: string;
    shared: boolean;
    nodes: string[];
    capacity: number;
    properties: Record<string, string>;
    deviceNodes: DeviceNode[];
    mounts: DeviceMount[];
  };
  status: { online: boolean; lastSeen: string; conditions: Condition[] };
}
