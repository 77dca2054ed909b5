import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Agent } from '../../src/agent.js';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { parseConfig } from '../../src/config/load.js';
import {
  DISTRIBUTIONS,
  EXAMPLE_CLOUD_BROKER,
  type InstallOptions,
  installManifests,
  type KubeManifest,
} from '../../src/install/manifests.js';
import { silentLogger } from '../../src/util/logger.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { cameraName, NS, TestCluster } from '../helpers/cluster.js';
import { byKey, grantedTriples, modelProblems, rbacAllows, yamlObjects } from '../helpers/kubeManifests.js';
import { ROOT, tempDir } from '../helpers/processes.js';
import { TestKubelet } from '../helpers/testKubelet.js';
import { until } from '../helpers/wait.js';

/**
 * deploy/ rendered by kubectl's own kustomize, compared object by object with what the code builds for the
 * same options; the Dockerfile checked against the tree; and the agent run against the test API server to
 * see that its RBAC allows every request it makes. KUBECTL picks the binary (default: kubectl on PATH);
 * scripts/install-test-deps.sh installs one where there is none.
 */

const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const kubectlFound = spawnSync(KUBECTL, ['version', '--client'], { encoding: 'utf8' }).status === 0;
if (!kubectlFound) {
  const message = `${KUBECTL} not found: deploy/ is not rendered (scripts/install-test-deps.sh installs it)`;
  // CI runs the install script first: there a missing kubectl is a failure, not a skip.
  if (process.env.CI) throw new Error(message);
  console.warn(`SKIPPED: ${message}`);
}

/** The overlays and the `leafbridge manifests` options each must equal. */
const RENDERINGS: [string, Partial<InstallOptions>][] = [
  ['base', {}],
  ['overlays/agent-only', { controller: false }],
  [
    'overlays/cloud',
    { upstream: EXAMPLE_CLOUD_BROKER, hub: { brokerUrl: EXAMPLE_CLOUD_BROKER, replicas: 2 } },
  ],
  ['overlays/dev', { image: 'leafbridge:dev' }],
  ['overlays/k3s', DISTRIBUTIONS.k3s],
  ['overlays/microk8s', DISTRIBUTIONS.microk8s],
];

function kustomize(dir: string): KubeManifest[] {
  const out = execFileSync(KUBECTL, ['kustomize', join(ROOT, 'deploy', dir)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return yamlObjects(out);
}

/** What kustomize adds without meaning anything (kubectl 1.20's writes `annotations: {}`). */
function normalize(o: KubeManifest): KubeManifest {
  const copy = JSON.parse(JSON.stringify(o)) as KubeManifest;
  if (copy.metadata.annotations && Object.keys(copy.metadata.annotations).length === 0)
    delete copy.metadata.annotations;
  return copy;
}

describe.skipIf(!kubectlFound)(`deploy/ rendered by ${KUBECTL} kustomize`, () => {
  it.each(RENDERINGS)('deploy/%s is what `leafbridge manifests` gives for %j', (dir, options) => {
    const rendered = kustomize(dir);
    expect(rendered.map(modelProblems).filter(Boolean)).toEqual([]);
    const expected = installManifests(builtinHandlers, options);
    expect(byKey(rendered.map(normalize))).toEqual(byKey(expected.map(normalize)));
  });
});

describe('deploy/ kustomizations stay within what kubectl 1.20 (kustomize v2.0.3) reads', () => {
  // No `components`, `labels`, `replacements`, `patches`; directories only under `bases`.
  const V2_FIELDS = [
    'apiVersion',
    'kind',
    'bases',
    'resources',
    'namespace',
    'namePrefix',
    'nameSuffix',
    'commonLabels',
    'commonAnnotations',
    'images',
    'patchesStrategicMerge',
    'patchesJson6902',
    'configMapGenerator',
    'secretGenerator',
    'generatorOptions',
  ];
  const kustomizations = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? kustomizations(join(dir, e.name))
        : e.name === 'kustomization.yaml'
          ? [join(dir, e.name)]
          : [],
    );
  const files = kustomizations(join(ROOT, 'deploy'));

  it.each(files.map((f) => [f.slice(ROOT.length + 1), f]))('%s', (_, file) => {
    const k = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(k).filter((key) => !V2_FIELDS.includes(key))).toEqual([]);
    const dir = join(file, '..');
    for (const r of (k.resources ?? []) as string[]) expect(statSync(join(dir, r)).isFile(), r).toBe(true);
    for (const b of (k.bases ?? []) as string[]) expect(statSync(join(dir, b)).isDirectory(), b).toBe(true);
  });

  it('every overlay is rendered by the test above', () => {
    const overlays = readdirSync(join(ROOT, 'deploy/overlays')).map((d) => `overlays/${d}`);
    expect(RENDERINGS.map(([d]) => d).sort()).toEqual(['base', ...overlays].sort());
  });
});

