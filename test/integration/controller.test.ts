import { afterEach, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { BrokerController, type BrokerControllerOptions } from '../../src/controller/brokerController.js';
import { configServiceName, deviceServiceName } from '../../src/controller/brokerSpec.js';
import { crdManifests } from '../../src/install/crds.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { kubeClients } from '../helpers/kubeClient.js';
import type { KubeObject } from '../helpers/kubeStore.js';
import { until } from '../helpers/wait.js';

/**
 * The broker controller, in-process, against the test API server (it speaks the Kubernetes REST and watch
 * protocol, with owner-reference garbage collection; no real kube-apiserver, scheduler or kubelet runs in
 * these tests). Nodes, DiscoveryConfigs and Devices are seeded straight into the server's storage, as the
 * agents and kubelets would write them; a test plays the scheduler and kubelet by writing a pod's
 * `spec.nodeName` and `status.phase`.
 */

const NS = 'default';
/** Broker objects live in the controller's broker namespace (Pod Security restricted), not beside the Devices. */
const BROKERS = 'leafbridge-brokers';
const BROKER_PLURALS = ['pods', 'jobs', 'services'];
const MERGE = 'application/merge-patch+json';
const RESOURCE = (device: string) => `leafbridge.io/${device}`;

let api: KubeApiServer | undefined;
let controller: BrokerController | undefined;

afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await api?.close();
  api = undefined;
});

interface Setup {
  /** false: the garbage collector never runs, so deletions seen are the controller's own. */
  gc?: boolean;
  nodes?: string[];
  options?: Partial<BrokerControllerOptions>;
}

async function start(s: Setup = {}): Promise<KubeApiServer> {
  const server = await KubeApiServer.start({
    crds: crdManifests(builtinHandlers),
    bookmarkIntervalMs: 200,
    ...(s.gc === false ? { gcDelayMs: 3_600_000 } : {}),
  });
  api = server;
  for (const name of s.nodes ?? ['n1', 'n2']) seedNode(name);
  await startController(s.options);
  return server;
}

async function startController(options: Partial<BrokerControllerOptions> = {}): Promise<void> {
  controller = new BrokerController({
    kubeConfig: kubeClients(server()).kc,
    namespace: NS,
    logger: process.env.CTRL_DEBUG ? createLogger({ level: 'debug' }) : silentLogger(),
    backoff: { baseMs: 50, maxMs: 500 },
    restartBackoff: { baseMs: 200, maxMs: 1000 },
    ...options,
  });
  controller.start();
  await controller.ready;
}

function server(): KubeApiServer {
  if (!api) throw new Error('no test API server');
  return api;
}

function seedNode(name: string, ready = 'True'): void {
  server().seed('nodes', {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    status: { conditions: [{ type: 'Ready', status: ready, lastTransitionTime: new Date().toISOString() }] },
  });
}

function setNodeReady(name: string, status: string): void {
  const conditions = [{ type: 'Ready', status, lastTransitionTime: new Date().toISOString() }];
  patch('nodes', undefined, name, { status: { conditions } }, true);
}

function patch(plural: string, ns: string | undefined, name: string, body: object, status = false): void {
  const s = server();
  s.resources.patch(s.type(plural), ns, name, MERGE, body, status ? { subresource: 'status' } : {});
}

function remove(plural: string, name: string): void {
  const s = server();
  const t = s.type(plural);
  s.resources.delete(t, t.namespaced ? NS : undefined, name, {});
}

const POD_SPEC = {
  containers: [
    { name: 'broker', image: 'example/broker:1' },
    { name: 'sidecar', image: 'example/sidecar:1' },
  ],
};

function seedConfig(name: string, spec: Record<string, unknown>): KubeObject {
  return server().seed('discoveryconfigs', {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name, namespace: NS },
    spec: { handler: { name: 'debug-echo', details: { devices: [{ id: 'x' }] } }, capacity: 1, ...spec },
  });
}

/** A Device as the agents write it: spec through the main resource, then `online` through /status. */
function seedDevice(name: string, config: string, nodes: string[], online = nodes.length > 0): KubeObject {
  const o = server().seed('devices', {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'Device',
    metadata: { name, namespace: NS, labels: { 'leafbridge.io/config': config } },
    spec: {
      id: name,
      configName: config,
      handler: 'debug-echo',
      shared: true,
      nodes,
      capacity: 1,
      properties: {},
    },
  });
  setDeviceStatus(name, online);
  return o;
}

