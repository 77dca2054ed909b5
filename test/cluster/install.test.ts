import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { CHART_DIR } from '../../src/install/helmChart.js';
import {
  DISTRIBUTIONS,
  EXAMPLE_CLOUD_BROKER,
  type InstallOptions,
  installManifests,
  type KubeManifest,
} from '../../src/install/manifests.js';
import { DEFAULT_BROKER_NAMESPACE } from '../../src/model/podSecurity.js';
import { ControlPlane, controlPlaneBin } from '../helpers/controlPlane.js';
import { byKey, modelProblems, yamlObjects } from '../helpers/kubeManifests.js';
import { ROOT, tempDir } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';

/**
 * The install as users run it: the Helm chart linted and rendered by helm (built with the control plane),
 * each rendering compared object by object with what `leafbridge manifests` gives for the same options; then
 * the chart's renderings, a real `helm install`/`upgrade`/`uninstall`, and every kustomize overlay applied
 * to the real API server, whose validation decides.
 */

const CHART = join(ROOT, 'deploy', CHART_DIR);
const KUBELET_PATH_VALUES = Object.keys(DISTRIBUTIONS).map((d) => join(CHART, `values-${d}.yaml`));

let work: { path: string; remove(): void } | undefined;
let cp: ControlPlane | undefined;