describe('Dockerfile (no docker engine here: checked against the tree, not built)', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#'));
  const stages = lines.map((l, i) => [l, i] as const).filter(([l]) => /^FROM\s/i.test(l));
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('two stages: a build with dev dependencies, a node:20-bookworm-slim runtime with production ones', () => {
    expect(stages).toHaveLength(2);
    expect(text).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(stages[0]![0]).toMatch(/^FROM \$\{NODE_IMAGE\} AS build$/);
    expect(stages[1]![0]).toMatch(/^FROM \$\{NODE_IMAGE\}$/);
    const build = lines.slice(stages[0]![1], stages[1]![1]).join('\n');
    expect(build).toMatch(/npm ci --ignore-scripts/);
    expect(build).toMatch(/npm rebuild better-sqlite3 @serialport\/bindings-cpp/);
    expect(build).toMatch(/npm run build/);
    expect(build).toMatch(/npm prune --omit=dev/);
  });

  it('every COPY from the context names something that exists and that .dockerignore lets through', () => {
    const sources = lines
      .filter((l) => /^COPY\s/i.test(l) && !/--from=/.test(l))
      .flatMap((l) => l.trim().split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(5);
    for (const s of sources) {
      expect(existsSync(join(ROOT, s)), s).toBe(true);
      expect(ignored, `${s} is in .dockerignore`).not.toContain(s.replace(/^\.\//, ''));
    }
    // What `npm run build` compiles (tsconfig.build.json) must all be copied in.
    const include = (
      JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
    ).include;
    expect(include.filter((d) => d !== 'bench' && !sources.includes(d))).toEqual([]);
  });

  it('the runtime runs bin/leafbridge (which runs bin/leafbridge.js) as a non-root user, with the compiled code it imports', () => {
    const runtime = lines.slice(stages[1]![1]).join('\n');
    expect(runtime).toMatch(/^USER 65532:65532$/m);
    expect(runtime).toMatch(/^ENTRYPOINT \["\/app\/bin\/leafbridge"\]$/m);
    expect(readFileSync(join(ROOT, 'bin/leafbridge'), 'utf8')).toContain('"$here/leafbridge.js"');
    const bin = readFileSync(join(ROOT, 'bin/leafbridge.js'), 'utf8');
    for (const imported of ["'../dist/src/cli/main.js'", "'../dist/src/cli/runtime.js'"])
      expect(bin).toContain(imported);
    for (const path of ['dist', 'bin', 'node_modules', 'package.json'])
      expect(runtime).toContain(`COPY --from=build /app/${path} ./${path}`);
  });
});

// ------------------------------------------------------------------------- the agent's RBAC at work

let cluster: TestCluster | undefined;
const agents: Agent[] = [];
const dirs: { remove(): void }[] = [];
let kubelet: TestKubelet | undefined;

afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  await kubelet?.stop();
  kubelet = undefined;
  await cluster?.close();
  cluster = undefined;
  for (const d of dirs.splice(0)) d.remove();
});

