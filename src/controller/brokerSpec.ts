import { createHash } from 'node:crypto';
import type { KubeObject } from '../kubeclient/informer.js';
import { shorten, shortHash } from '../model/naming.js';
import { API_GROUP, type ServicePorts } from '../model/resources.js';
import { stableJson } from '../util/json.js';
import { asArray, asRecord, type ConfigView, type DeviceView, type Loose } from './objects.js';
import { type LevelNeeded, levelNeeded, withRestrictedDefaults } from './podSecurity.js';

/**
 * What the controller makes of a DiscoveryConfig's broker fields, and the objects it renders from them.
 * Pure functions: no I/O, no clock.
 */

export const LABEL_CONFIG = `${API_GROUP}/config`;
export const LABEL_DEVICE = `${API_GROUP}/device`;
/** `pod` on broker pods (the Job's pods too), `job` on Jobs, `device-service` / `config-service` on Services. */
export const LABEL_BROKER = `${API_GROUP}/broker`;
/**
 * The namespace of the Device (or DiscoveryConfig) a broker object is made for, and that object's uid: broker
 * objects live in a namespace of their own, where an owner reference to it would not hold (the garbage
 * collector takes an owner in another namespace for absent), so the controller deletes them by these.
 */
export const LABEL_NAMESPACE = `${API_GROUP}/namespace`;
export const LABEL_UID = `${API_GROUP}/uid`;
/** `Device/NAME` or `DiscoveryConfig/NAME`: whom a broker object is for, by its full name. */
export const ANNOTATION_OWNER = `${API_GROUP}/owner`;
/** A hash of the broker spec the object was made from: a changed spec replaces the object. */
export const ANNOTATION_SPEC_HASH = `${API_GROUP}/broker-spec-hash`;
/** The nodes a Pod or Job was allowed onto when it was made (comma-separated). */
export const ANNOTATION_NODES = `${API_GROUP}/nodes`;
/**
 * The node field the broker's required node affinity matches against the Device's `spec.nodes`: the Node's
 * name, as DaemonSets pin their pods (the `kubernetes.io/hostname` label usually equals it, but not always,
 * and the agents report node names).
 */
export const NODE_NAME_FIELD = 'metadata.name';

export type BrokerKind = 'pod' | 'job';

export type BrokerPlan =
  | { kind: 'none' }
  | { kind: 'invalid'; message: string }
  | {
      kind: BrokerKind;
      /** The Pod spec (pod), or the Job spec (job), as the config has it. */
      template: Loose;
      hash: string;
      /** The Pod Security level its pods need. */
      security: LevelNeeded;
      deviceService?: ServicePorts;
      configService?: ServicePorts;
    };

/** Names and label values are DNS labels: at most 63 characters, shortened with a hash beyond that. */
export const labelValue = (name: string): string => shorten(name, 63);
export const podName = (device: string): string => shorten(`${device}-pod`, 63);
export const jobName = (device: string): string => shorten(`${device}-job`, 63);
export const deviceServiceName = (device: string): string => serviceName(`${device}-svc`);
export const configServiceName = (config: string): string => serviceName(`${config}-svc`);

const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/**
 * `name` as a Service name, which must be a DNS-1035 label (a letter first, then [a-z0-9-], an alphanumeric
 * last, at most 63): unchanged when it is one. Otherwise (a Device or config name may start with a digit or
 * hold dots) an `s` before a leading digit, `-` for any other character, cut to 54, then `-` and 8 hex of a
 * hash of `name`: what `shorten` made of long names before, so no existing Service is renamed. A name made so
 * ends in 8 hex, never in the `-svc` of one kept as it is, and two of them differ but for a hash collision.
 */
export function serviceName(name: string): string {
  if (name.length <= 63 && DNS_1035_LABEL.test(name)) return name;
  const label = `${/^[a-z]/.test(name) ? '' : 's'}${name.replace(/[^a-z0-9-]/g, '-')}`;
  return `${label.slice(0, 54)}-${shortHash(name)}`;
}

/** The device's own extended resource, as the agents' device plugins name it (src/deviceplugin/manager.ts). */
export const deviceResource = (device: string): string => `${API_GROUP}/${shorten(device)}`;