function setDeviceStatus(name: string, online: boolean): void {
  patch(
    'devices',
    NS,
    name,
    { status: { online, lastSeen: new Date().toISOString(), conditions: [] } },
    true,
  );
}

const nsOf = (plural: string) =>
  plural === 'nodes' ? undefined : BROKER_PLURALS.includes(plural) ? BROKERS : NS;
const get = (plural: string, name: string) => server().object(plural, nsOf(plural), name);
const pods = () => server().objects('pods', BROKERS);
const nodesOf = (device: string) => (get('devices', device)?.spec as { nodes?: string[] } | undefined)?.nodes;

async function waitFor<T>(what: string, find: () => T | undefined, ms = 10_000): Promise<T> {
  let found: T | undefined;
  await until(
    () => {
      found = find();
      return found !== undefined;
    },
    ms,
    what,
  );
  return found as T;
}

/** Plays scheduler and kubelet: the pod lands on `node` and reaches `phase`. */
function runPod(name: string, node: string, phase = 'Running'): void {
  patch('pods', BROKERS, name, { spec: { nodeName: node } });
  patch('pods', BROKERS, name, { status: { phase } }, true);
}

function brokersReady(config: string) {
  const status = get('discoveryconfigs', config)?.status as
    | { brokers?: { wanted: number; running: number }; conditions?: Record<string, unknown>[] }
    | undefined;
  const condition = status?.conditions?.find((c) => c.type === 'BrokersReady');
  return { brokers: status?.brokers, condition, conditions: status?.conditions ?? [] };
}

/** The node selector term that allows a pod onto one node (the API server takes one node name per term). */
const onNode = (node: string) => ({
  matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }],
});
const termsOf = (spec: PodLike['spec']) =>
  spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;

type PodLike = {
  metadata: KubeObject['metadata'];
  spec: {
    affinity: {
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: unknown[] } };
    };
    containers: { name: string; resources?: { limits?: Record<string, string> } }[];
  };
};