/** helm with its cache, config and data in a temporary directory; resolves with stdout, rejects with stderr. */
function helm(args: string[]): Promise<string> {
  const home = work!.path;
  return new Promise((resolve, reject) => {
    execFile(
      join(controlPlaneBin()!, 'helm'),
      args,
      {
        cwd: ROOT,
        timeout: 120_000,
        maxBuffer: 32 << 20,
        env: {
          PATH: process.env.PATH,
          HOME: home,
          HELM_CACHE_HOME: join(home, 'helm-cache'),
          HELM_CONFIG_HOME: join(home, 'helm-config'),
          HELM_DATA_HOME: join(home, 'helm-data'),
        },
      },
      (err, stdout, stderr) =>
        err ? reject(new Error(`helm ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

let valuesFiles = 0;
/** `-f FILE` for each values object (written to a file) or values file path. */
function valuesArgs(values: (Record<string, unknown> | string)[]): string[] {
  return values.flatMap((v) => {
    if (typeof v === 'string') return ['-f', v];
    const file = join(work!.path, `values-${++valuesFiles}.yaml`);
    writeFileSync(file, stringify(v));
    return ['-f', file];
  });
}

/** The chart rendered as `helm install` would install it, CRDs included. */
async function render(...values: (Record<string, unknown> | string)[]): Promise<string> {
  return helm(['template', 'leafbridge', CHART, '--include-crds', ...valuesArgs(values)]);
}

/** The chart's values for the same install as these options (image: repository and tag). */
const CASES: [string, (Record<string, unknown> | string)[], Partial<InstallOptions>][] = [
  ['the defaults', [], {}],
  ['k3s (values-k3s.yaml)', [join(CHART, 'values-k3s.yaml')], DISTRIBUTIONS.k3s],
  ['MicroK8s (values-microk8s.yaml)', [join(CHART, 'values-microk8s.yaml')], DISTRIBUTIONS.microk8s],
  ['no controller', [{ controller: { enabled: false } }], { controller: false }],
  ['three controller replicas', [{ controller: { replicas: 3 } }], { controllerReplicas: 3 }],
  [
    'the cloud: upstream and hub',
    [{ upstream: EXAMPLE_CLOUD_BROKER, hub: { enabled: true, brokerUrl: 'mqtt://b.example', replicas: 3 } }],
    { upstream: EXAMPLE_CLOUD_BROKER, hub: { brokerUrl: 'mqtt://b.example', replicas: 3 } },
  ],
  [
    'the broker with mqtts (client CA) and wss',
    [{ broker: { tls: { secretName: 'edge-broker-tls', clientCa: true }, websocket: 'wss' } }],
    { brokerTls: { secret: 'edge-broker-tls', clientCa: true }, brokerWebsocket: 'wss' },
  ],
  [
    'the broker with plain ws, on the node network',
    [{ handlers: ['onvif'], broker: { websocket: 'ws' } }],
    { handlers: ['onvif'], brokerWebsocket: 'ws' },
  ],
  ['network handlers only', [{ handlers: ['opcua', 'mqtt'] }], { handlers: ['opcua', 'mqtt'] }],
  ['onvif alone', [{ handlers: ['onvif'] }], { handlers: ['onvif'] }],
  ['serial alone', [{ handlers: ['serial'] }], { handlers: ['serial'] }],

  [
    'namespace, image, plugin dir, node selector, tolerations',
    [
      {
        namespace: 'edge-system',
        image: { repository: 'registry.local:5000/lb', tag: 'test' },
        devicePluginDir: '/data/kubelet/device-plugins',
        nodeSelector: { 'node-role.kubernetes.io/edge': '', 'kubernetes.io/os': 'linux' },
        tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }],
      },
    ],
    {
      namespace: 'edge-system',
      image: 'registry.local:5000/lb:test',
      devicePluginDir: '/data/kubelet/device-plugins',
      nodeSelector: { 'node-role.kubernetes.io/edge': '' },
      tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }],
    },
  ],
];

const plain = (objects: readonly KubeManifest[]) => byKey(JSON.parse(JSON.stringify(objects)));

/** The code's objects as the chart renders them: its one addition, helm uninstall keeping the Namespace. */
function asChart(objects: readonly KubeManifest[]): KubeManifest[] {
  return objects.map((o) =>
    o.kind === 'Namespace'
      ? { ...o, metadata: { ...o.metadata, annotations: { 'helm.sh/resource-policy': 'keep' } } }
      : o,
  );
}

describeControlPlane('the Helm chart and the overlays, with helm and the real API server', () => {
  beforeAll(() => {
    work = tempDir('lb-install-');
  });
  afterAll(async () => {
    await cp?.close();
    cp = undefined;
    work?.remove();
  });

  it('helm lint passes, with the default values and each distribution’s', async () => {
    for (const values of [[], ...KUBELET_PATH_VALUES.map((f) => [f])]) {
      const out = await helm(['lint', '--strict', CHART, ...valuesArgs(values)]);
      expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it.each(CASES)('%s: helm template gives the objects `leafbridge manifests` gives', async (_, values, o) => {
    const rendered = yamlObjects(await render(...values));
    expect(rendered.map(modelProblems).filter(Boolean)).toEqual([]);
    expect(plain(rendered)).toEqual(plain(asChart(installManifests(builtinHandlers, o))));
  });

  it('externalHandlers: the agent config and mount of `--external-handlers`; the CRDs of crds/ as they are', async () => {
    const o = { externalHandlers: ['onvif', 'my-sensors'] };
    const rendered = yamlObjects(await render(o));
    expect(rendered.map(modelProblems).filter(Boolean)).toEqual([]);
    const isCrd = (x: KubeManifest) => x.kind === 'CustomResourceDefinition';
    // Helm does not template crds/: the CRDs naming the handlers come from `leafbridge manifests --crds-only`.
    const expected = [
      ...installManifests(builtinHandlers).filter(isCrd),
      ...installManifests(builtinHandlers, o).filter((x) => !isCrd(x)),
    ];
    expect(plain(rendered)).toEqual(plain(asChart(expected)));
  });

  it("createNamespace: false leaves out only the install's Namespace (the brokers' one stays)", async () => {
    const rendered = yamlObjects(await render({ createNamespace: false }));
    const expected = asChart(
      installManifests(builtinHandlers).filter(
        (x) => x.kind !== 'Namespace' || x.metadata.name === DEFAULT_BROKER_NAMESPACE,
      ),
    );
    expect(plain(rendered)).toEqual(plain(expected));
  });

  it.each([
    ['an unknown handler', { handlers: ['zigbee'] }, 'handlers'],
    ['no handler', { handlers: [] }, 'handlers'],
    ['a namespace that is no DNS label', { namespace: 'Leaf_Bridge' }, 'namespace'],
    ['an external handler name the agent refuses', { externalHandlers: ['-bad'] }, 'externalHandlers'],
    ['a relative device-plugin directory', { devicePluginDir: 'kubelet/device-plugins' }, 'devicePluginDir'],
    ['an upstream that is no MQTT URL', { upstream: 'http://cloud' }, 'upstream'],
    ['the hub without a broker', { hub: { enabled: true } }, 'brokerUrl'],
    ['0 hub replicas', { hub: { enabled: true, brokerUrl: 'mqtt://b', replicas: 0 } }, 'replicas'],
    ['a misspelt value', { nodeSelecter: { a: 'b' } }, 'nodeSelecter'],
  ])('refuses %s, as the code refuses the option', async (_, values, where) => {
    await expect(render(values)).rejects.toThrow(
      new RegExp(`values don't meet the specifications[\\s\\S]*${where}`),
    );
  });

  it('helm install, upgrade to the MicroK8s paths, uninstall: on the real API server', async () => {
    cp = await ControlPlane.start();
    const kubeconfig = ['--kubeconfig', cp.adminKubeconfig];
    // No kubelet runs here: wait for nothing but hooks (there are none), as Helm 4 does by default.
    await helm(['install', 'leafbridge', CHART, '--wait=hookOnly', ...kubeconfig]);
    const daemonSet = async () =>
      JSON.parse(
        await cp!.kubectl(['-n', 'leafbridge', 'get', 'daemonset', 'leafbridge-agent', '-o', 'json']),
      ) as {
        spec: { template: { spec: { volumes: { name: string; hostPath?: { path: string } }[] } } };
      };
    const pluginDir = async () =>
      (await daemonSet()).spec.template.spec.volumes.find((v) => v.name === 'device-plugins')?.hostPath?.path;
    expect(await pluginDir()).toBe('/var/lib/kubelet/device-plugins');
    await cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/devices.leafbridge.io']);

    await helm(['upgrade', 'leafbridge', CHART, '-f', join(CHART, 'values-microk8s.yaml'), ...kubeconfig]);
    expect(await pluginDir()).toBe(DISTRIBUTIONS.microk8s.devicePluginDir);

    await helm(['uninstall', 'leafbridge', ...kubeconfig]);
    // Helm keeps the CRDs of crds/ and the Namespace (and with them every Device and DiscoveryConfig); the
    // rest is gone.
    expect(await cp.kubectl(['get', 'crd', '-o', 'name'])).toMatch(/devices\.leafbridge\.io/);
    expect(await cp.kubectl(['get', 'namespace', 'leafbridge', '-o', 'jsonpath={.status.phase}'])).toBe(
      'Active',
    );
    expect(
      await cp.kubectl(['-n', 'leafbridge', 'get', 'daemonset,deployment,configmap', '-o', 'name']),
    ).not.toMatch(/leafbridge-/);
    expect(
      await cp.kubectl(['get', 'clusterrole', '-l', 'app.kubernetes.io/part-of=leafbridge', '-o', 'name']),
    ).toBe('');
  });

  it.each([
    ['the default values', []],
    ...Object.keys(DISTRIBUTIONS).map((d) => [`values-${d}.yaml`, [join(CHART, `values-${d}.yaml`)]]),
  ] as [string, string[]][])(
    'the chart rendered with %s is applied by the real API server',
    async (_, values) => {
      cp ??= await ControlPlane.start();
      const out = await cp.kubectl(['apply', '-f', '-'], await render(...values));
      expect(out).toMatch(/daemonset\.apps\/leafbridge-agent (created|configured|unchanged)/);
    },
  );

  it.each([
    'base',
    'overlays/agent-only',
    'overlays/cloud',
    'overlays/dev',
    'overlays/k3s',
    'overlays/microk8s',
  ])('deploy/%s is applied by the real API server', async (dir) => {
    cp ??= await ControlPlane.start();
    const out = await cp.kubectl(['apply', '-k', join(ROOT, 'deploy', dir)]);
    expect(out).toMatch(/daemonset\.apps\/leafbridge-agent (created|configured|unchanged)/);
  });
});
