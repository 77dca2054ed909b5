/** The shapes of leafbridge's install (src/install/manifests.ts builds it): its options and its objects. */

export interface InstallOptions {
  namespace: string;
  image: string;
  /** The cloud broker the agents bridge to (their `upstream.url`); none: the agents keep everything local. */
  upstream?: string;
  /** The discovery handlers the agent is set up for: they decide hostNetwork and the /dev mount. */
  handlers: string[];
  /**
   * Discovery handlers in their own processes (Akri's protocol) that DiscoveryConfigs may name: added to the
   * CRD (free-form details), to the agent's `discovery.external.handlers`, and the registration directory
   * mounted. None by default.
   */
  externalHandlers: string[];
  controller: boolean;
  /** Replicas of the controller: one leads (holds the Lease), the others stand by. Default 2. */
  controllerReplicas: number;
  /**
   * The edge broker's mqtts listener (port 8883): the certificate and key from this kubernetes.io/tls Secret
   * (`tls.crt`, `tls.key`), and with `clientCa` its `ca.crt` as the CA of the devices' client certificates.
   * None by default.
   */
  brokerTls?: { secret: string; clientCa: boolean };
  /** The edge broker's MQTT-over-WebSocket listener (port 8083): `wss` needs `brokerTls`. None by default. */
  brokerWebsocket?: 'ws' | 'wss';
  /** The twin hub and the cloud broker it subscribes to; none by default. */
  hub?: { brokerUrl: string; replicas: number };
  /** The kubelet's device-plugin directory; its sibling `pod-resources` holds the PodResources socket. */
  devicePluginDir: string;
  /** Labels a node must carry to run an agent (beside kubernetes.io/os: linux). */
  nodeSelector: Record<string, string>;
  tolerations: Toleration[];
}

export interface Toleration {
  key: string;
  operator: 'Exists' | 'Equal';
  value?: string;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/** A Kubernetes object as leafbridge writes them: the header fields typed, the rest as it is. */
export interface KubeManifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

/**
 * An object typed by its kubernetes-models interface (so a misspelt field does not compile), as a manifest.
 * The interfaces are types only: nothing of kubernetes-models is loaded at run time.
 */
export function manifest<T extends { metadata?: { name?: string } }>(
  o: T & { metadata: { name: string } },
): KubeManifest {
  return o as unknown as KubeManifest;
}

export type Component = 'agent' | 'controller' | 'hub';

/** One file of the install: the part (a folder of deploy/) and the objects in it. */
export interface InstallFile {
  part: 'crds' | Component;
  file: string;
  objects: KubeManifest[];
}

export const PART_OF = 'leafbridge';

export function selector(component: Component): Record<string, string> {
  return { 'app.kubernetes.io/name': 'leafbridge', 'app.kubernetes.io/component': component };
}

export function labels(component: Component): Record<string, string> {
  return { ...selector(component), 'app.kubernetes.io/part-of': PART_OF };
}
