import { dirname, join } from 'node:path';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IContainerPort } from 'kubernetes-models/v1/ContainerPort';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { INamespace } from 'kubernetes-models/v1/Namespace';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { ISecurityContext } from 'kubernetes-models/v1/SecurityContext';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../config/load.js';
import { type PodSecurityLevel, podSecurityLabels } from '../model/podSecurity.js';
import { API_GROUP } from '../model/resources.js';
import { ConfigError, errorMessage } from '../util/errors.js';
import { type InstallOptions, type KubeManifest, labels, manifest, PART_OF, selector } from './types.js';

// The workloads of the install: the agent's DaemonSet and config, the controller's and the hub's Deployments.

/**
 * What each handler needs of the node beyond the agent's defaults. onvif: the node's network, for
 * WS-Discovery multicast on the cameras' LAN (a pod network neither carries nor answers it). serial: the
 * node's /dev (ports plugged in later appear there) and udev database, and the device cgroup opened
 * (`privileged`) so the agent may open a port to probe it. opcua and mqtt dial out over TCP: nothing.
 */
export const HANDLER_NEEDS: Record<string, { hostNetwork?: true; hostDevices?: true }> = {
  onvif: { hostNetwork: true },
  opcua: {},
  serial: { hostDevices: true },
  mqtt: {},
  // RTU probes serial ports (/dev); Modbus TCP is unicast to the configured hosts, which the pod network reaches.
  modbus: { hostDevices: true },
  'debug-echo': {},
};

export const AGENT_PORTS = { mqtt: 1883, mqtts: 8883, websocket: 8083, http: 8080 } as const;
const AGENT_DATA_DIR = '/var/lib/leafbridge';
const CONFIG_DIR = '/etc/leafbridge';
/** Where the broker's TLS Secret is mounted (its keys as files: tls.crt, tls.key, ca.crt). */
const BROKER_TLS_DIR = '/etc/leafbridge-tls';
/**
 * Where external handlers register (`agent-registration.sock`) and listen: the node's directory that Akri's
 * handlers use by default (their DISCOVERY_HANDLERS_DIRECTORY), so their images run unchanged beside the
 * agent, at the same path in both containers (the agent dials the socket path a handler registers).
 */
export const EXTERNAL_HANDLERS_DIR = '/var/lib/akri';

const podResourcesDir = (o: InstallOptions) => join(dirname(o.devicePluginDir), 'pod-resources');
const needs = (o: InstallOptions) => ({
  hostNetwork: o.handlers.some((h) => HANDLER_NEEDS[h]?.hostNetwork),
  hostDevices: o.handlers.some((h) => HANDLER_NEEDS[h]?.hostDevices),
});

/** The agent's config file (docs/configuration.md), with the node's name as a placeholder. */
export function agentConfigText(o: InstallOptions): string {
  const config = {
    dataDir: AGENT_DATA_DIR,
    broker: brokerConfig(o),
    http: { listen: `0.0.0.0:${AGENT_PORTS.http}` },
    ...(o.upstream ? { upstream: { url: o.upstream } } : {}),
    kubernetes: 'auto',
    ...(o.externalHandlers.length > 0
      ? { discovery: { external: { handlers: o.externalHandlers, dir: EXTERNAL_HANDLERS_DIR } } }
      : {}),
    devicePlugins: {
      dir: o.devicePluginDir,
      podResources: join(podResourcesDir(o), 'kubelet.sock'),
    },
  };
  return (
    '# The leafbridge agent (docs/configuration.md). `node` is not here: the agent takes $NODE_NAME (spec.nodeName).\n' +
    '# Leaf devices and pods need credentials on the edge broker: add auth.devices / auth.users here.\n' +
    stringify(config, { lineWidth: 0 })
  );
}

