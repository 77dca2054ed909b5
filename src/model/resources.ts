import type { DeviceCondition, DeviceMount, DeviceNode } from './handler.js';

export const API_GROUP = 'leafbridge.io';
export const API_VERSION = `${API_GROUP}/v1alpha1`;

export interface DiscoveryConfigSpec {
  handler: { name: string; details: Record<string, unknown> };
  capacity: number;
  properties: Record<string, string>;
  /** Node labels a node must carry to run this config (a Pod's nodeSelector); absent: every node. */
  nodeSelector?: Record<string, string>;
  /** Cluster only, for the controller: a Pod spec run once per device, or a Job spec. */
  brokerPodSpec?: Record<string, unknown>;
  brokerJobSpec?: Record<string, unknown>;
  /** Cluster only: a Service per device, and one for the whole config. */
  deviceService?: ServicePorts;
  configService?: ServicePorts;
}

export interface ServicePorts {
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  ports: { name?: string; port: number; targetPort?: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }[];
}

export interface Condition extends DeviceCondition {
  lastTransitionTime: string;
}

export interface DiscoveryConfigObject {
  apiVersion: typeof API_VERSION;
  kind: 'DiscoveryConfig';
  metadata: {
    name: string;
    namespace: string;
    /** Set by the store that holds the config (the API server, or the agent's SQLite). */
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    /** Standalone only: `file` for configs from the agent's config file (read-only through the API). */
    annotations?: Record<string, string>;
  };
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
  status: {
    online: boolean;
    lastSeen: string;
    conditions: Condition[];
    /** Capacity slots in use, by kubelet device ID; see src/deviceplugin/storeClaims.ts. */
    slots?: Record<string, SlotRecord>;
  };
}

/** Who holds one capacity slot of a Device. */
export interface SlotRecord {
  node: string;
  resource: string;
  /** RFC 3339. */
  since: string;
}
