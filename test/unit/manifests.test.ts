import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { CONTROLLER_LEASE } from '../../src/cli/controllerCommand.js';
import { manifestsCommand, parseManifestsArgs } from '../../src/cli/manifestsCommand.js';
import { parseConfig } from '../../src/config/load.js';
import {
  deployFiles,
  EXTERNAL_HANDLERS_DIR,
  GRANTS,
  HANDLER_NEEDS,
  type InstallOptions,
  installManifests,
  type KubeManifest,
  packageVersion,
} from '../../src/install/manifests.js';
import type { JsonSchemaProps } from '../../src/install/structural.js';
import { ConfigError } from '../../src/util/errors.js';
import { byKey, grantedTriples, modelProblems, rbacAllows, yamlObjects } from '../helpers/kubeManifests.js';
import { ROOT } from '../helpers/processes.js';

type PodSpec = {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  nodeSelector: Record<string, string>;
  tolerations?: unknown[];
  serviceAccountName: string;
  initContainers?: Container[];
  containers: Container[];
  volumes: { name: string; hostPath?: { path: string; type: string } }[];
};
type Container = {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name: string; containerPort: number; hostPort?: number }[];
  securityContext: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  livenessProbe?: { httpGet: { path: string; port: string } };
  readinessProbe?: { httpGet: { path: string; port: string } };
};

const install = (o: Partial<InstallOptions> = {}) => installManifests(builtinHandlers, o);
const find = (objects: KubeManifest[], kind: string, name: string) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);
const podSpec = (o: KubeManifest | undefined) =>
  (o as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
const agentPod = (objects: KubeManifest[]) => podSpec(find(objects, 'DaemonSet', 'leafbridge-agent'));
const agentContainer = (objects: KubeManifest[]) => agentPod(objects).containers[0]!;
const agentConfigText = (objects: KubeManifest[]) =>
  (find(objects, 'ConfigMap', 'leafbridge-agent') as unknown as { data: Record<string, string> }).data[
    'config.yaml'
  ]!;

const OPTION_SETS: [string, Partial<InstallOptions>][] = [
  ['the defaults', {}],
  ['no controller', { controller: false }],
  [
    'the cloud: upstream and hub',
    { upstream: 'mqtts://b.example:8883', hub: { brokerUrl: 'mqtt://b.example', replicas: 3 } },
  ],
  ['network handlers only', { handlers: ['opcua', 'mqtt'] }],
  ['external handlers', { externalHandlers: ['onvif', 'my-sensors'] }],
  [
    'namespace, image, plugin dir, node selector, tolerations',
    {
      namespace: 'edge-system',
      image: 'registry.local:5000/lb:test',
      devicePluginDir: '/data/kubelet/device-plugins',
      nodeSelector: { 'node-role.kubernetes.io/edge': '' },
      tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }],
    },
  ],
];