/** The broker's listeners: plain MQTT always, mqtts and WebSocket when the install turns them on. */
function brokerConfig(o: InstallOptions): Record<string, unknown> {
  return {
    listen: `0.0.0.0:${AGENT_PORTS.mqtt}`,
    ...(o.brokerTls
      ? {
          tls: {
            listen: `0.0.0.0:${AGENT_PORTS.mqtts}`,
            cert: `${BROKER_TLS_DIR}/tls.crt`,
            key: `${BROKER_TLS_DIR}/tls.key`,
            ...(o.brokerTls.clientCa ? { clientCa: `${BROKER_TLS_DIR}/ca.crt` } : {}),
          },
        }
      : {}),
    ...(o.brokerWebsocket
      ? { websocket: { listen: `0.0.0.0:${AGENT_PORTS.websocket}`, tls: o.brokerWebsocket === 'wss' } }
      : {}),
  };
}

/** What the agent would say about its config, on a node named `edge-1`. */
export function agentConfigProblems(text: string): string[] {
  try {
    parseConfig(parse(text), undefined, { NODE_NAME: 'edge-1' });
    return [];
  } catch (err) {
    return err instanceof ConfigError ? err.problems.map((p) => `agent config: ${p}`) : [errorMessage(err)];
  }
}

export function namespace(o: InstallOptions): KubeManifest {
  return manifest<INamespace>({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: o.namespace,
      labels: {
        'app.kubernetes.io/part-of': PART_OF,
        // The agent mounts host paths (the kubelet's sockets, its store): only the privileged level admits it,
        // whatever the cluster's default level is. Broker Pods go to a namespace of their own (leafbridge-brokers).
        'pod-security.kubernetes.io/enforce': 'privileged',
      },
    },
  });
}

/** A broker namespace: Pod Security `level` enforced (and audited and warned at), for the controller's brokers. */
export function brokerNamespaceManifest(name: string, level: PodSecurityLevel): KubeManifest {
  return manifest<INamespace>({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'app.kubernetes.io/part-of': PART_OF, ...podSecurityLabels(level) } },
  });
}

export function agentConfigMap(o: InstallOptions, text: string): KubeManifest {
  return manifest<IConfigMap>({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'leafbridge-agent', namespace: o.namespace, labels: labels('agent') },
    data: { 'config.yaml': text },
  });
}

export function agentDaemonSet(o: InstallOptions): KubeManifest {
  const { hostNetwork } = needs(o);
  return manifest<IDaemonSet>({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: {
      name: 'leafbridge-agent',
      namespace: o.namespace,
      labels: labels('agent'),
      annotations: { [`${API_GROUP}/handlers`]: o.handlers.join(',') },
    },
    spec: {
      selector: { matchLabels: selector('agent') },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: { labels: labels('agent') },
        spec: {
          serviceAccountName: 'leafbridge-agent',
          ...(hostNetwork ? { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' } : {}),
          nodeSelector: { 'kubernetes.io/os': 'linux', ...o.nodeSelector },
          ...(o.tolerations.length > 0 ? { tolerations: o.tolerations } : {}),
          // The agent flushes and exits within 5 s of SIGTERM.
          terminationGracePeriodSeconds: 10,
          containers: [agentContainer(o)],
          volumes: agentVolumes(o),
        },
      },
    },
  });
}

function agentContainer(o: InstallOptions): IContainer {
  const { hostNetwork, hostDevices } = needs(o);
  const probe = (path: string, periodSeconds: number, failureThreshold: number): IProbe => ({
    httpGet: { path, port: 'http' },
    periodSeconds,
    timeoutSeconds: 3,
    failureThreshold,
  });
  return {
    name: 'agent',
    image: o.image,
    args: ['agent', '--config', `${CONFIG_DIR}/config.yaml`],
    // No NODE_OPTIONS: `leafbridge agent` sets its own heap limits (src/cli/runtime.ts).
    env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
    ports: [
      // Leaf devices reach the edge broker at the node's address: on the node's network, or a host port.
      brokerPort('mqtt', AGENT_PORTS.mqtt, hostNetwork),
      ...(o.brokerTls ? [brokerPort('mqtts', AGENT_PORTS.mqtts, hostNetwork)] : []),
      ...(o.brokerWebsocket ? [brokerPort('mqtt-ws', AGENT_PORTS.websocket, hostNetwork)] : []),
      { name: 'http', containerPort: AGENT_PORTS.http, protocol: 'TCP' },
    ],
    // Start: the store, the broker, then up to 2 s for the API server and the device plugins.
    startupProbe: probe('/healthz', 2, 30),
    livenessProbe: probe('/healthz', 10, 3),
    readinessProbe: probe('/readyz', 5, 3),
    // docs/operations.md "Memory": ~100 MB idle, ~130 MB at full load; protocol stacks load on first use.
    resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '384Mi' } },
    securityContext: hostDevices ? PRIVILEGED_ROOT : ROOT_NO_CAPABILITIES,
    // With the node's /dev mounted over /dev, the default /dev/termination-log would be a file on the node.
    ...(hostDevices ? { terminationMessagePath: '/tmp/termination-log' } : {}),
    volumeMounts: agentMounts(o),
  };
}

