import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Document, isNode, stringify } from 'yaml';
import { externalHandlerSpecs, withExternal } from '../model/externalHandlers.js';
import type { DiscoveryHandler } from '../model/handler.js';
import { DEFAULT_BROKER_NAMESPACE } from '../model/podSecurity.js';
import { ConfigError } from '../util/errors.js';
import { crdManifests } from './crds.js';
import { GRANTS, rbac } from './rbac.js';
import type { Component, InstallFile, InstallOptions, KubeManifest } from './types.js';
import {
  agentConfigMap,
  agentConfigProblems,
  agentConfigText,
  agentDaemonSet,
  brokerNamespaceManifest,
  controllerDeployment,
  HANDLER_NEEDS,
  hubDeployment,
  namespace,
} from './workloads.js';

export { GRANTS, type Grant } from './rbac.js';
export type { Component, InstallFile, InstallOptions, KubeManifest, Toleration } from './types.js';
export { AGENT_PORTS, EXTERNAL_HANDLERS_DIR, HANDLER_NEEDS } from './workloads.js';

/**
 * The whole leafbridge install as Kubernetes objects: Namespace, CRDs, RBAC, the agent's ConfigMap and
 * DaemonSet, the controller's and the hub's Deployments. `leafbridge manifests` prints them; deploy/ holds
 * them for the default options (deployFiles(), kept in step by test/unit/manifests.test.ts).
 */

export const DEFAULT_HANDLERS = ['onvif', 'opcua', 'serial', 'mqtt'];
export const DEFAULT_IMAGE_REPOSITORY = 'ghcr.io/leafbridge/leafbridge';

export function defaultInstallOptions(): InstallOptions {
  return {
    namespace: 'leafbridge',
    image: `${DEFAULT_IMAGE_REPOSITORY}:${packageVersion()}`,
    handlers: [...DEFAULT_HANDLERS],
    externalHandlers: [],
    controller: true,
    controllerReplicas: 2,
    devicePluginDir: '/var/lib/kubelet/device-plugins',
    nodeSelector: {},
    tolerations: [],
  };
}

/** The install in apply order (the Namespace first, then the CRDs), checked: ConfigError lists every problem. */
export function installManifests(
  handlers: readonly DiscoveryHandler[],
  options: Partial<InstallOptions> = {},
): KubeManifest[] {
  return installFiles(handlers, options).flatMap((f) => f.objects);
}

export function installFiles(
  handlers: readonly DiscoveryHandler[],
  options: Partial<InstallOptions> = {},
): InstallFile[] {
  const o: InstallOptions = { ...defaultInstallOptions(), ...options };
  const problems = optionProblems(o, handlers);
  const agentConfig = agentConfigText(o);
  problems.push(...agentConfigProblems(agentConfig));
  if (problems.length > 0) throw new ConfigError(problems);
  const files: InstallFile[] = [
    { part: 'agent', file: 'namespace.yaml', objects: [namespace(o)] },
    ...crdManifests(withExternal(handlers, externalHandlerSpecs(o.externalHandlers))).map((crd) => ({
      part: 'crds' as const,
      file: `${crd.spec.group}_${crd.spec.names.plural}.yaml`,
      objects: [crd as unknown as KubeManifest],
    })),
    { part: 'agent', file: 'rbac.yaml', objects: rbac(o, 'agent') },
    { part: 'agent', file: 'configmap.yaml', objects: [agentConfigMap(o, agentConfig)] },
    { part: 'agent', file: 'daemonset.yaml', objects: [agentDaemonSet(o)] },
  ];
  if (o.controller) {
    files.push(
      {
        part: 'controller',
        file: 'broker-namespace.yaml',
        objects: [brokerNamespaceManifest(DEFAULT_BROKER_NAMESPACE, 'restricted')],
      },
      { part: 'controller', file: 'rbac.yaml', objects: rbac(o, 'controller') },
      { part: 'controller', file: 'deployment.yaml', objects: [controllerDeployment(o)] },
    );
  }
  if (o.hub) {
    files.push(
      { part: 'hub', file: 'rbac.yaml', objects: rbac(o, 'hub') },
      { part: 'hub', file: 'deployment.yaml', objects: [hubDeployment(o, o.hub)] },
    );
  }
  return files;
}

/** Multi-document YAML for `kubectl apply -f -`. */
export function manifestsYaml(objects: readonly KubeManifest[], header = ''): string {
  return header + objects.map((o) => `---\n${toYaml(o)}`).join('');
}