/** The config's broker fields checked: what to run per device, or every problem with its field path. */
export function brokerPlan(config: ConfigView): BrokerPlan {
  const s = config.spec;
  const hasPod = s.brokerPodSpec !== undefined && s.brokerPodSpec !== null;
  const hasJob = s.brokerJobSpec !== undefined && s.brokerJobSpec !== null;
  if (!hasPod && !hasJob) return { kind: 'none' };
  const problems: string[] = [];
  if (hasPod && hasJob) problems.push('spec: set brokerPodSpec or brokerJobSpec, not both');
  const kind: BrokerKind = hasPod ? 'pod' : 'job';
  const template = asRecord(hasPod ? s.brokerPodSpec : s.brokerJobSpec);
  if (!template) {
    problems.push(
      `spec.${hasPod ? 'brokerPodSpec: must be an object (a Pod spec)' : 'brokerJobSpec: must be an object (a Job spec)'}`,
    );
  } else if (kind === 'pod') problems.push(...podSpecProblems(template, 'spec.brokerPodSpec'));
  else problems.push(...jobSpecProblems(template));
  const deviceService = servicePorts(s.deviceService, 'spec.deviceService', problems);
  const configService = servicePorts(s.configService, 'spec.configService', problems);
  if (problems.length > 0 || !template) return { kind: 'invalid', message: problems.join('; ') };
  const podSpec = kind === 'pod' ? template : (asRecord(asRecord(template.template)?.spec) as Loose);
  return {
    kind,
    template,
    security: levelNeeded(
      podSpec,
      kind === 'pod' ? 'spec.brokerPodSpec' : 'spec.brokerJobSpec.template.spec',
    ),
    hash: createHash('sha256').update(stableJson(template)).digest('hex').slice(0, 16),
    ...(deviceService ? { deviceService } : {}),
    ...(configService ? { configService } : {}),
  };
}

function podSpecProblems(spec: Loose, path: string): string[] {
  const problems: string[] = [];
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) {
    problems.push(`${path}.containers: must list at least one container`);
  } else {
    containers.forEach((c, i) => {
      const r = asRecord(c);
      if (!r) problems.push(`${path}.containers[${i}]: must be an object`);
      else if (typeof r.name !== 'string' || r.name === '')
        problems.push(`${path}.containers[${i}].name: required`);
      else if (r.resources !== undefined && !asRecord(r.resources))
        problems.push(`${path}.containers[${i}].resources: must be an object`);
      else if (r.resources !== undefined && !isOptionalRecord(asRecord(r.resources)?.limits))
        problems.push(`${path}.containers[${i}].resources.limits: must be an object`);
    });
  }
  if (spec.nodeName !== undefined) {
    problems.push(
      `${path}.nodeName: must not be set; the controller places the pod on a node that sees the device`,
    );
  }
  const affinity = spec.affinity;
  const nodeAffinity = asRecord(affinity)?.nodeAffinity;
  const required = asRecord(nodeAffinity)?.requiredDuringSchedulingIgnoredDuringExecution;
  const terms = asRecord(required)?.nodeSelectorTerms;
  if (
    !isOptionalRecord(affinity) ||
    !isOptionalRecord(nodeAffinity) ||
    !isOptionalRecord(required) ||
    (terms !== undefined && !asArray(terms).every((t) => isOptionalRecord(t) && t !== null))
  ) {
    problems.push(`${path}.affinity: malformed node affinity`);
  }
  return problems;
}

function jobSpecProblems(spec: Loose): string[] {
  const template = asRecord(spec.template);
  if (!template) return ['spec.brokerJobSpec.template: must be an object (a Pod template)'];
  const problems: string[] = [];
  if (!isOptionalRecord(template.metadata) || !isOptionalRecord(asRecord(template.metadata)?.labels)) {
    problems.push('spec.brokerJobSpec.template.metadata: must be an object with labels an object');
  }
  const podSpec = asRecord(template.spec);
  if (!podSpec) problems.push('spec.brokerJobSpec.template.spec: must be an object (a Pod spec)');
  else problems.push(...podSpecProblems(podSpec, 'spec.brokerJobSpec.template.spec'));
  if (spec.selector !== undefined) {
    problems.push('spec.brokerJobSpec.selector: must not be set; the Job controller generates it');
  }
  return problems;
}

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];
const isPort = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

