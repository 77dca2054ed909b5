import { afterEach, expect, it } from 'vitest';
import { getCommand } from '../../src/cli/getCommand.js';
import { cameraName, TestCluster } from '../helpers/cluster.js';
import { type ClusterBackend, DoubleBackend, RealBackend } from '../helpers/clusterBackend.js';
import { INSTALL_NS } from '../helpers/controlPlane.js';
import type { KubeObject } from '../helpers/kubeStore.js';
import { tempDir } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { comparableByName } from '../helpers/snapshot.js';
import { captureOutput, until } from '../helpers/wait.js';

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

  it('nodeSelector against real Node labels; bad details get Valid=False naming the field', async () => {
    const c = await on(await RealBackend.start(), { n1: { zone: 'a' }, n2: { zone: 'b' } });
    await c.backend.create(c.cameras('cams', ['c1'], { nodeSelector: { zone: 'a' } }));
    const bad = c.cameras('broken', ['c1']);
    (bad.spec.handler.details.devices[0] as { properties: Record<string, string> }).properties = {
      '1-not-an-env-name': 'x',
    };
    await c.backend.create(bad);
    c.see('n1', ['c1']);
    c.see('n2', ['c1']);
    await c.startNode('n1');
    await c.startNode('n2');
    await until(async () => (await summary(c)) === 'c1: online [n1]', 20_000, 'only n1 runs cams');
    await until(
      async () =>
        (await configStatus(c, 'broken')).status.conditions?.some(
          (x) => x.type === 'Valid' && x.status === 'False',
        ) === true,
      15_000,
      'Valid=False on the bad config',
    );
    const valid = (await configStatus(c, 'broken')).status.conditions?.find((x) => x.type === 'Valid') as
      | { reason?: string; message?: string }
      | undefined;
    expect(valid?.reason).toBe('InvalidDetails');
    expect(valid?.message).toContain('spec.handler.details.devices[0].properties');
  }, 120_000);

  it('a config deleted and created again under its name: the real garbage collector keeps the Devices, now owned by the new uid', async () => {
    const c = await on(await RealBackend.start(), { n1: {} });
    await c.backend.create(c.cameras('cams', ['c1', 'c2']));
    c.see('n1', ['c1', 'c2']);
    await c.startNode('n1');
    await until(async () => (await devices(c)).size === 2, 20_000, 'two Devices');
    await c.backend.remove('discoveryconfigs', 'cams');
    await c.backend.create(c.cameras('cams', ['c1', 'c2']));
    const { uid } = await configStatus(c, 'cams');
    const ownedByNew = async () =>
      [...(await devices(c)).values()].filter((d) => d.object.metadata.ownerReferences?.[0]?.uid === uid);
    await until(
      async () => (await ownedByNew()).length === 2,
      30_000,
      'both Devices owned by the new config',
    );
    const uids = (await ownedByNew()).map((d) => d.object.metadata.uid).sort();
    // Stable: the garbage collector does not take them, and the agent does not make them again.
    await new Promise((r) => setTimeout(r, 5000));
    expect((await ownedByNew()).map((d) => d.object.metadata.uid).sort()).toEqual(uids);
  }, 120_000);

  it('leafbridge get and kubectl read the same Devices, with the printer columns', async () => {
    const backend = await RealBackend.start();
    const c = await on(backend, { n1: {} });
    await backend.create(c.cameras('cams', ['c1']));
    c.see('n1', ['c1']);
    await c.startNode('n1');
    await until(async () => (await summary(c)) === 'c1: online [n1]', 20_000, 'the Device');
    const dir = tempDir('lb-get-real-');
    try {
      const kubeconfig = await backend.kubeconfig(dir.path, 'admin');
      const got = await captureOutput(
        () => getCommand(['devices', '--kubeconfig', kubeconfig]),
        20_000,
        'get',
      );
      expect(got.code).toBe(0);
      expect(got.out).toMatch(new RegExp(`${cameraName('c1')}\\s+cams\\s+debug-echo\\s+true\\s+n1`));
      const table = await backend.cp.kubectl(['get', 'devices', '-n', backend.namespace]);
      const [header, row] = table.trim().split('\n');
      expect(header?.split(/\s+/)).toEqual(['NAME', 'CONFIG', 'HANDLER', 'ONLINE', 'NODES', 'AGE']);
      // The apiserver prints a list column as JSON (it takes one JSONPath result); `leafbridge get` joins it.
      expect(row?.split(/\s+/).slice(0, 5)).toEqual([
        cameraName('c1'),
        'cams',
        'debug-echo',
        'true',
        '["n1"]',
      ]);
    } finally {
      dir.remove();
    }
  }, 120_000);
});
