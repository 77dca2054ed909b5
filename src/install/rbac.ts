import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import type { IClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import type { IPolicyRule } from 'kubernetes-models/rbac.authorization.k8s.io/v1/PolicyRule';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { DEFAULT_BROKER_NAMESPACE } from '../model/podSecurity.js';
import { API_GROUP } from '../model/resources.js';
import { type Component, type InstallOptions, type KubeManifest, labels, manifest } from './types.js';

/** One RBAC rule and the code that needs it. */
export interface Grant {
  apiGroup: string;
  resources: string[];
  verbs: string[];
  /** Only these objects (RBAC cannot narrow `create` or `list` by name). */
  resourceNames?: string[];
  why: string;
}

const LB = API_GROUP;

/**
 * Least privilege, from the calls each component makes (test/unit/manifests.test.ts lists them from the code
 * and compares). Namespaced rules are a Role in the install's namespace: the agent, controller and hub
 * all work in their own namespace (the service account's). Cluster rules are for what has no namespace
 * (Nodes) or spans them all (the pods of a node).
 */
export const GRANTS: Record<Component, { namespaced: Grant[]; cluster: Grant[]; brokers?: Grant[] }> = {
  agent: {
    namespaced: [
      {
        apiGroup: LB,
        resources: ['discoveryconfigs'],
        verbs: ['get', 'list', 'watch'],
        why: 'what to discover (reflector: list + watch; get: the uid for a Device owner reference)',
      },
      {
        apiGroup: LB,
        resources: ['discoveryconfigs/status'],
        verbs: ['patch'],
        why: 'the Valid condition and device count (merge patch)',
      },
      {
        apiGroup: LB,
        resources: ['devices'],
        verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
        why: 'the Devices it finds: created, replaced (spec.nodes), deleted after the grace period; get re-reads after a 409',
      },
      {
        apiGroup: LB,
        resources: ['devices/status'],
        verbs: ['patch'],
        why: 'online, lastSeen, slot claims (merge patch with a resourceVersion precondition)',
      },
      {
        apiGroup: '',
        resources: ['secrets'],
        verbs: ['get'],
        why: "passwords that DiscoveryConfigs reference ({secretKeyRef: {name, key}}), in the install's namespace only: keep no other Secrets there",
      },
    ],
    cluster: [
      {
        apiGroup: '',
        resources: ['nodes'],
        verbs: ['get'],
        why: "its own Node's labels, for DiscoveryConfig nodeSelectors (RBAC cannot narrow this to the agent's own node: every agent may read every Node)",
      },
      {
        apiGroup: '',
        resources: ['pods'],
        verbs: ['list'],
        why: "fallback for releasing device slots when the kubelet's PodResources socket does not answer: the pods of its node, all namespaces (fieldSelector spec.nodeName, which RBAC cannot enforce)",
      },
      {
        apiGroup: 'authentication.k8s.io',
        resources: ['tokenreviews'],
        verbs: ['create'],
        why: "whose bearer token a request to the agent's HTTP API carries (as the kubelet and kube-rbac-proxy ask)",
      },
      {
        apiGroup: 'authorization.k8s.io',
        resources: ['subjectaccessreviews'],
        verbs: ['create'],
        why: "whether that user's RBAC allows the verb on the leafbridge.io resource (or /metrics) the request wants",
      },
    ],
  },
  controller: {
    namespaced: [
      {
        apiGroup: LB,
        resources: ['devices'],
        verbs: ['get', 'list', 'watch', 'update'],
        why: 'Devices to run brokers for; spec.nodes of nodes that are gone (replace with a resourceVersion)',
      },
      {
        apiGroup: LB,
        resources: ['devices/status', 'discoveryconfigs/status'],
        verbs: ['patch'],
        why: 'broker conditions on Devices, status.brokers on DiscoveryConfigs',
      },
      {
        apiGroup: LB,
        resources: ['discoveryconfigs'],
        verbs: ['get', 'list', 'watch'],
        why: 'broker Pod/Job templates and Service specs',
      },
      {
        apiGroup: 'coordination.k8s.io',
        resources: ['leases'],
        verbs: ['get', 'update'],
        resourceNames: ['leafbridge-controller'],
        why: 'leader election: the one Lease its replicas elect a leader on (read, renew, take over, release)',
      },
      {
        apiGroup: 'coordination.k8s.io',
        resources: ['leases'],
        verbs: ['create'],
        why: 'leader election: the Lease, the first time (RBAC cannot narrow create to a name)',
      },
    ],
    // A Role in each broker namespace (brokerRbac): no pod writes anywhere else.
    brokers: [
      {
        apiGroup: '',
        resources: ['pods', 'services'],
        verbs: ['get', 'list', 'watch', 'create', 'delete'],
        why: 'broker Pods and the device/config Services it runs per Device, in the broker namespace',
      },
      {
        apiGroup: '',
        resources: ['services'],
        verbs: ['patch'],
        why: 'a Service whose ports or selector changed (merge patch)',
      },
      {
        apiGroup: 'batch',
        resources: ['jobs'],
        verbs: ['get', 'list', 'watch', 'create', 'delete'],
        why: 'broker Jobs (spec.brokerJobSpec)',
      },
    ],
    cluster: [
      {
        apiGroup: '',
        resources: ['nodes'],
        verbs: ['list', 'watch'],
        why: 'which nodes are gone or not ready, to move brokers and prune spec.nodes (an informer)',
      },
    ],
  },
  hub: {
    namespaced: [
      {
        apiGroup: LB,
        resources: ['devices'],
        verbs: ['get', 'list', 'watch'],
        why: 'the Devices whose twins it carries (spec.desired out; get re-reads after a 409)',
      },
      {
        apiGroup: LB,
        resources: ['devices/status'],
        verbs: ['patch'],
        why: 'reported twins and presence from the cloud broker (merge patch with a resourceVersion precondition)',
      },
    ],
    cluster: [],
  },
};

const rule = (g: Grant): IPolicyRule => ({
  apiGroups: [g.apiGroup],
  resources: g.resources,
  ...(g.resourceNames ? { resourceNames: g.resourceNames } : {}),
  verbs: g.verbs,
});

/** The ServiceAccount, Role + RoleBinding and (when needed) ClusterRole + ClusterRoleBinding of a component. */
export function rbac(o: InstallOptions, component: Component): KubeManifest[] {
  const name = `leafbridge-${component}`;
  const subject = { kind: 'ServiceAccount', name, namespace: o.namespace };
  const meta = (namespaced: boolean) => ({
    name,
    ...(namespaced ? { namespace: o.namespace } : {}),
    labels: labels(component),
  });
  const grants = GRANTS[component];
  const out: KubeManifest[] = [
    manifest<IServiceAccount>({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(true) }),
    manifest<IRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta(true),
      rules: grants.namespaced.map(rule),
    }),
    manifest<IRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(true),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [subject],
    }),
  ];
  if (grants.brokers) out.push(...brokerRbac(o, component, DEFAULT_BROKER_NAMESPACE));
  if (grants.cluster.length === 0) return out;
  // Cluster-scoped names are global: one install per cluster (the agents' host ports allow no second).
  out.push(
    manifest<IClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: meta(false),
      rules: grants.cluster.map(rule),
    }),
    manifest<IClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [subject],
    }),
  );
  return out;
}

/**
 * The Role and RoleBinding of a component's `brokers` grants in the broker namespace `namespace` (the
 * restricted one the install makes, or one of the elevated ones an admin makes: docs/security.md), bound to
 * its ServiceAccount in the install's namespace.
 */
export function brokerRbac(o: InstallOptions, component: Component, namespace: string): KubeManifest[] {
  const name = `leafbridge-${component}-brokers`;
  const metadata = { name, namespace, labels: labels(component) };
  return [
    manifest<IRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata,
      rules: (GRANTS[component].brokers ?? []).map(rule),
    }),
    manifest<IRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name: `leafbridge-${component}`, namespace: o.namespace }],
    }),
  ];
}