function servicePorts(v: unknown, path: string, problems: string[]): ServicePorts | undefined {
  if (v === undefined || v === null) return undefined;
  const s = asRecord(v);
  const ports = asArray(s?.ports);
  if (!s || ports.length === 0) {
    problems.push(`${path}.ports: must list at least one port`);
    return undefined;
  }
  const before = problems.length;
  if (s.type !== undefined && !SERVICE_TYPES.includes(s.type as string))
    problems.push(`${path}.type: must be one of ${SERVICE_TYPES.join(', ')}`);
  ports.forEach((p, i) => {
    const r = asRecord(p);
    const at = `${path}.ports[${i}]`;
    if (!r || !isPort(r.port)) problems.push(`${at}.port: must be an integer from 1 to 65535`);
    else if (r.targetPort !== undefined && !isPort(r.targetPort))
      problems.push(`${at}.targetPort: must be an integer from 1 to 65535`);
    else if (r.protocol !== undefined && !PROTOCOLS.includes(r.protocol as string))
      problems.push(`${at}.protocol: must be one of ${PROTOCOLS.join(', ')}`);
    else if (r.name !== undefined && typeof r.name !== 'string')
      problems.push(`${at}.name: must be a string`);
    else if (ports.length > 1 && !r.name)
      problems.push(`${at}.name: required when there is more than one port`);
  });
  return problems.length > before ? undefined : (s as unknown as ServicePorts);
}

function isOptionalRecord(v: unknown): boolean {
  return v === undefined || asRecord(v) !== undefined;
}

// ------------------------------------------------------------------------------------------- rendering

/** Whom a broker object is for: the Device (or, for a config's Service, the DiscoveryConfig). */
export interface BrokerOwner {
  kind: 'Device' | 'DiscoveryConfig';
  namespace: string;
  name: string;
  uid: string;
}

/** Labels and annotation naming `owner` on an object made for it; `broker` is the LABEL_BROKER value. */
function ownerMeta(owner: BrokerOwner, config: string, broker: string) {
  return {
    labels: {
      [LABEL_CONFIG]: labelValue(config),
      ...(owner.kind === 'Device' ? { [LABEL_DEVICE]: labelValue(owner.name) } : {}),
      [LABEL_BROKER]: broker,
      [LABEL_NAMESPACE]: owner.namespace,
      [LABEL_UID]: owner.uid,
    },
    annotations: { [ANNOTATION_OWNER]: `${owner.kind}/${owner.name}` },
  };
}

/** The owner an object names by its labels and annotation; undefined when it names none. */
export function brokerOwnerOf(o: KubeObject): BrokerOwner | undefined {
  const [kind, ...rest] = (o.metadata.annotations?.[ANNOTATION_OWNER] ?? '').split('/');
  const name = rest.join('/');
  const labels = o.metadata.labels ?? {};
  if ((kind !== 'Device' && kind !== 'DiscoveryConfig') || name === '') return undefined;
  return { kind, name, namespace: labels[LABEL_NAMESPACE] ?? '', uid: labels[LABEL_UID] ?? '' };
}

const deviceOwner = (d: DeviceView): BrokerOwner => ({
  kind: 'Device',
  namespace: d.namespace,
  name: d.name,
  uid: d.uid,
});

/** The pod spec a broker runs with: placed, holding a slot, and with the restricted defaults where it may. */
function brokerPodSpec(spec: Loose, device: DeviceView, security: LevelNeeded, nodes: string[]): Loose {
  const placed = injectPodSpec(spec, deviceResource(device.name), nodes);
  return security.level === 'restricted' ? withRestrictedDefaults(placed) : placed;
}

export interface BrokerRender {
  template: Loose;
  hash: string;
  security: LevelNeeded;
}

/** The broker Pod of `device` in `namespace`, allowed onto `nodes` (the ones that see it now), holding one device slot. */
export function renderPod(
  device: DeviceView,
  plan: BrokerRender,
  nodes: string[],
  namespace: string,
): KubeObject {
  const meta = ownerMeta(deviceOwner(device), device.configName, 'pod');
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podName(device.name),
      namespace,
      labels: meta.labels,
      annotations: {
        ...meta.annotations,
        [ANNOTATION_SPEC_HASH]: plan.hash,
        [ANNOTATION_NODES]: nodes.join(','),
      },
    },
    spec: brokerPodSpec(plan.template, device, plan.security, nodes),
  };
}