function brokerPort(name: string, port: number, hostNetwork: boolean): IContainerPort {
  return { name, containerPort: port, ...(hostNetwork ? {} : { hostPort: port }), protocol: 'TCP' };
}

function agentMounts(o: InstallOptions): IVolumeMount[] {
  return [
    { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
    { name: 'data', mountPath: AGENT_DATA_DIR },
    { name: 'device-plugins', mountPath: o.devicePluginDir },
    { name: 'pod-resources', mountPath: podResourcesDir(o), readOnly: true },
    { name: 'tmp', mountPath: '/tmp' },
    ...(o.externalHandlers.length > 0
      ? [{ name: 'external-handlers', mountPath: EXTERNAL_HANDLERS_DIR }]
      : []),
    ...(needs(o).hostDevices
      ? [
          // Not read-only: that would not stop writes to device nodes (only the creation of files), and
          // it would stop the runtime's own mounts under /dev (pts, shm, mqueue).
          { name: 'dev', mountPath: '/dev' },
          { name: 'udev', mountPath: '/run/udev', readOnly: true },
        ]
      : []),
    ...(o.brokerTls ? [{ name: 'broker-tls', mountPath: BROKER_TLS_DIR, readOnly: true }] : []),
  ];
}

function agentVolumes(o: InstallOptions): IVolume[] {
  type HostPathType = NonNullable<NonNullable<IVolume['hostPath']>['type']>;
  const host = (name: string, path: string, type: HostPathType): IVolume => ({
    name,
    hostPath: { path, type },
  });
  return [
    { name: 'config', configMap: { name: 'leafbridge-agent' } },
    host('data', AGENT_DATA_DIR, 'DirectoryOrCreate'),
    host('device-plugins', o.devicePluginDir, 'Directory'),
    host('pod-resources', podResourcesDir(o), 'DirectoryOrCreate'),
    { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
    ...(o.externalHandlers.length > 0
      ? [host('external-handlers', EXTERNAL_HANDLERS_DIR, 'DirectoryOrCreate')]
      : []),
    ...(needs(o).hostDevices
      ? [host('dev', '/dev', 'Directory'), host('udev', '/run/udev', 'DirectoryOrCreate')]
      : []),
    // The key readable by the agent (root) alone; a renewed Secret reaches the files, which the agent reloads.
    ...(o.brokerTls
      ? [{ name: 'broker-tls', secret: { secretName: o.brokerTls.secret, defaultMode: 0o400 } }]
      : []),
  ];
}

/**
 * The agent without serial ports: root, for the kubelet's root-owned directories and sockets (as their
 * owner, so without CAP_DAC_OVERRIDE), and no capability at all: multicast needs none, nor do ports > 1024.
 */
const ROOT_NO_CAPABILITIES: ISecurityContext = {
  runAsUser: 0,
  runAsGroup: 0,
  runAsNonRoot: false,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/**
 * The agent with serial ports: the container runtime's device cgroup refuses to open any device node not
 * given to the container, and Kubernetes can give host devices only to a privileged container.
 */
const PRIVILEGED_ROOT: ISecurityContext = {
  runAsUser: 0,
  runAsGroup: 0,
  privileged: true,
  readOnlyRootFilesystem: true,
};

/** The controller, the hub and the agent's init container: Pod Security "restricted". */
const RESTRICTED: ISecurityContext = {
  runAsUser: 65532,
  runAsGroup: 65532,
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

// ------------------------------------------------------------------------- the controller, the hub

type DeploymentStrategy = NonNullable<NonNullable<IDeployment['spec']>['strategy']>;

/** The port of the controller's /healthz and /readyz. */
export const CONTROLLER_HEALTH_PORT = 8081;

export function controllerDeployment(o: InstallOptions): KubeManifest {
  return deployment(o, 'controller', {
    replicas: o.controllerReplicas,
    // One replica leads on the Lease, the others stand by: a rollout replaces them one at a time, and a
    // leader stopped by it releases the Lease to a standby at once.
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
    args: ['controller', '--health-addr', `0.0.0.0:${CONTROLLER_HEALTH_PORT}`],
    // The candidate's identity in the Lease: the pod's name and a random suffix.
    env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
    healthPort: CONTROLLER_HEALTH_PORT,
  });
}

export function hubDeployment(o: InstallOptions, hub: { brokerUrl: string; replicas: number }): KubeManifest {
  return deployment(o, 'hub', {
    replicas: hub.replicas,
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
    args: ['hub', '--broker', hub.brokerUrl],
    env: [
      {
        name: 'LEAFBRIDGE_HUB_PASSWORD',
        valueFrom: { secretKeyRef: { name: 'leafbridge-hub', key: 'password', optional: true } },
      },
    ],
  });
}

function deployment(
  o: InstallOptions,
  component: 'controller' | 'hub',
  d: {
    replicas: number;
    strategy: DeploymentStrategy;
    args: string[];
    env: IEnvVar[];
    /** Where /healthz and /readyz answer; none: no probes (a process that fails exits and is restarted). */
    healthPort?: number;
  },
): KubeManifest {
  const name = `leafbridge-${component}`;
  return manifest<IDeployment>({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: o.namespace, labels: labels(component) },
    spec: {
      replicas: d.replicas,
      strategy: d.strategy,
      selector: { matchLabels: selector(component) },
      template: {
        metadata: { labels: labels(component) },
        spec: {
          serviceAccountName: name,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          terminationGracePeriodSeconds: 10,
          containers: [
            {
              name: component,
              image: o.image,
              args: d.args,
              ...(d.env.length > 0 ? { env: d.env } : {}),
              ...(d.healthPort === undefined ? {} : healthProbes(d.healthPort)),
              // @kubernetes/client-node alone costs ~70 MB.
              resources: { requests: { cpu: '20m', memory: '128Mi' }, limits: { memory: '256Mi' } },
              securityContext: RESTRICTED,
            },
          ],
        },
      },
    },
  });
}

/** Liveness and readiness on a component's health port; a standby controller answers both (it is healthy). */
function healthProbes(port: number): Pick<IContainer, 'ports' | 'livenessProbe' | 'readinessProbe'> {
  const probe = (path: string): IProbe => ({
    httpGet: { path, port: 'health' },
    periodSeconds: 10,
    timeoutSeconds: 3,
    failureThreshold: 3,
  });
  return {
    ports: [{ name: 'health', containerPort: port, protocol: 'TCP' }],
    livenessProbe: probe('/healthz'),
    readinessProbe: probe('/readyz'),
  };
}