describe('installManifests', () => {
  it.each(OPTION_SETS)(
    '%s: every object is valid against the Kubernetes schemas (kubernetes-models)',
    (_, o) => {
      const objects = install(o);
      expect(objects.map(modelProblems).filter(Boolean)).toEqual([]);
      expect(Object.keys(byKey(objects))).toHaveLength(objects.length); // no two objects of one name
      expect(objects[0]!.kind).toBe('Namespace'); // first: `kubectl apply -f -` creates it before the rest
    },
  );

  it.each(OPTION_SETS)('%s: namespaces, images and service accounts follow the options', (_, o) => {
    const objects = install(o);
    const ns = o.namespace ?? 'leafbridge';
    const image = o.image ?? `ghcr.io/leafbridge/leafbridge:${packageVersion()}`;
    expect(find(objects, 'Namespace', ns)).toBeDefined();
    const clusterScoped = ['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'];
    for (const obj of objects) {
      // The controller's Role for broker objects lives in the broker namespace; everything else in `ns`.
      const inBrokers = obj.metadata.name === 'leafbridge-controller-brokers';
      expect(obj.metadata.namespace, `${obj.kind} ${obj.metadata.name}`).toBe(
        clusterScoped.includes(obj.kind) ? undefined : inBrokers ? 'leafbridge-brokers' : ns,
      );
      for (const s of (obj.subjects ?? []) as { namespace: string }[]) expect(s.namespace).toBe(ns);
    }
    const workloads = objects.filter((x) => x.kind === 'DaemonSet' || x.kind === 'Deployment');
    expect(workloads.map((w) => w.metadata.name).sort()).toEqual(
      [
        'leafbridge-agent',
        ...(o.controller === false ? [] : ['leafbridge-controller']),
        ...(o.hub ? ['leafbridge-hub'] : []),
      ].sort(),
    );
    for (const w of workloads) {
      const spec = podSpec(w);
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) expect(c.image).toBe(image);
      expect(find(objects, 'ServiceAccount', spec.serviceAccountName)).toBeDefined();
      expect(spec.nodeSelector).toEqual({
        'kubernetes.io/os': 'linux',
        ...(w.kind === 'DaemonSet' ? o.nodeSelector : {}),
      });
    }
    expect(agentPod(objects).tolerations).toEqual(o.tolerations?.length ? o.tolerations : undefined);
    const hub = find(objects, 'Deployment', 'leafbridge-hub') as { spec: { replicas: number } } | undefined;
    if (o.hub) {
      expect(hub?.spec.replicas).toBe(o.hub.replicas);
      expect(podSpec(hub as never).containers[0]!.args).toEqual(['hub', '--broker', o.hub.brokerUrl]);
    }
  });

  it.each(OPTION_SETS)(
    '%s: the agent mounts exactly the paths its config names, and probes its HTTP port',
    (_, o) => {
      const objects = install(o);
      const config = parseConfig(parse(agentConfigText(objects)), undefined, { NODE_NAME: 'edge-1' });
      const pod = agentPod(objects);
      const agent = agentContainer(objects);
      const hostPathAt = (path: string) => {
        const mount = agent.volumeMounts?.find((m) => m.mountPath === path);
        return pod.volumes.find((v) => v.name === mount?.name)?.hostPath?.path;
      };
      // The device-plugin dir at the same path inside and out: the kubelet dials the sockets the agent creates.
      expect(config.devicePlugins.dir).toBe(o.devicePluginDir ?? '/var/lib/kubelet/device-plugins');
      expect(hostPathAt(config.devicePlugins.dir)).toBe(config.devicePlugins.dir);
      expect(hostPathAt(dirname(config.devicePlugins.podResources))).toBe(
        dirname(config.devicePlugins.podResources),
      );
      expect(hostPathAt(config.dataDir)).toBe('/var/lib/leafbridge');
      expect(config.upstream?.url).toBe(o.upstream);
      expect(config.kubernetes).toBe('auto');
      const http = agent.ports?.find((p) => p.name === 'http');
      expect(http?.containerPort).toBe(config.http.listen.port);
      expect(agent.ports?.find((p) => p.name === 'mqtt')?.containerPort).toBe(config.broker.listen.port);
      expect(agent.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(agent.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
      // The agent sets its own heap limits; the DaemonSet passes no Node flags.
      expect(agent.env?.map((e) => e.name)).not.toContain('NODE_OPTIONS');
      expect(agent.args).toEqual(['agent', '--config', '/etc/leafbridge/config.yaml']);
    },
  );

  it('the agent takes its node name from the downward API, and accepts the ConfigMap as it is', () => {
    const objects = install({ upstream: 'mqtt://cloud.example:1883' });
    expect(agentPod(objects).initContainers).toBeUndefined();
    expect(agentContainer(objects).env).toContainEqual({
      name: 'NODE_NAME',
      valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } },
    });
    const text = agentConfigText(objects);
    expect(parse(text)).not.toHaveProperty('node');
    const config = parseConfig(parse(text), undefined, { NODE_NAME: 'edge-7.example.com' });
    expect(config.node).toBe('edge-7.example.com');
    expect(config.upstream?.clientId).toBe('leafbridge-edge-7.example.com');
    expect(() => parseConfig(parse(text), undefined, {})).toThrow(/node/);
  });

  it('handlers decide the privileges: onvif the node network, serial /dev and a privileged container', () => {
    const shape = (handlers: string[]) => {
      const objects = install({ handlers });
      const pod = agentPod(objects);
      const agent = agentContainer(objects);
      return {
        hostNetwork: pod.hostNetwork ?? false,
        dnsPolicy: pod.dnsPolicy,
        mqttHostPort: agent.ports?.find((p) => p.name === 'mqtt')?.hostPort,
        dev: pod.volumes.some((v) => v.hostPath?.path === '/dev'),
        privileged: agent.securityContext.privileged ?? false,
      };
    };
    expect(shape(['opcua', 'mqtt'])).toEqual({
      hostNetwork: false,
      dnsPolicy: undefined,
      mqttHostPort: 1883,
      dev: false,
      privileged: false,
    });
    expect(shape(['onvif'])).toEqual({
      hostNetwork: true,
      dnsPolicy: 'ClusterFirstWithHostNet',
      mqttHostPort: undefined,
      dev: false,
      privileged: false,
    });
    expect(shape(['serial'])).toMatchObject({ hostNetwork: false, dev: true, privileged: true });
    expect(shape(['onvif', 'opcua', 'serial', 'mqtt'])).toMatchObject({
      hostNetwork: true,
      privileged: true,
    });
    expect(find(install(), 'DaemonSet', 'leafbridge-agent')?.metadata.annotations).toEqual({
      'leafbridge.io/handlers': 'onvif,opcua,serial,mqtt',
    });
    expect(Object.keys(HANDLER_NEEDS).sort()).toEqual(builtinHandlers.map((h) => h.name).sort());
  });

  it('external handlers: named in the CRD and the agent config, their registration directory mounted', () => {
    const objects = install({ externalHandlers: ['onvif', 'my-sensors'] });
    const crd = find(objects, 'CustomResourceDefinition', 'discoveryconfigs.leafbridge.io') as unknown as {
      spec: { versions: { schema: { openAPIV3Schema: JsonSchemaProps } }[] };
    };
    const handler = crd.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!.properties!.handler!;
    expect(handler.properties!.name!.enum).toEqual([
      'opcua',
      'serial',
      'mqtt',
      'modbus',
      'debug-echo',
      'onvif',
      'my-sensors',
    ]);
    const config = parseConfig(parse(agentConfigText(objects)), undefined, { NODE_NAME: 'edge-1' });
    expect(config.discovery.external).toMatchObject({
      handlers: ['onvif', 'my-sensors'],
      dir: EXTERNAL_HANDLERS_DIR,
    });
    const pod = agentPod(objects);
    expect(pod.volumes).toContainEqual({
      name: 'external-handlers',
      hostPath: { path: '/var/lib/akri', type: 'DirectoryOrCreate' },
    });
    expect(agentContainer(objects).volumeMounts).toContainEqual({
      name: 'external-handlers',
      mountPath: '/var/lib/akri',
    });

    const none = install();
    expect(parse(agentConfigText(none))).not.toHaveProperty('discovery');
    expect(agentPod(none).volumes.map((v) => v.name)).not.toContain('external-handlers');
    const noneCrd = find(none, 'CustomResourceDefinition', 'discoveryconfigs.leafbridge.io');
    expect(JSON.stringify(noneCrd)).not.toContain('my-sensors');
  });

  it('the broker TLS and WebSocket listeners: config, ports (host ports off the node network) and the Secret mounted', () => {
    const objects = install({
      handlers: ['opcua', 'mqtt'],
      brokerTls: { secret: 'edge-broker-tls', clientCa: true },
      brokerWebsocket: 'wss',
    });
    const config = parse(agentConfigText(objects)) as {
      broker: Record<string, unknown>;
    };
    expect(config.broker).toEqual({
      listen: '0.0.0.0:1883',
      tls: {
        listen: '0.0.0.0:8883',
        cert: '/etc/leafbridge-tls/tls.crt',
        key: '/etc/leafbridge-tls/tls.key',
        clientCa: '/etc/leafbridge-tls/ca.crt',
      },
      websocket: { listen: '0.0.0.0:8083', tls: true },
    });
    const agent = agentContainer(objects);
    expect(agent.ports).toEqual([
      { name: 'mqtt', containerPort: 1883, hostPort: 1883, protocol: 'TCP' },
      { name: 'mqtts', containerPort: 8883, hostPort: 8883, protocol: 'TCP' },
      { name: 'mqtt-ws', containerPort: 8083, hostPort: 8083, protocol: 'TCP' },
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
    ]);
    expect(agent.volumeMounts).toContainEqual({
      name: 'broker-tls',
      mountPath: '/etc/leafbridge-tls',
      readOnly: true,
    });
    expect(agentPod(objects).volumes).toContainEqual({
      name: 'broker-tls',
      secret: { secretName: 'edge-broker-tls', defaultMode: 0o400 },
    });
    // On the node's network (onvif) the ports are the node's own: no host ports.
    const onNode = agentContainer(install({ handlers: ['onvif'], brokerWebsocket: 'ws' }));
    expect(onNode.ports?.map((p) => [p.name, p.hostPort])).toEqual([
      ['mqtt', undefined],
      ['mqtt-ws', undefined],
      ['http', undefined],
    ]);
    // Off by default: no listener, port or mount.
    const plain = install();
    expect(agentContainer(plain).ports?.map((p) => p.name)).toEqual(['mqtt', 'http']);
    expect(agentPod(plain).volumes.map((v) => v.name)).not.toContain('broker-tls');
    expect(
      parseManifestsArgs(['--broker-tls-secret', 's', '--broker-client-ca', '--broker-websocket', 'wss']),
    ).toMatchObject({
      options: { brokerTls: { secret: 's', clientCa: true }, brokerWebsocket: 'wss' },
    });
    expect(() => parseManifestsArgs(['--broker-websocket', 'http'])).toThrow(/must be ws or wss/);
    expect(() => parseManifestsArgs(['--broker-client-ca'])).toThrow(/needs --broker-tls-secret/);
  });

  it('least privilege where privilege is not needed: no capabilities, no escalation, read-only root', () => {
    const objects = install({
      handlers: ['onvif', 'opcua', 'mqtt'],
      hub: { brokerUrl: 'mqtt://b', replicas: 1 },
    });
    const agent = agentContainer(objects);
    expect(agent.securityContext).toMatchObject({
      runAsUser: 0,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const others = [
      podSpec(find(objects, 'Deployment', 'leafbridge-controller')).containers[0]!,
      podSpec(find(objects, 'Deployment', 'leafbridge-hub')).containers[0]!,
    ];
    for (const c of others) {
      expect(c.securityContext, c.name).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
    }
    for (const m of agent.volumeMounts ?? []) {
      if (['pod-resources', 'config'].includes(m.name)) expect(m.readOnly, m.name).toBe(true);
    }
  });

  it('refuses bad options, naming each problem', () => {
    const problems = (o: Partial<InstallOptions>) => {
      try {
        install(o);
        return [];
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return [...(err as ConfigError).problems];
      }
    };
    expect(
      problems({
        namespace: 'Leaf_Bridge',
        handlers: ['onvif', 'zigbee'],
        upstream: 'http://cloud',
        hub: { brokerUrl: 'ws://x', replicas: 0 },
        controllerReplicas: 0,
        devicePluginDir: 'relative/dir',
        image: 'has space',
      }),
    ).toEqual([
      'namespace: Leaf_Bridge: not a namespace name',
      'image: "has space": not an image reference',
      'handlers: zigbee: unknown (known: onvif, opcua, serial, mqtt, modbus, debug-echo)',
      'hub: ws://x: must be an mqtt:// or mqtts:// URL',
      'hub replicas: 0: must be a whole number from 1 to 100',
      'controller replicas: 0: must be a whole number from 1 to 5',
      'devicePluginDir: relative/dir: must be an absolute path',
      'agent config: upstream.url: must be an mqtt:// or mqtts:// URL',
    ]);
    expect(problems({ handlers: [] })).toEqual(['handlers: name at least one handler']);
    expect(problems({ externalHandlers: ['ok', '-bad', 'ok'] })).toEqual([
      'externalHandlers: a name is listed twice',
      'agent config: discovery.external.handlers[1]: must be a handler name: letters, digits, ".", "_", "-"',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------- RBAC

/** Source files reachable from `entry` through relative imports (static and dynamic). */
function reachable(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file) || !existsSync(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
      visit(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    }
  };
  visit(join(ROOT, entry));
  return [...seen].map((f) => relative(ROOT, f)).sort();
}

/**
 * The Kubernetes API calls in a component's code: `file METHOD` for each `method: 'GET'` (and the like) of a
 * KubeRest call, and `file WATCH` for each watch. What each one reaches is listed in the tables below.
 */
function apiCalls(entry: string): string[] {
  const out = new Set<string>();
  // The discovery handlers speak their own protocols (SOAP over HTTP), not Kubernetes.
  for (const file of reachable(entry).filter((f) => f.startsWith('src/'))) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/\bmethod: '(GET|POST|PUT|PATCH|DELETE)',/g)) out.add(`${file} ${m[1]}`);
    if (/\.rest\.watch\(/.test(text)) out.add(`${file} WATCH`);
    expect(text, `${file} uses client-node's API classes: call through KubeRest`).not.toMatch(
      /makeApiClient|KubernetesObjectApi|new Watch\(/,
    );
  }
  return [...out].sort();
}

const LB = 'leafbridge.io';
/** What each call of the agent does, as RBAC sees it (`group/resource verb`). Update with the code. */
const AGENT_CALLS: Record<string, string[]> = {
  // The reachability probe lists one Device; re-reads after a 409 get one.
  'src/registry/kubeDeviceStore.ts GET': [`${LB}/devices list`, `${LB}/devices get`],
  'src/registry/kubeDeviceStore.ts POST': [`${LB}/devices create`],
  'src/registry/kubeDeviceStore.ts PUT': [`${LB}/devices update`],
  'src/registry/kubeDeviceStore.ts DELETE': [`${LB}/devices delete`],
  'src/registry/kubeDeviceStore.ts PATCH': [`${LB}/devices/status patch`],
  'src/registry/configOwners.ts GET': [`${LB}/discoveryconfigs get`],
  'src/kubeclient/reflector.ts GET': [`${LB}/devices list`, `${LB}/discoveryconfigs list`],
  'src/kubeclient/reflector.ts WATCH': [`${LB}/devices watch`, `${LB}/discoveryconfigs watch`],
  'src/registry/kubeConfigSource.ts GET': ['/nodes get', `${LB}/discoveryconfigs get`],
  'src/registry/kubeConfigSource.ts PATCH': [`${LB}/discoveryconfigs/status patch`],
  'src/deviceplugin/podList.ts GET': ['/pods list'],
  // Passwords DiscoveryConfigs reference, read when a handler starts.
  'src/kubeclient/secrets.ts GET': ['/secrets get'],
  // Requests to the agent's HTTP API: whose token, and may they.
  'src/kubeclient/accessReview.ts POST': [
    'authentication.k8s.io/tokenreviews create',
    'authorization.k8s.io/subjectaccessreviews create',
  ],
};
const HUB_CALLS: Record<string, string[]> = {
  'src/hub/statusWriter.ts GET': [`${LB}/devices list`, `${LB}/devices get`],
  'src/hub/statusWriter.ts PATCH': [`${LB}/devices/status patch`],
  'src/kubeclient/reflector.ts GET': [`${LB}/devices list`],
  'src/kubeclient/reflector.ts WATCH': [`${LB}/devices watch`],
};
const triples = (calls: Record<string, string[]>) => [...new Set(Object.values(calls).flat())].sort();

describe('RBAC: each component gets exactly what its code calls', () => {
  it('the agent: the API calls reachable from `leafbridge agent` are the listed ones, and the roles grant exactly them', async () => {
    expect(apiCalls('src/cli/agentCommand.ts')).toEqual(Object.keys(AGENT_CALLS).sort());
    expect(grantedTriples(install(), 'leafbridge-agent')).toEqual(triples(AGENT_CALLS));
    // Namespaced where the API allows: Nodes and the reviews are cluster-scoped, the pods of all namespaces span them.
    expect(GRANTS.agent.cluster.flatMap((g) => g.resources)).toEqual([
      'nodes',
      'pods',
      'tokenreviews',
      'subjectaccessreviews',
    ]);
  });

  it('the hub: the same for `leafbridge hub`', async () => {
    expect(apiCalls('src/cli/hubCommand.ts')).toEqual(Object.keys(HUB_CALLS).sort());
    const objects = install({ hub: { brokerUrl: 'mqtt://b', replicas: 1 } });
    expect(grantedTriples(objects, 'leafbridge-hub')).toEqual(triples(HUB_CALLS));
    expect(GRANTS.hub.cluster).toEqual([]);
  });

  it('the controller: exactly the writes it makes and the collections it watches', () => {
    const dir = join(ROOT, 'src/controller');
    const paths: Record<string, string> = { pods: '', services: '', nodes: '', jobs: 'batch', devices: LB };
    paths.discoveryconfigs = LB;
    const verbs: Record<string, string> = {
      get: 'get',
      create: 'create',
      delete: 'delete',
      replace: 'update',
      mergePatch: 'patch',
    };
    const needed = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      // A `plural` variable stands for the kinds its type annotation in that file names ('pods' | 'jobs').
      const annotated = /\bplural: ((?:'\w+'(?: \| )?)+)/.exec(text)?.[1]?.match(/\w+/g) ?? [];
      for (const m of text.matchAll(/writer\.(\w+)\(\s*('\w+'|plural),([\s\S]*?)\);/g)) {
        const [, op, arg, rest] = m as unknown as [string, string, string, string];
        const status = op === 'mergePatch' && /,\s*true\s*$/.test(rest.trim().replace(/\)$/, ''));
        for (const plural of arg === 'plural' ? annotated : [arg.slice(1, -1)])
          needed.add(`${paths[plural]}/${plural}${status ? '/status' : ''} ${verbs[op]}`);
      }
    }
    // The informers list and watch each kind the writer knows (src/kubeclient/apiWriter.ts `Plural`).
    const plurals = /export type Plural = ([^;]+);/.exec(
      readFileSync(join(ROOT, 'src/kubeclient/apiWriter.ts'), 'utf8'),
    )![1]!;
    for (const p of plurals.matchAll(/'(\w+)'/g)) {
      needed.add(`${paths[p[1]!]}/${p[1]} list`);
      needed.add(`${paths[p[1]!]}/${p[1]} watch`);
    }
    // No owner references any more (the brokers live in another namespace): no finalizers update either.
    // Leader election (src/kubeclient/leaderElection.ts): read, renew and take over the one Lease; create it once.
    const text = readFileSync(join(ROOT, 'src/kubeclient/leaderElection.ts'), 'utf8');
    const methods = [...text.matchAll(/\bmethod: '(\w+)'|'(POST|PUT)'/g)].map((m) => m[1] ?? m[2]);
    expect([...new Set(methods)].sort()).toEqual(['GET', 'POST', 'PUT']);
    const leases = ['get', 'create', 'update'].map((v) => `coordination.k8s.io/leases ${v}`);
    expect(grantedTriples(install(), 'leafbridge-controller')).toEqual([...needed, ...leases].sort());
    // get and update on the controller's Lease alone; create cannot be narrowed by name.
    const named = GRANTS.controller.namespaced.filter((g) => g.resources.includes('leases'));
    expect(named.map((g) => [g.verbs.join(), g.resourceNames])).toEqual([
      ['get,update', [CONTROLLER_LEASE]],
      ['create', undefined],
    ]);
  });

  it('the controller writes pods, jobs and services only in the broker namespace, and that enforces restricted', () => {
    const objects = install();
    const may = (resource: string, group: string, namespace: string) =>
      rbacAllows(objects, 'leafbridge-controller', { group, resource, verb: 'create', namespace });
    for (const [resource, group] of [
      ['pods', ''],
      ['services', ''],
      ['jobs', 'batch'],
    ] as const) {
      expect(may(resource, group, 'leafbridge-brokers')).toBe(true);
      expect(may(resource, group, 'leafbridge')).toBe(false);
      expect(may(resource, group, 'kube-system')).toBe(false);
    }
    const ns = objects.find((o) => o.kind === 'Namespace' && o.metadata.name === 'leafbridge-brokers');
    expect(ns?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });
});

// ------------------------------------------------------------------------------------------ deploy/

describe('deploy/ holds what the code generates (regenerate: npx vitest run test/unit/manifests.test.ts -u)', () => {
  const files = deployFiles(builtinHandlers);

  it.each(files.map((f) => [f.path, f.text]))('deploy/%s', async (path, text) => {
    await expect(text).toMatchFileSnapshot(join(ROOT, 'deploy', path));
    // Objects only: a JSON 6902 patch (overlays/<distribution>/agent-daemonset.yaml) is a list of operations.
    const objects = yamlObjects(text).filter((x) => !Array.isArray(x) && x.kind !== 'Kustomization');
    for (const o of objects) expect(modelProblems(o)).toBe('');
  });

  it('no stale files in the generated folders', () => {
    for (const part of ['agent', 'controller', 'hub']) {
      const expected = files
        .filter((f) => f.path.startsWith(`${part}/`))
        .map((f) => f.path.slice(part.length + 1));
      expect(readdirSync(join(ROOT, 'deploy', part)).sort()).toEqual(expected.sort());
    }
  });
});

// ------------------------------------------------------------------------------- leafbridge manifests

describe('leafbridge manifests', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      stdout += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      stderr += String(chunk);
      return true;
    });
    const code = await manifestsCommand(argv);
    vi.restoreAllMocks();
    return { code, stdout, stderr };
  }

  it('prints the default install as YAML documents', async () => {
    const { code, stdout, stderr } = await run([]);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^# leafbridge \d+\.\d+\.\d+: leafbridge manifests\n---\n/);
    expect(yamlObjects(stdout)).toEqual(JSON.parse(JSON.stringify(install())));
  });

  it('follows every flag', async () => {
    const argv = [
      ...['--namespace', 'edge', '--image', 'reg.example/lb:1', '--upstream', 'mqtts://cloud:8883'],
      ...[
        '--handlers',
        'mqtt,opcua',
        '--no-controller',
        '--hub',
        'mqtts://cloud:8883',
        '--hub-replicas',
        '3',
      ],
      ...['--device-plugin-dir', '/k/device-plugins', '--node-selector', 'edge=true,zone=a'],
      ...['--tolerate', 'edge:NoSchedule', '--tolerate', 'dedicated=iot'],
      ...['--external-handlers', 'udev,my-sensors'],
    ];
    const { code, stdout } = await run(argv);
    expect(code).toBe(0);
    const expected = install({
      namespace: 'edge',
      image: 'reg.example/lb:1',
      upstream: 'mqtts://cloud:8883',
      handlers: ['mqtt', 'opcua'],
      controller: false,
      hub: { brokerUrl: 'mqtts://cloud:8883', replicas: 3 },
      devicePluginDir: '/k/device-plugins',
      nodeSelector: { edge: 'true', zone: 'a' },
      tolerations: [
        { key: 'edge', operator: 'Exists', effect: 'NoSchedule' },
        { key: 'dedicated', operator: 'Equal', value: 'iot' },
      ],
      externalHandlers: ['udev', 'my-sensors'],
    });
    const objects = yamlObjects(stdout);
    expect(objects).toEqual(JSON.parse(JSON.stringify(expected)));
    expect(objects.map(modelProblems).filter(Boolean)).toEqual([]);
  });

  it.each([
    [['--bogus'], "Unknown option '--bogus'"],
    [['--hub-replicas', '2'], '--hub-replicas needs --hub URL'],
    [['--hub', 'mqtt://b', '--hub-replicas', 'two'], '--hub-replicas two: must be a whole number'],
    [['--handlers', 'zigbee'], 'handlers: zigbee: unknown'],
    [['--upstream', 'http://x'], 'upstream.url: must be an mqtt:// or mqtts:// URL'],
    [['--node-selector', 'a'], '--node-selector a: must be KEY=VALUE'],
    [['--tolerate', 'a:Sometimes'], 'the effect must be one of'],
    [['--external-handlers', 'a b'], 'discovery.external.handlers[0]: must be a handler name'],
    [['extra'], 'unexpected argument extra'],
    [['--namespace'], "Option '--namespace <value>' argument missing"],
  ])('%j: usage on stderr, exit 2', async (argv, message) => {
    const { code, stdout, stderr } = await run(argv);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(message);
    expect(stderr).toContain('usage: leafbridge manifests');
  });

  it('--crds-only: the CRDs alone, as the other flags make them', async () => {
    const { code, stdout } = await run(['--crds-only', '--external-handlers', 'my-sensors']);
    expect(code).toBe(0);
    const crds = install({ externalHandlers: ['my-sensors'] }).filter(
      (o) => o.kind === 'CustomResourceDefinition',
    );
    expect(crds.map((c) => c.metadata.name)).toEqual([
      'discoveryconfigs.leafbridge.io',
      'devices.leafbridge.io',
    ]);
    expect(yamlObjects(stdout)).toEqual(JSON.parse(JSON.stringify(crds)));
  });

  it('--help: usage on stdout, exit 0', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('--hub-replicas N');
    expect(parseManifestsArgs(['-h'])).toBe('help');
  });
});
