import { mkdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type ContainerAllocateRequest,
  type ContainerAllocateResponse,
  unaryCall,
  unixAddress,
} from '../../src/deviceplugin/api.js';
import { DevicePluginError } from '../../src/deviceplugin/errors.js';
import { resourcesRequestedOnNode } from '../../src/deviceplugin/podList.js';
import {
  listPodResources,
  type PodResourcesList,
  podResourcesProto,
  slotsInUse,
} from '../../src/deviceplugin/podResources.js';
import { DevicePluginServer } from '../../src/deviceplugin/server.js';
import type { PluginDevice } from '../../src/deviceplugin/service.js';
import { KubeRest } from '../../src/kubeclient/kubeRest.js';
import { systemClock } from '../../src/util/clock.js';
import { LeafbridgeError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { kubeClients, within } from '../helpers/kubeClient.js';
import { tempDir } from '../helpers/processes.js';
import { AdmissionError, TestKubelet } from '../helpers/testKubelet.js';

const DOOR = 'leafbridge.io/front-door-1a2b3c';
const GPU = 'example.com/gpu';
const slot = (i: number) => `front-door-1a2b3c-${i}`;

/** The rejection of a promise that must fail. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('PodResources: the kubelet side (test kubelet) and the client, over the v1 gRPC API', () => {
  let dir: ReturnType<typeof tempDir>;
  let podResourcesSocket: string;
  let kubelet: TestKubelet;
  const devices = new Map<string, PluginDevice[]>();
  let allocate: (requests: readonly ContainerAllocateRequest[]) => ContainerAllocateResponse[];
  let allocated: { resource: string; requests: ContainerAllocateRequest[] }[];
  const plugins: DevicePluginServer[] = [];

  const startPlugin = async (resourceName: string, list: PluginDevice[]): Promise<DevicePluginServer> => {
    devices.set(resourceName, list);
    const plugin = new DevicePluginServer({
      dir: kubelet.dir,
      resourceName,
      logger: silentLogger(),
      clock: systemClock,
      listDevices: () => devices.get(resourceName) ?? [],
      allocate: (requests) => {
        allocated.push({ resource: resourceName, requests: [...requests] });
        return allocate(requests);
      },
    });
    plugins.push(plugin);
    await plugin.start();
    await kubelet.waitFor(
      () => (kubelet.devices(resourceName).length === list.length ? true : undefined),
      5000,
      `the device list of ${resourceName}`,
    );
    return plugin;
  };
  const list = () => listPodResources(podResourcesSocket, 2000);
  const healthy = (n: number): PluginDevice[] =>
    Array.from({ length: n }, (_, i) => ({ id: slot(i), health: 'Healthy' }));

  beforeEach(async () => {
    dir = tempDir('lb-pr-');
    mkdirSync(join(dir.path, 'device-plugins'));
    podResourcesSocket = join(dir.path, 'pod-resources', 'kubelet.sock');
    allocate = (requests) => requests.map((r) => ({ envs: { LEAFBRIDGE_SLOTS: r.devices_ids.join(',') } }));
    allocated = [];
    kubelet = new TestKubelet(join(dir.path, 'device-plugins'), { podResourcesSocket });
    await kubelet.start();
  });
  afterEach(async () => {
    for (const p of plugins.splice(0)) await p.stop();
    await kubelet.stop();
    devices.clear();
    dir.remove();
  });

  it('lists the devices of admitted pods, one Allocate per container and resource', async () => {
    await startPlugin(DOOR, healthy(3));
    const first = await kubelet.admitPod({
      name: 'viewer',
      containers: [{ name: 'app', resources: { [DOOR]: 1 } }],
    });
    await kubelet.admitPod({
      namespace: 'cams',
      name: 'recorder',
      containers: [
        { name: 'a', resources: { [DOOR]: 1, cpu: 2 } },
        { name: 'b', resources: { [DOOR]: 1 } },
      ],
    });

    expect(first.allocations).toEqual([
      {
        container: 'app',
        resource: DOOR,
        deviceIds: [slot(0)],
        response: expect.objectContaining({ envs: { LEAFBRIDGE_SLOTS: slot(0) } }),
      },
    ]);
    expect(allocated.map((a) => a.requests)).toEqual([
      [{ devices_ids: [slot(0)] }],
      [{ devices_ids: [slot(1)] }],
      [{ devices_ids: [slot(2)] }],
    ]);
    expect(await list()).toEqual({
      pods: [
        {
          namespace: 'default',
          name: 'viewer',
          containers: [{ name: 'app', devices: [{ resourceName: DOOR, deviceIds: [slot(0)] }] }],
        },
        {
          namespace: 'cams',
          name: 'recorder',
          containers: [
            { name: 'a', devices: [{ resourceName: DOOR, deviceIds: [slot(1)] }] },
            { name: 'b', devices: [{ resourceName: DOOR, deviceIds: [slot(2)] }] },
          ],
        },
      ],
    } satisfies PodResourcesList);
  }, 15_000);

  it('a deleted pod disappears from List and its devices can be given again', async () => {
    await startPlugin(DOOR, healthy(1));
    await kubelet.admitPod({ name: 'one', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] });
    expect(slotsInUse(await list())).toEqual(new Set([slot(0)]));

    expect(kubelet.deletePod('default', 'one')).toBe(true);
    expect(await list()).toEqual({ pods: [] });
    const two = await kubelet.admitPod({
      name: 'two',
      containers: [{ name: 'app', resources: { [DOOR]: 1 } }],
    });
    expect(two.containers[0]?.devices).toEqual({ [DOOR]: [slot(0)] });
    expect(slotsInUse(await list())).toEqual(new Set([slot(0)]));
  }, 15_000);

  it("reuses an init container's device for the app container: one device per pod, listed once", async () => {
    await startPlugin(DOOR, healthy(2));
    const pod = await kubelet.admitPod({
      name: 'setup-then-run',
      initContainers: [{ name: 'init', resources: { [DOOR]: 1 } }],
      containers: [{ name: 'app', resources: { [DOOR]: 1 } }],
    });
    expect(pod.allocations.map((a) => [a.container, a.deviceIds])).toEqual([
      ['init', [slot(0)]],
      ['app', [slot(0)]],
    ]);
    const listed = await list();
    // Like the kubelet, List shows app containers only (init containers unless they are sidecars).
    expect(listed.pods[0]?.containers).toEqual([
      { name: 'app', devices: [{ resourceName: DOOR, deviceIds: [slot(0)] }] },
    ]);
    expect(slotsInUse(listed)).toEqual(new Set([slot(0)]));

    // The other device is still free: a second pod gets it, a third finds none.
    await kubelet.admitPod({ name: 'other', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] });
    const third = await rejection(
      kubelet.admitPod({ name: 'third', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] }),
    );
    expect((third as Error).message).toContain('Requested: 1, Available: 0');
  }, 15_000);

  it('two app containers never share; an init container that took more keeps them for the pod', async () => {
    await startPlugin(DOOR, healthy(3));
    const pod = await kubelet.admitPod({
      name: 'wide-init',
      initContainers: [{ name: 'init', resources: { [DOOR]: 2 } }],
      containers: [
        { name: 'a', resources: { [DOOR]: 1 } },
        { name: 'b', resources: { [DOOR]: 1 } },
      ],
    });
    expect(pod.containers.map((c) => [c.name, c.devices[DOOR]])).toEqual([
      ['init', [slot(0), slot(1)]],
      ['a', [slot(0)]],
      ['b', [slot(1)]],
    ]);
    const err = await rejection(
      kubelet.admitPod({ name: 'late', containers: [{ name: 'app', resources: { [DOOR]: 2 } }] }),
    );
    expect((err as Error).message).toContain('Requested: 2, Available: 1');
  }, 15_000);

  it('refuses more devices than are healthy with the kubelet-like message, and assigns nothing', async () => {
    await startPlugin(DOOR, [...healthy(2), { id: slot(2), health: 'Unhealthy' }]);
    const err = await rejection(
      kubelet.admitPod({
        name: 'greedy',
        containers: [
          { name: 'first', resources: { [DOOR]: 1 } },
          { name: 'second', resources: { [DOOR]: 2 } },
        ],
      }),
    );
    expect(err).toBeInstanceOf(AdmissionError);
    expect((err as AdmissionError).reason).toBe('UnexpectedAdmissionError');
    expect((err as Error).message).toBe(
      `Allocate failed due to requested number of devices unavailable for ${DOOR}. Requested: 2, Available: 1, which is unexpected`,
    );
    expect(await list()).toEqual({ pods: [] });
    // The first container's device went back: a pod can have both healthy devices.
    const fits = await kubelet.admitPod({
      name: 'fits',
      containers: [{ name: 'app', resources: { [DOOR]: 2 } }],
    });
    expect(fits.containers[0]?.devices[DOOR]).toEqual([slot(0), slot(1)]);
  }, 15_000);

  it('a failed Allocate refuses the pod and leaves nothing assigned', async () => {
    await startPlugin(DOOR, healthy(2));
    allocate = () => {
      throw new DevicePluginError('FAILED_PRECONDITION', 'the door camera is offline');
    };
    const err = await rejection(
      kubelet.admitPod({ name: 'unlucky', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] }),
    );
    expect((err as Error).message).toMatch(/^Allocate failed due to .*the door camera is offline/);
    expect(kubelet.admittedPods()).toEqual([]);
    expect(await list()).toEqual({ pods: [] });
  }, 15_000);

  it('an extended resource without a plugin is refused like a node without capacity', async () => {
    const err = await rejection(
      kubelet.admitPod({ name: 'nowhere', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] }),
    );
    expect((err as Error).message).toContain(`Node didn't have enough resource: ${DOOR}, requested: 1`);
  }, 15_000);

  it('slotsInUse keeps the resources with the prefix only', async () => {
    await startPlugin(DOOR, healthy(1));
    await startPlugin(GPU, [{ id: 'gpu-0', health: 'Healthy' }]);
    await kubelet.admitPod({
      name: 'mixed',
      containers: [{ name: 'app', resources: { [DOOR]: 1, [GPU]: 1 } }],
    });
    const listed = await list();
    expect(listed.pods[0]?.containers[0]?.devices).toEqual([
      { resourceName: DOOR, deviceIds: [slot(0)] },
      { resourceName: GPU, deviceIds: ['gpu-0'] },
    ]);
    expect(slotsInUse(listed)).toEqual(new Set([slot(0)]));
    expect(slotsInUse(listed, 'example.com/')).toEqual(new Set(['gpu-0']));
    expect(slotsInUse({ pods: [] })).toEqual(new Set());
  }, 15_000);

  it('Get answers one pod or NOT_FOUND; GetAllocatableResources the healthy devices', async () => {
    await startPlugin(DOOR, [...healthy(2), { id: slot(2), health: 'Unhealthy' }]);
    await kubelet.admitPod({ name: 'viewer', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] });
    const { Get, GetAllocatableResources } = podResourcesProto().PodResourcesLister;
    const client = new grpc.Client(unixAddress(podResourcesSocket), grpc.credentials.createInsecure());
    try {
      const got = await unaryCall(client, Get, { pod_name: 'viewer', pod_namespace: 'default' }, 2000);
      expect(got.pod_resources).toMatchObject({
        name: 'viewer',
        namespace: 'default',
        containers: [{ name: 'app', devices: [{ resource_name: DOOR, device_ids: [slot(0)] }] }],
      });
      const missing = await rejection(
        unaryCall(client, Get, { pod_name: 'x', pod_namespace: 'default' }, 2000),
      );
      expect((missing as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
      const all = await unaryCall(client, GetAllocatableResources, {}, 2000);
      expect(all.devices).toMatchObject([{ resource_name: DOOR, device_ids: [slot(0), slot(1)] }]);
    } finally {
      client.close();
    }
  }, 15_000);

  it('is unavailable while the kubelet is down; admitted pods outlive a restart, as the checkpoint keeps them', async () => {
    await startPlugin(DOOR, healthy(2));
    await kubelet.admitPod({ name: 'viewer', containers: [{ name: 'app', resources: { [DOOR]: 1 } }] });
    await kubelet.stop();
    const err = await rejection(list());
    expect(err).toMatchObject({ code: 'PODRESOURCES_UNAVAILABLE' });
    await kubelet.start();
    expect(slotsInUse(await list())).toEqual(new Set([slot(0)]));

    await kubelet.restart();
    expect(slotsInUse(await list())).toEqual(new Set([slot(0)]));
    // The restart cleared the kubelet's endpoints: devices listed again means the plugin registered with this
    // kubelet. (Not a count of registrations: a kubelet restarted before the plugin came back to the previous
    // one sees one registration fewer, and that is right.)
    await kubelet.waitFor(
      () => (kubelet.devices(DOOR).length === 2 ? true : undefined),
      10_000,
      'the plugin back after the restart',
    );
    const next = await kubelet.admitPod({
      name: 'next',
      containers: [{ name: 'app', resources: { [DOOR]: 1 } }],
    });
    expect(next.containers[0]?.devices[DOOR]).toEqual([slot(1)]);
  }, 20_000);

  it('a missing socket is PODRESOURCES_UNAVAILABLE at once, naming the socket', async () => {
    const missing = join(dir.path, 'nowhere', 'kubelet.sock');
    const started = Date.now();
    const err = await rejection(listPodResources(missing));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(LeafbridgeError);
    expect(err).toMatchObject({ code: 'PODRESOURCES_UNAVAILABLE' });
    expect((err as Error).message).toContain(missing);
    expect((err as Error).cause).toMatchObject({ code: 'ENOENT' });
  }, 5000);

  it('a socket that never answers is PODRESOURCES_UNAVAILABLE after the timeout', async () => {
    const silent = join(dir.path, 'silent.sock');
    const sockets = new Set<Socket>();
    const server: Server = createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => server.listen(silent, resolve));
    try {
      const started = Date.now();
      const err = await rejection(listPodResources(silent, 300));
      expect(Date.now() - started).toBeLessThan(2000);
      expect(err).toMatchObject({ code: 'PODRESOURCES_UNAVAILABLE' });
      expect((err as Error).message).toMatch(new RegExp(`${silent}.*List failed: .*DEADLINE_EXCEEDED`));
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 5000);
});

describe('resourcesRequestedOnNode: the pod-list fallback against the test API server', () => {
  let api: KubeApiServer;

  const pod = (
    name: string,
    node: string,
    phase: string,
    spec: Record<string, unknown>,
    namespace = 'default',
  ) => ({ metadata: { name, namespace }, spec: { nodeName: node, ...spec }, status: { phase } });
  const container = (name: string, resources: Record<string, Record<string, string>>) => ({
    name,
    image: 'busybox',
    resources,
  });

  beforeAll(async () => {
    api = await KubeApiServer.start();
  });
  afterAll(async () => {
    await api.close();
  });

  it('counts running and pending pods of the node, init containers too; ignores other nodes and finished pods', async () => {
    const seed = (o: object) => api.seed('pods', o);
    seed(
      pod('viewer', 'edge-1', 'Running', {
        containers: [container('app', { limits: { 'leafbridge.io/door-a': '1', cpu: '100m' } })],
      }),
    );
    seed(
      pod('starting', 'edge-1', 'Pending', {
        initContainers: [container('init', { requests: { 'leafbridge.io/door-b': '1' } })],
        containers: [container('app', { requests: { 'example.com/gpu': '1' } })],
      }),
    );
    seed(
      pod(
        'elsewhere',
        'edge-1',
        'Running',
        {
          containers: [container('app', { limits: { 'leafbridge.io/door-f': '1' } })],
        },
        'cams',
      ),
    );
    seed(
      pod('done', 'edge-1', 'Succeeded', {
        containers: [container('app', { limits: { 'leafbridge.io/door-c': '1' } })],
      }),
    );
    seed(
      pod('crashed', 'edge-1', 'Failed', {
        containers: [container('app', { limits: { 'leafbridge.io/door-d': '1' } })],
      }),
    );
    seed(
      pod('other-node', 'edge-2', 'Running', {
        containers: [container('app', { limits: { 'leafbridge.io/door-e': '1' } })],
      }),
    );
    // Malformed objects are skipped, not fatal.
    seed({ metadata: { name: 'bare' }, spec: { nodeName: 'edge-1' } });
    seed({
      metadata: { name: 'odd' },
      spec: { nodeName: 'edge-1', containers: [{ name: 'x', resources: null }, null] },
    });

    const core = new KubeRest(kubeClients(api).kc);
    const names = await within(resourcesRequestedOnNode(core, 'edge-1'), 5000, 'the pod list');
    expect(names).toEqual(new Set(['leafbridge.io/door-a', 'leafbridge.io/door-b', 'leafbridge.io/door-f']));
    expect(await within(resourcesRequestedOnNode(core, 'edge-3'), 5000, 'the pod list')).toEqual(new Set());
    const listed = api.requests({ resource: 'pods', verb: 'list' });
    expect(listed.at(-1)?.query).toMatchObject({ fieldSelector: 'spec.nodeName=edge-3' });
    expect(listed.at(-1)?.namespace).toBeUndefined();
    core.close();
  }, 15_000);

  it('an unreachable API server is PODLIST_UNAVAILABLE', async () => {
    const gone = await KubeApiServer.start();
    const core = new KubeRest(kubeClients(gone).kc);
    await gone.close();
    const err = await within(rejection(resourcesRequestedOnNode(core, 'edge-1')), 5000, 'the failed list');
    expect(err).toMatchObject({ code: 'PODLIST_UNAVAILABLE' });
    expect((err as Error).message).toContain('edge-1');
  }, 15_000);
});
