import { afterEach, expect, it } from 'vitest';
import { cameraName, TestCluster } from '../helpers/cluster.js';
import { type ClusterBackend, DoubleBackend, RealBackend } from '../helpers/clusterBackend.js';
import { INSTALL_NS } from '../helpers/controlPlane.js';
import type { KubeObject } from '../helpers/kubeStore.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { comparableByName } from '../helpers/snapshot.js';
import { until } from '../helpers/wait.js';

/**
 * Agents against the real control plane (etcd, kube-apiserver with RBAC, controller-manager with the
 * garbage collector, scheduler), each agent running as the leafbridge-agent service account that deploy/
 * binds; and the same scenarios on the test double, whose objects must equal the real server's.
 */

const clusters: TestCluster[] = [];
afterEach(async () => {
  for (const c of clusters.splice(0)) await c.close();
});

async function on(backend: ClusterBackend, nodes?: Record<string, Record<string, string>>) {
  const c = await TestCluster.on(backend, nodes);
  clusters.push(c);
  return c;
}

type View = { online: boolean; nodes: string[] };
async function devices(c: TestCluster): Promise<Map<string, View & { object: KubeObject }>> {
  const out = new Map<string, View & { object: KubeObject }>();
  for (const [name, o] of await c.deviceList()) {
    const status = (o.status ?? {}) as { online?: boolean };
    out.set(name, {
      online: status.online === true,
      nodes: (o.spec as { nodes: string[] }).nodes,
      object: o,
    });
  }
  return out;
}

async function summary(c: TestCluster): Promise<string> {
  return [...(await devices(c))]
    .map(
      ([name, d]) =>
        `${name === cameraName('c1') ? 'c1' : name}: ${d.online ? 'online' : 'offline'} [${d.nodes.join(',')}]`,
    )
    .sort()
    .join();
}

async function configStatus(c: TestCluster, name: string) {
  const config = (await c.backend.list('discoveryconfigs')).find((o) => o.metadata.name === name);
  return {
    uid: config?.metadata.uid,
    status: (config?.status ?? {}) as { devices?: number; conditions?: { type: string; status: string }[] },
  };
}

/**
 * A camera seen by two nodes is one Device listing both; each node losing it in turn leaves it with the
 * other, then offline, then deleted after the grace period. Returns the objects left at the two-node point.
 */
async function sharedCamera(backend: ClusterBackend): Promise<Record<string, unknown>> {
  const c = await on(backend);
  await backend.create(c.cameras('cams', ['c1']));
  c.see('n1', ['c1']);
  c.see('n2', ['c1']);
  await c.startNode('n1', { grace: '2s' });
  await c.startNode('n2', { grace: '2s' });
  await until(async () => (await summary(c)) === 'c1: online [n1,n2]', 20_000, 'one Device, both nodes');
  await until(
    async () => (await configStatus(c, 'cams')).status.devices === 1,
    10_000,
    'config status: 1 device',
  );
  const { uid, status } = await configStatus(c, 'cams');
  expect(status.conditions).toEqual([expect.objectContaining({ type: 'Valid', status: 'True' })]);
  const device = (await devices(c)).get(cameraName('c1'))?.object;
  expect(device?.metadata.ownerReferences).toEqual([
    expect.objectContaining({ kind: 'DiscoveryConfig', name: 'cams', uid }),
  ]);
  // Settled: the Online condition names both nodes (it follows the node list by one write).
  await until(
    async () =>
      JSON.stringify((await devices(c)).get(cameraName('c1'))?.object.status).includes('from n1, n2'),
    10_000,
    'the Online condition naming both nodes',
  );
  const left = JSON.parse(
    JSON.stringify({
      devices: comparableByName(await backend.list('devices')),
      configs: comparableByName(await backend.list('discoveryconfigs')),
    }).replaceAll(c.shared.path, '<presence>'),
  ) as Record<string, unknown>;

  c.see('n1', []);
  await until(async () => (await summary(c)) === 'c1: online [n2]', 15_000, 'n1 gone, n2 keeps it');
  c.see('n2', []);
  await until(async () => (await summary(c)) === 'c1: offline []', 15_000, 'offline when no node sees it');
  await until(async () => (await devices(c)).size === 0, 15_000, 'deleted after the grace period');
  return left;
}

describeControlPlane('agents on the real control plane', () => {
  it('a shared camera on two nodes: one Device, owned by its config, offline then deleted; the double leaves the same objects', async () => {
    const real = await sharedCamera(await RealBackend.start());
    const double = await sharedCamera(await DoubleBackend.start(INSTALL_NS));
    expect(double).toEqual(real);
  }, 180_000);
});