describe('broker controller (test API server, controller in-process)', () => {
  it('gives a Device its broker Pod (node affinity, device resource, owner labels) and both Services, in the broker namespace', async () => {
    await start();
    const config = seedConfig('cams', {
      brokerPodSpec: {
        ...POD_SPEC,
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [{ matchExpressions: [{ key: 'arch', operator: 'In', values: ['arm64'] }] }],
            },
          },
        },
      },
      deviceService: { ports: [{ port: 80, targetPort: 8080 }] },
      configService: { ports: [{ name: 'mqtt', port: 1883 }] },
    });
    const device = seedDevice('cams-aaaaaa', 'cams', ['n1', 'n2']);

    const pod = (await waitFor('the broker pod', () => get('pods', 'cams-aaaaaa-pod'))) as unknown as PodLike;
    // No owner reference (the Device is in another namespace): labels and an annotation name it.
    expect(pod.metadata.labels).toEqual({
      'leafbridge.io/config': 'cams',
      'leafbridge.io/device': 'cams-aaaaaa',
      'leafbridge.io/broker': 'pod',
      'leafbridge.io/namespace': NS,
      'leafbridge.io/uid': device.metadata.uid,
    });
    expect(pod.metadata.annotations?.['leafbridge.io/owner']).toBe('Device/cams-aaaaaa');
    expect(pod.metadata.ownerReferences).toBeUndefined();
    // The config's own term is kept, once per node the device is seen by, that node ANDed into it.
    const arm64 = { matchExpressions: [{ key: 'arch', operator: 'In', values: ['arm64'] }] };
    expect(
      pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms,
    ).toEqual([
      { ...arm64, ...onNode('n1') },
      { ...arm64, ...onNode('n2') },
    ]);
    // One slot per pod: the first container holds the device, the sidecar nothing.
    expect(pod.spec.containers[0]?.resources?.limits).toEqual({ [RESOURCE('cams-aaaaaa')]: '1' });
    expect(pod.spec.containers[1]?.resources).toBeUndefined();

    const svc = await waitFor('the device service', () => get('services', 'cams-aaaaaa-svc'));
    expect(svc.spec).toMatchObject({
      type: 'ClusterIP',
      selector: {
        'leafbridge.io/namespace': NS,
        'leafbridge.io/device': 'cams-aaaaaa',
        'leafbridge.io/broker': 'pod',
      },
      ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }],
    });
    expect(svc.metadata.labels?.['leafbridge.io/uid']).toBe(device.metadata.uid);
    const configSvc = await waitFor('the config service', () => get('services', 'cams-svc'));
    expect(configSvc.spec).toMatchObject({
      selector: {
        'leafbridge.io/namespace': NS,
        'leafbridge.io/config': 'cams',
        'leafbridge.io/broker': 'pod',
      },
      ports: [{ name: 'mqtt', port: 1883, targetPort: 1883, protocol: 'TCP' }],
    });
    expect(configSvc.metadata.annotations?.['leafbridge.io/owner']).toBe('DiscoveryConfig/cams');
    expect(configSvc.metadata.labels?.['leafbridge.io/uid']).toBe(config.metadata.uid);

    // Ports changed: the Service follows.
    patch('discoveryconfigs', NS, 'cams', { spec: { deviceService: { ports: [{ port: 81 }] } } });
    await until(
      () =>
        (get('services', 'cams-aaaaaa-svc')?.spec as { ports: { port: number }[] } | undefined)?.ports[0]
          ?.port === 81,
      10_000,
      'the device service on port 81',
    );
  });

  it('gives a device seen by two nodes its broker Pod and Job: one node selector term per node', async () => {
    await start();
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    seedConfig('plcs', {
      brokerJobSpec: {
        template: { spec: { restartPolicy: 'Never', containers: [{ name: 'flash', image: 'x' }] } },
      },
    });
    seedDevice('cams-aaaaaa', 'cams', ['n1', 'n2']);
    seedDevice('plcs-aaaaaa', 'plcs', ['n1', 'n2']);

    const pod = (await waitFor('the broker pod', () => get('pods', 'cams-aaaaaa-pod'))) as unknown as PodLike;
    expect(termsOf(pod.spec)).toEqual([onNode('n1'), onNode('n2')]);
    const job = await waitFor('the broker job', () => get('jobs', 'plcs-aaaaaa-job'));
    expect(termsOf((job.spec as { template: { spec: PodLike['spec'] } }).template.spec)).toEqual([
      onNode('n1'),
      onNode('n2'),
    ]);
    for (const config of ['cams', 'plcs']) {
      await until(
        () => brokersReady(config).condition?.message?.toString().startsWith('0 of 1 broker') === true,
        10_000,
        `${config}: one broker wanted, none rejected`,
      );
    }
  });

  it('names the Services of a config whose name starts with a digit as DNS-1035 labels, and deletes them (garbage collector off)', async () => {
    await start({ gc: false });
    seedConfig('1cams', {
      brokerPodSpec: POD_SPEC,
      deviceService: { ports: [{ port: 80 }] },
      configService: { ports: [{ port: 1883 }] },
    });
    seedDevice('1cams-aaaaaa', '1cams', ['n1']);
    const names = await waitFor('both services', () => {
      const found = server().objects('services', BROKERS);
      return found.length === 2 ? found.map((o) => o.metadata.name).sort() : undefined;
    });
    expect(names).toEqual([configServiceName('1cams'), deviceServiceName('1cams-aaaaaa')].sort());
    for (const name of names) expect(name).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    await waitFor('the broker pod', () => get('pods', '1cams-aaaaaa-pod'));
    await until(
      () => brokersReady('1cams').condition?.reason === 'BrokersNotRunning',
      10_000,
      'the config’s condition, no Service rejected',
    );

    remove('devices', '1cams-aaaaaa');
    await until(() => !get('services', deviceServiceName('1cams-aaaaaa')), 10_000, 'the device service gone');
    remove('discoveryconfigs', '1cams');
    await until(() => server().objects('services', BROKERS).length === 0, 10_000, 'the config service gone');
  });

  it('deletes the Pod and Services itself when the Device or config goes (garbage collector off)', async () => {
    await start({ gc: false });
    seedConfig('cams', {
      brokerPodSpec: POD_SPEC,
      deviceService: { ports: [{ port: 80 }] },
      configService: { ports: [{ port: 1883 }] },
    });
    seedDevice('cams-aaaaaa', 'cams', ['n1']);
    seedDevice('cams-bbbbbb', 'cams', ['n2']);
    await waitFor('both pods and three services', () =>
      pods().length === 2 && server().objects('services', BROKERS).length === 3 ? true : undefined,
    );

    remove('devices', 'cams-aaaaaa');
    await until(
      () => !get('pods', 'cams-aaaaaa-pod') && !get('services', 'cams-aaaaaa-svc'),
      10_000,
      'the deleted device’s pod and service gone',
    );
    expect(get('pods', 'cams-bbbbbb-pod')).toBeDefined();

    // The config drops its broker: the other device's pod and services go too.
    patch('discoveryconfigs', NS, 'cams', { spec: { brokerPodSpec: null } });
    await until(
      () => pods().length === 0 && server().objects('services', BROKERS).length === 0,
      10_000,
      'every broker object gone',
    );
    // The config's status is written after its Service is deleted: wait for it too.
    await until(
      () => brokersReady('cams').condition === undefined && brokersReady('cams').brokers === undefined,
      10_000,
      'the BrokersReady condition and broker counts removed',
    );
  });

  it('deletes the config Service when the config is deleted', async () => {
    await start({ gc: false });
    seedConfig('cams', { brokerPodSpec: POD_SPEC, configService: { ports: [{ port: 1883 }] } });
    await waitFor('the config service', () => get('services', 'cams-svc'));
    remove('discoveryconfigs', 'cams');
    await until(() => !get('services', 'cams-svc'), 10_000, 'the config service gone');
  });

  it('replaces a Failed pod, and one whose node no longer sees the device', async () => {
    await start();
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    seedDevice('cams-aaaaaa', 'cams', ['n1', 'n2']);
    const first = await waitFor('the pod', () => get('pods', 'cams-aaaaaa-pod'));
    runPod('cams-aaaaaa-pod', 'n1');
    patch('pods', BROKERS, 'cams-aaaaaa-pod', { status: { phase: 'Failed' } }, true);
    const second = await waitFor('a new pod', () => {
      const p = get('pods', 'cams-aaaaaa-pod');
      return p && p.metadata.uid !== first.metadata.uid ? p : undefined;
    });
    expect(second.status).toBeUndefined(); // a fresh pod, not the failed one

    // It runs on n1; then only n2 sees the device: the pod moves, its affinity now n2 only.
    runPod('cams-aaaaaa-pod', 'n1');
    patch('devices', NS, 'cams-aaaaaa', { spec: { nodes: ['n2'] } });
    const third = (await waitFor('a pod for n2', () => {
      const p = get('pods', 'cams-aaaaaa-pod');
      return p && p.metadata.uid !== second.metadata.uid ? p : undefined;
    })) as unknown as PodLike;
    expect(termsOf(third.spec)).toEqual([onNode('n2')]);
  });

  it('spaces out replacements of a pod that fails again and again (no hot loop)', async () => {
    await start({ options: { restartBackoff: { baseMs: 1000, maxMs: 4000 } } });
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    seedDevice('cams-aaaaaa', 'cams', ['n1']);
    const uids = new Set<string>();
    const started = Date.now();
    while (Date.now() - started < 3500) {
      const p = get('pods', 'cams-aaaaaa-pod');
      if (p && !uids.has(p.metadata.uid) && !p.metadata.deletionTimestamp) {
        uids.add(p.metadata.uid);
        patch('pods', BROKERS, p.metadata.name, { status: { phase: 'Failed' } }, true); // fails at admission
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    // At once, then after 1 s, then after 2 s: three or four pods in 3.5 s, not hundreds.
    expect(uids.size).toBeGreaterThanOrEqual(3);
    expect(uids.size).toBeLessThanOrEqual(4);
  });

  it('replaces a pod Pending past the pending timeout', async () => {
    await start({ options: { pendingTimeoutMs: 1500 } });
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    seedDevice('cams-aaaaaa', 'cams', ['n1']);
    const first = await waitFor('the pod', () => get('pods', 'cams-aaaaaa-pod'));
    patch('pods', BROKERS, 'cams-aaaaaa-pod', { status: { phase: 'Pending' } }, true);
    const t0 = Date.now();
    const second = await waitFor('a new pod', () => {
      const p = get('pods', 'cams-aaaaaa-pod');
      return p && p.metadata.uid !== first.metadata.uid ? p : undefined;
    });
    expect(Date.now() - t0).toBeGreaterThan(200); // not at once: the API server stamps whole seconds
    // A running pod stays.
    runPod(second.metadata.name, 'n1');
    await new Promise((r) => setTimeout(r, 2000));
    expect(get('pods', 'cams-aaaaaa-pod')?.metadata.uid).toBe(second.metadata.uid);
  });

  it('takes a node NotReady past its grace out of Devices, moves the broker, and a deleted node at once', async () => {
    await start({ options: { nodeGraceMs: 1000 } });
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    seedDevice('cams-aaaaaa', 'cams', ['n1', 'n2']);
    const first = await waitFor('the pod', () => get('pods', 'cams-aaaaaa-pod'));
    runPod('cams-aaaaaa-pod', 'n1');

    setNodeReady('n1', 'Unknown');
    await new Promise((r) => setTimeout(r, 500));
    expect(nodesOf('cams-aaaaaa')).toEqual(['n1', 'n2']); // within grace
    await until(() => nodesOf('cams-aaaaaa')?.join() === 'n2', 10_000, 'n1 out of the device');
    const moved = await waitFor('a pod for n2', () => {
      const p = get('pods', 'cams-aaaaaa-pod');
      return p && p.metadata.uid !== first.metadata.uid ? (p as unknown as PodLike) : undefined;
    });
    expect(moved.metadata.annotations?.['leafbridge.io/nodes']).toBe('n2');
    expect(get('devices', 'cams-aaaaaa')?.status).toMatchObject({ online: true });

    // n2 is deleted: no node is left, the device is offline (as an agent would mark it), its pod kept.
    remove('nodes', 'n2');
    await until(
      () => (get('devices', 'cams-aaaaaa')?.status as { online?: boolean } | undefined)?.online === false,
      10_000,
      'the device offline',
    );
    const device = get('devices', 'cams-aaaaaa') as KubeObject & {
      spec: { nodes: string[] };
      status: { conditions: { type: string; status: string; reason: string }[] };
    };
    expect(device.spec.nodes).toEqual([]);
    expect(device.status.conditions).toContainEqual(
      expect.objectContaining({ type: 'Online', status: 'False', reason: 'NodesLost' }),
    );
    expect(get('pods', 'cams-aaaaaa-pod')?.metadata.uid).toBe(moved.metadata.uid);
  });

  it('runs a Job for brokerJobSpec, leaves a finished one, and replaces it when the spec changes', async () => {
    await start();
    const jobSpec = (image: string) => ({
      backoffLimit: 2,
      template: {
        metadata: { labels: { app: 'flash' } },
        spec: { restartPolicy: 'Never', containers: [{ name: 'flash', image }] },
      },
    });
    seedConfig('plcs', { brokerJobSpec: jobSpec('example/flash:1') });
    seedDevice('plcs-aaaaaa', 'plcs', ['n1']);
    const job = await waitFor('the job', () => get('jobs', 'plcs-aaaaaa-job'));
    const template = (job.spec as { template: { metadata: { labels: object }; spec: PodLike['spec'] } })
      .template;
    expect(template.metadata.labels).toMatchObject({
      app: 'flash',
      'leafbridge.io/config': 'plcs',
      'leafbridge.io/device': 'plcs-aaaaaa',
      'leafbridge.io/broker': 'pod',
      'leafbridge.io/namespace': NS,
    });
    expect(template.spec.containers[0]?.resources?.limits).toEqual({ [RESOURCE('plcs-aaaaaa')]: '1' });
    expect(job.metadata.labels?.['leafbridge.io/broker']).toBe('job');
    expect(get('pods', 'plcs-aaaaaa-pod')).toBeUndefined();

    // The Job controller's part: it completes.
    patch(
      'jobs',
      BROKERS,
      'plcs-aaaaaa-job',
      { status: { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] } },
      true,
    );
    await until(
      () => brokersReady('plcs').condition?.message === '1 of 1 broker jobs running or complete',
      10_000,
      'the complete job counted',
    );
    expect(brokersReady('plcs').condition?.status).toBe('True');
    await new Promise((r) => setTimeout(r, 500));
    expect(get('jobs', 'plcs-aaaaaa-job')?.metadata.uid).toBe(job.metadata.uid); // not made again

    patch('discoveryconfigs', NS, 'plcs', { spec: { brokerJobSpec: jobSpec('example/flash:2') } });
    const next = await waitFor('a new job', () => {
      const j = get('jobs', 'plcs-aaaaaa-job');
      return j && j.metadata.uid !== job.metadata.uid ? j : undefined;
    });
    expect(JSON.stringify(next.spec)).toContain('example/flash:2');
  });

  it('reports a malformed brokerPodSpec as BrokersReady=False InvalidBrokerSpec; other configs go on', async () => {
    await start();
    seedConfig('bad', { brokerPodSpec: { containers: [] } });
    seedConfig('good', { brokerPodSpec: POD_SPEC });
    seedDevice('bad-aaaaaa', 'bad', ['n1']);
    seedDevice('good-aaaaaa', 'good', ['n1']);
    await waitFor('the good config’s pod', () => get('pods', 'good-aaaaaa-pod'));
    await until(() => brokersReady('bad').condition !== undefined, 10_000, 'the bad config’s condition');
    expect(brokersReady('bad').condition).toMatchObject({
      status: 'False',
      reason: 'InvalidBrokerSpec',
      message: 'spec.brokerPodSpec.containers: must list at least one container',
    });
    expect(get('pods', 'bad-aaaaaa-pod')).toBeUndefined();

    // Fixed: the broker comes, the condition follows.
    patch('discoveryconfigs', NS, 'bad', { spec: { brokerPodSpec: POD_SPEC } });
    await waitFor('the fixed config’s pod', () => get('pods', 'bad-aaaaaa-pod'));
    await until(
      () => brokersReady('bad').condition?.reason !== 'InvalidBrokerSpec',
      10_000,
      'condition updated',
    );
  });

  it('counts brokers in the config status, keeps the agents’ conditions, and reports a refused create', async () => {
    const s = await start({ options: { resyncMs: 1000 } });
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    // The agents' condition, written before the controller's.
    const valid = {
      type: 'Valid',
      status: 'True',
      reason: 'Accepted',
      message: 'ok',
      lastTransitionTime: '2024-01-01T00:00:00Z',
    };
    patch('discoveryconfigs', NS, 'cams', { status: { conditions: [valid], devices: 3 } }, true);
    seedDevice('cams-aaaaaa', 'cams', ['n1']);
    seedDevice('cams-bbbbbb', 'cams', ['n2']);
    seedDevice('cams-cccccc', 'cams', [], false); // offline: no broker wanted
    await waitFor('two pods', () => (pods().length === 2 ? true : undefined));
    runPod('cams-aaaaaa-pod', 'n1');
    await until(() => brokersReady('cams').brokers?.running === 1, 10_000, 'one running');
    expect(brokersReady('cams').brokers).toEqual({ wanted: 2, running: 1 });
    expect(brokersReady('cams').condition).toMatchObject({
      status: 'False',
      reason: 'BrokersNotRunning',
      message: '1 of 2 broker pods running',
    });
    runPod('cams-bbbbbb-pod', 'n2');
    await until(() => brokersReady('cams').condition?.status === 'True', 10_000, 'all running');
    expect(brokersReady('cams').condition?.message).toBe('2 of 2 broker pods running');
    expect(brokersReady('cams').conditions).toContainEqual(valid);
    expect((get('discoveryconfigs', 'cams')?.status as { devices?: number } | undefined)?.devices).toBe(3);
    // Converged: resyncs every second, and not one write.
    const writes = s.writes();
    await new Promise((r) => setTimeout(r, 1500));
    expect(s.writes()).toBe(writes);

    // A create the API server refuses (422) is reported, and tried again at the next resync.
    s.failNext(1, 422, { verb: 'create', resource: 'pods' });
    seedDevice('cams-dddddd', 'cams', ['n1']);
    await until(() => brokersReady('cams').condition?.reason === 'BrokerRejected', 10_000, 'BrokerRejected');
    expect(brokersReady('cams').condition?.message).toMatch(/^cams-dddddd: /);
    await waitFor('the pod after the resync', () => get('pods', 'cams-dddddd-pod'));
    await until(
      () => brokersReady('cams').condition?.reason === 'BrokersNotRunning',
      10_000,
      'problem cleared',
    );
  });

  it('catches up after the API server was down (no crash, converges)', async () => {
    const s = await start({ gc: false });
    seedConfig('cams', { brokerPodSpec: POD_SPEC });
    seedDevice('cams-aaaaaa', 'cams', ['n1']);
    await waitFor('the first pod', () => get('pods', 'cams-aaaaaa-pod'));

    await s.down();
    // Changes while the controller cannot see them: a new device, a deleted one.
    seedDevice('cams-bbbbbb', 'cams', ['n2']);
    remove('devices', 'cams-aaaaaa');
    await new Promise((r) => setTimeout(r, 1500));
    s.failNext(3, 503); // and a few refusals as it comes back
    await s.up();

    await waitFor('the new device’s pod', () => get('pods', 'cams-bbbbbb-pod'), 20_000);
    await until(() => !get('pods', 'cams-aaaaaa-pod'), 20_000, 'the deleted device’s pod gone');
    await until(() => brokersReady('cams').brokers?.wanted === 1, 20_000, 'status caught up');
  });
});