/** The broker Job of `device`: its pod template gets what a broker Pod gets. */
export function renderJob(
  device: DeviceView,
  plan: BrokerRender,
  nodes: string[],
  namespace: string,
): KubeObject {
  const spec = structuredClone(plan.template);
  const podTemplate = asRecord(spec.template) as Loose;
  const meta = asRecord(podTemplate.metadata) ?? {};
  const owner = ownerMeta(deviceOwner(device), device.configName, 'pod');
  podTemplate.metadata = {
    ...meta,
    labels: { ...(asRecord(meta.labels) ?? {}), ...owner.labels },
    annotations: { ...(asRecord(meta.annotations) ?? {}), ...owner.annotations },
  };
  podTemplate.spec = brokerPodSpec(asRecord(podTemplate.spec) as Loose, device, plan.security, nodes);
  const jobMeta = ownerMeta(deviceOwner(device), device.configName, 'job');
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: jobName(device.name),
      namespace,
      labels: jobMeta.labels,
      annotations: {
        ...jobMeta.annotations,
        [ANNOTATION_SPEC_HASH]: plan.hash,
        [ANNOTATION_NODES]: nodes.join(','),
      },
    },
    spec,
  };
}

/**
 * `spec` with a required node affinity to `nodes` (at least one) and, unless a container already asks for
 * `resource`, a limit of 1 on the first container: one pod holds one of the device's capacity slots, whatever
 * its number of containers. The API server takes a single value in a node field requirement, so each node
 * gets a node selector term of its own (terms are ORed); each of the spec's own terms, if it has any, is
 * combined with each node (requirements in a term are ANDed), so its constraints still hold.
 */
export function injectPodSpec(spec: Loose, resource: string, nodes: string[]): Loose {
  const out = structuredClone(spec);
  const affinity = asRecord(out.affinity) ?? {};
  const nodeAffinity = asRecord(affinity.nodeAffinity) ?? {};
  const required = asRecord(nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution) ?? {};
  const terms = asArray(required.nodeSelectorTerms).map((t) => asRecord(t) ?? {});
  const merged = (terms.length === 0 ? [{}] : terms).flatMap((t: Loose) =>
    nodes.map((node) => ({
      ...t,
      matchFields: [...asArray(t.matchFields), { key: NODE_NAME_FIELD, operator: 'In', values: [node] }],
    })),
  );
  out.affinity = {
    ...affinity,
    nodeAffinity: {
      ...nodeAffinity,
      requiredDuringSchedulingIgnoredDuringExecution: { ...required, nodeSelectorTerms: merged },
    },
  };
  const containers = asArray(out.containers).map((c) => asRecord(c) ?? {});
  const first = containers[0];
  if (first && !asksFor(out, resource)) {
    const resources = asRecord(first.resources) ?? {};
    first.resources = { ...resources, limits: { ...(asRecord(resources.limits) ?? {}), [resource]: '1' } };
  }
  out.containers = containers;
  return out;
}

function asksFor(spec: Loose, resource: string): boolean {
  return [...asArray(spec.initContainers), ...asArray(spec.containers)].some((c) => {
    const r = asRecord(asRecord(c)?.resources);
    return Boolean(asRecord(r?.limits)?.[resource] ?? asRecord(r?.requests)?.[resource]);
  });
}

/**
 * A Service for the broker pods that `selector` picks, made for `owner`. It lives in the pods' namespace, the
 * broker namespace: a Service's selector picks pods of its own namespace only.
 */
export function renderService(
  name: string,
  ports: ServicePorts,
  selector: Record<string, string>,
  meta: { labels: Record<string, string>; annotations: Record<string, string> },
  namespace: string,
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, ...meta },
    spec: { type: ports.type ?? 'ClusterIP', selector, ports: servicePortList(ports) },
  };
}

export function servicePortList(ports: ServicePorts): Loose[] {
  return ports.ports.map((p) => ({
    ...(p.name ? { name: p.name } : {}),
    port: p.port,
    targetPort: p.targetPort ?? p.port,
    protocol: p.protocol ?? 'TCP',
  }));
}

export function deviceService(device: DeviceView, ports: ServicePorts, namespace: string): KubeObject {
  return renderService(
    deviceServiceName(device.name),
    ports,
    {
      [LABEL_NAMESPACE]: device.namespace,
      [LABEL_DEVICE]: labelValue(device.name),
      [LABEL_BROKER]: 'pod',
    },
    ownerMeta(deviceOwner(device), device.configName, 'device-service'),
    namespace,
  );
}

export function configService(config: ConfigView, ports: ServicePorts, namespace: string): KubeObject {
  const owner: BrokerOwner = {
    kind: 'DiscoveryConfig',
    namespace: config.namespace,
    name: config.name,
    uid: config.uid,
  };
  return renderService(
    configServiceName(config.name),
    ports,
    { [LABEL_NAMESPACE]: config.namespace, [LABEL_CONFIG]: labelValue(config.name), [LABEL_BROKER]: 'pod' },
    ownerMeta(owner, config.name, 'config-service'),
    namespace,
  );
}