/** An agent on `node`; on n1 with a test kubelet that has no PodResources socket (the pod-list fallback). */
async function startAgent(c: TestCluster, node: string): Promise<Agent> {
  const dir = tempDir(`lb-${node}-`);
  dirs.push(dir);
  const plugins = join(dir.path, 'device-plugins');
  if (node === 'n1') {
    mkdirSync(plugins);
    kubelet = new TestKubelet(plugins);
    await kubelet.start();
  }
  const config = agentConfig(dir.path, undefined, {
    node,
    kubernetes: c.api.writeKubeconfig(dir.path, NS),
    discovery: { gracePeriod: '1s' },
    ...(node === 'n1'
      ? {
          devicePlugins: {
            dir: plugins,
            podResources: join(dir.path, 'no-pod-resources.sock'),
            releaseInterval: '200ms',
          },
        }
      : {}),
  });
  const agent = new Agent(parseConfig(config), silentLogger());
  await agent.start();
  agents.push(agent);
  return agent;
}

describe("the agent's RBAC, against the requests a running agent makes", () => {
  it('every request of two agents (devices found, shared, lost, deleted; configs valid and not; a 409 on a Device and on a config status) is allowed, and every grant is used', async () => {
    const c = await TestCluster.start({ n1: { zone: 'a' }, n2: {} });
    cluster = c;
    c.api.seed('discoveryconfigs', c.cameras('cams', ['c1']));
    const bad = c.cameras('broken', ['c1'], { nodeSelector: { zone: 'a' } });
    (bad.spec.handler.details.devices[0] as { properties: Record<string, string> }).properties = {
      '1-not-an-env-name': 'x',
    };
    c.api.seed('discoveryconfigs', bad);
    c.see('n1', ['c1']);
    await startAgent(c, 'n1');
    await until(() => c.devices().has(cameraName('c1')), 10_000, 'the Device created');
    c.api.failNext(1, 409, { verb: 'update', resource: 'devices' }); // the second node's write conflicts
    c.see('n2', ['c1']);
    await startAgent(c, 'n2');
    const nodes = () => (c.devices().get(cameraName('c1'))?.spec as { nodes?: string[] } | undefined)?.nodes;
    await until(() => nodes()?.length === 2, 10_000, 'both nodes on the Device');
    // Another writer (the controller) changes the config's status between the agent's read and its next status
    // write: that write conflicts (409), and the agent reads the config again (get) and writes once more.
    c.api.beforeNext(
      { verb: 'patch', resource: 'discoveryconfigs', subresource: 'status', name: 'cams' },
      () => {
        c.api.resources.patch(
          c.api.type('discoveryconfigs'),
          NS,
          'cams',
          'application/merge-patch+json',
          { status: { brokers: { wanted: 0, running: 0 } } },
          { subresource: 'status' },
        );
      },
    );
    c.see('n1', []);
    c.see('n2', []);
    await until(() => c.devices().size === 0, 15_000, 'deleted after the grace period');
    const count = () =>
      (c.api.object('discoveryconfigs', NS, 'cams')?.status as { devices?: number } | undefined)?.devices;
    await until(() => count() === 0, 10_000, 'the config status written after the conflict');
    await until(() => c.api.requests({ resource: 'pods', verb: 'list' }).length > 0, 5000, 'pod list');

    const objects = installManifests(builtinHandlers, { namespace: NS });
    const requests = c.api
      .requests()
      .filter((r) => r.verb !== 'discovery' && r.resource !== undefined)
      .map((r) => ({
        group: r.group ?? '',
        resource: r.subresource ? `${r.resource}/${r.subresource}` : r.resource!,
        verb: r.verb,
        ...(r.namespace ? { namespace: r.namespace } : {}),
      }));
    const denied = requests.filter((r) => !rbacAllows(objects, 'leafbridge-agent', r));
    expect(denied).toEqual([]);
    const used = new Set(requests.map((r) => `${r.group}/${r.resource} ${r.verb}`));
    // Used only when someone calls the agent's API with a token, or a config names a Secret: these run
    // against the real API server in test/cluster/httpAuth.test.ts (the test server has no reviews).
    const elsewhere = [
      '/secrets get',
      'authentication.k8s.io/tokenreviews create',
      'authorization.k8s.io/subjectaccessreviews create',
    ];
    expect(
      grantedTriples(objects, 'leafbridge-agent').filter((t) => !used.has(t) && !elsewhere.includes(t)),
    ).toEqual([]);
  }, 60_000);
});