/** One object as YAML; each RBAC rule with a comment saying what needs it. */
export function toYaml(o: KubeManifest): string {
  const doc = new Document(o);
  const component = o.metadata.labels?.['app.kubernetes.io/component'] as Component | undefined;
  if ((o.kind === 'Role' || o.kind === 'ClusterRole') && component && GRANTS[component]) {
    const grants = GRANTS[component][o.kind === 'Role' ? 'namespaced' : 'cluster'];
    grants.forEach((g, i) => {
      const node = doc.getIn(['rules', i], true);
      if (isNode(node)) node.commentBefore = ` ${g.why}`;
    });
  }
  return doc.toString({ lineWidth: 0 });
}

/** The version in package.json, found by walking up from this module (src/install/ or dist/src/install/). */
export function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'leafbridge' && pkg.version) return pkg.version;
    }
    if (dirname(dir) === dir) return '0.0.0';
  }
}

// ------------------------------------------------------------------------------------------ options

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const BROKER_URL = /^mqtts?:\/\/[^\s/?#]+(:\d{1,5})?\/?$/;
export const HUB_REPLICAS = { min: 1, max: 100 } as const;
/** One leads; more than a few only add candidates polling the Lease. */
export const CONTROLLER_REPLICAS = { min: 1, max: 5 } as const;
/** A Secret's name: a DNS subdomain. */
export const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function optionProblems(o: InstallOptions, handlers: readonly DiscoveryHandler[]): string[] {
  const problems: string[] = [];
  if (!DNS_LABEL.test(o.namespace)) problems.push(`namespace: ${o.namespace}: not a namespace name`);
  if (!/^\S+$/.test(o.image)) problems.push(`image: ${JSON.stringify(o.image)}: not an image reference`);
  const known = handlers.map((h) => h.name);
  if (o.handlers.length === 0) problems.push('handlers: name at least one handler');
  for (const name of o.handlers) {
    if (!known.includes(name)) problems.push(`handlers: ${name}: unknown (known: ${known.join(', ')})`);
    else if (!HANDLER_NEEDS[name]) problems.push(`handlers: ${name}: its needs of the node are not known`);
  }
  // Their names are checked by the agent's config schema (agentConfigProblems).
  if (new Set(o.externalHandlers).size !== o.externalHandlers.length)
    problems.push('externalHandlers: a name is listed twice');
  if (o.hub && !BROKER_URL.test(o.hub.brokerUrl))
    problems.push(`hub: ${o.hub.brokerUrl}: must be an mqtt:// or mqtts:// URL`);
  const { min, max } = HUB_REPLICAS;
  if (o.hub && !(Number.isInteger(o.hub.replicas) && o.hub.replicas >= min && o.hub.replicas <= max))
    problems.push(`hub replicas: ${o.hub.replicas}: must be a whole number from ${min} to ${max}`);
  const c = CONTROLLER_REPLICAS;
  if (
    !(
      Number.isInteger(o.controllerReplicas) &&
      o.controllerReplicas >= c.min &&
      o.controllerReplicas <= c.max
    )
  )
    problems.push(
      `controller replicas: ${o.controllerReplicas}: must be a whole number from ${c.min} to ${c.max}`,
    );
  if (o.brokerTls && !SECRET_NAME.test(o.brokerTls.secret))
    problems.push(`brokerTls: ${o.brokerTls.secret}: not a Secret name`);
  if (o.brokerWebsocket !== undefined && o.brokerWebsocket !== 'ws' && o.brokerWebsocket !== 'wss')
    problems.push(`brokerWebsocket: ${o.brokerWebsocket}: must be ws or wss`);
  if (o.brokerWebsocket === 'wss' && !o.brokerTls)
    problems.push('brokerWebsocket: wss needs brokerTls (the certificate and key it serves)');
  if (!o.devicePluginDir.startsWith('/'))
    problems.push(`devicePluginDir: ${o.devicePluginDir}: must be an absolute path`);
  return problems;
}

// ------------------------------------------------------------------------------------------ deploy/

/** The example cloud broker of deploy/overlays/cloud (the agents' upstream and the hub's broker). */
export const EXAMPLE_CLOUD_BROKER = 'mqtts://mqtt.example.com:8883';

/**
 * The kubelet's device-plugin directory on distributions with an overlay (deploy/overlays/<name>) and a chart
 * values file (deploy/helm/leafbridge/values-<name>.yaml). k3s runs its kubelet with the default --root-dir
 * (/var/lib/kubelet, since k3s v0.10; only rootless k3s moves it under its data dir). MicroK8s, a snap, runs
 * it with --root-dir=${SNAP_COMMON}/var/lib/kubelet. pod-resources is beside device-plugins on both.
 */
export const DISTRIBUTIONS = {
  k3s: { devicePluginDir: '/var/lib/kubelet/device-plugins' },
  microk8s: { devicePluginDir: '/var/snap/microk8s/common/var/lib/kubelet/device-plugins' },
} as const satisfies Record<string, Partial<InstallOptions>>;

/**
 * The generated files of deploy/ (paths relative to it): deploy/agent, deploy/controller (default options),
 * deploy/hub (the example broker, 2 replicas), the agent config of deploy/overlays/cloud, and the kubelet
 * paths of deploy/overlays/<distribution> (DISTRIBUTIONS). deploy/crds is
 * crdFiles()'s; the kustomization.yaml files of deploy/base and deploy/overlays are written by hand, and the
 * tests render each one with kubectl and compare it with installManifests() for the same options.
 */
export function deployFiles(handlers: readonly DiscoveryHandler[]): { path: string; text: string }[] {
  const cloud = { upstream: EXAMPLE_CLOUD_BROKER, hub: { brokerUrl: EXAMPLE_CLOUD_BROKER, replicas: 2 } };
  const parts = [
    ...installFiles(handlers).filter((f) => f.part === 'agent' || f.part === 'controller'),
    ...installFiles(handlers, cloud).filter((f) => f.part === 'hub'),
  ];
  const out: { path: string; text: string }[] = [];
  for (const part of ['agent', 'controller', 'hub'] as const) {
    const files = parts.filter((f) => f.part === part);
    out.push({
      path: `${part}/kustomization.yaml`,
      text: kustomization(
        part,
        files.map((f) => f.file),
      ),
    });
    for (const f of files) out.push({ path: `${part}/${f.file}`, text: fileText(f.objects) });
  }
  const cloudConfig = installFiles(handlers, cloud).find((f) => f.file === 'configmap.yaml')!;
  out.push({ path: 'overlays/cloud/agent-config.yaml', text: fileText(cloudConfig.objects) });
  for (const [name, options] of Object.entries(DISTRIBUTIONS))
    out.push(...distributionPatches(handlers, name, options));
  return out;
}

/**
 * The patches of deploy/overlays/<name> over deploy/base: the agent's ConfigMap whole (a strategic merge),
 * and the DaemonSet's changed fields as JSON 6902 `replace` operations (a strategic merge cannot move a
 * volumeMount: mountPath is its merge key). None where the distribution keeps the defaults.
 */
function distributionPatches(
  handlers: readonly DiscoveryHandler[],
  name: string,
  options: Partial<InstallOptions>,
): { path: string; text: string }[] {
  const base = installManifests(handlers);
  const changed = installManifests(handlers, options).filter(
    (o, i) => JSON.stringify(o) !== JSON.stringify(base[i]),
  );
  const patches: { path: string; text: string }[] = [];
  for (const o of changed) {
    if (o.kind === 'ConfigMap') {
      patches.push({ path: `overlays/${name}/agent-config.yaml`, text: fileText([o]) });
    } else if (o.kind === 'DaemonSet') {
      const ops = replaceOps(
        base.find((b) => b.kind === 'DaemonSet'),
        o,
        '',
      );
      patches.push({ path: `overlays/${name}/agent-daemonset.yaml`, text: GENERATED + stringify(ops) });
    } else throw new Error(`overlays/${name}: ${o.kind} ${o.metadata.name} changed: no patch for it`);
  }
  return patches;
}

/** JSON 6902 `replace` operations from `from` to `to`, which must differ only in scalar values. */
function replaceOps(
  from: unknown,
  to: unknown,
  path: string,
): { op: 'replace'; path: string; value: unknown }[] {
  if (typeof from !== 'object' || from === null || typeof to !== 'object' || to === null)
    return from === to ? [] : [{ op: 'replace', path, value: to }];
  const a = from as Record<string, unknown>;
  const b = to as Record<string, unknown>;
  if (Array.isArray(a) !== Array.isArray(b) || Object.keys(a).join() !== Object.keys(b).join())
    throw new Error(`${path || '/'}: the shape differs, not only its values`);
  const pointer = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1');
  return Object.keys(a).flatMap((k) => replaceOps(a[k], b[k], `${path}/${pointer(k)}`));
}

const GENERATED =
  '# Generated by deployFiles() in src/install/manifests.ts; do not edit.\n' +
  '# Regenerate: npx vitest run test/unit/manifests.test.ts -u\n';

function fileText(objects: KubeManifest[]): string {
  return GENERATED + objects.map(toYaml).join('---\n');
}

function kustomization(part: Component, files: string[]): string {
  const what: Record<Component, string> = {
    agent: 'The Namespace and the edge agent (a DaemonSet), with its RBAC and config.',
    controller:
      'The controller: broker Pods/Jobs and Services per Device, in their own namespace (Pod Security restricted).',
    hub: 'The cloud twin hub (MQTT shared subscriptions; the broker URL is an example: deploy/overlays/cloud).',
  };
  // kubectl 1.20's kustomize (v2.0.3) takes only files in `resources` and directories in `bases`.
  return `${GENERATED}# ${what[part]}\n${stringify({
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: files,
  })}`;
}
