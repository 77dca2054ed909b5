import { afterEach, describe, expect, it } from 'vitest';
import { cameraName, NS, TestCluster } from '../helpers/cluster.js';
import type { KubeApiServer } from '../helpers/kubeApiServer.js';
import type { KubeObject } from '../helpers/kubeStore.js';
import { until } from '../helpers/wait.js';

/**
 * Agents on two nodes against one test API server (it speaks the Kubernetes REST and watch protocol; no
 * real kube-apiserver runs in these tests). The devices are debug-echo devices, switched on and off per
 * node by a presence file whose path names the node (`presence-{node}`), so a test decides exactly what
 * each node sees.
 */

let c: TestCluster | undefined;
let api: KubeApiServer | undefined;

afterEach(async () => {
  await c?.close();
  c = undefined;
  api = undefined;
});

async function cluster(nodeLabels: Record<string, Record<string, string>> = {}): Promise<KubeApiServer> {
  c = await TestCluster.start({ n1: nodeLabels.n1 ?? {}, n2: nodeLabels.n2 ?? {} });
  api = c.api;
  return c.api;
}

const cluster_ = () => c as TestCluster;
const cameras = (name: string, ids: string[], spec: Record<string, unknown> = {}) =>
  cluster_().cameras(name, ids, spec);
const see = (name: string, ids: string[]) => cluster_().see(name, ids);
const startNode = (name: string, grace = '20s') => cluster_().startNode(name, { grace });
const stopNode = (name: string) => cluster_().stopNode(name);

type Seen = { online: boolean; nodes: string[]; uid: string };

/** The server's Devices, read from its storage (not through any agent). */
function serverDevices(): Map<string, Seen> {
  return new Map(
    (api as KubeApiServer).objects('devices', NS).map((o: KubeObject) => {
      const spec = o.spec as { nodes: string[] };
      const status = (o.status ?? {}) as { online?: boolean };
      return [o.metadata.name, { online: status.online === true, nodes: spec.nodes, uid: o.metadata.uid }];
    }),
  );
}

/** The server's devices as `id: online [nodes]` lines, sorted: easy to compare with what a test expects. */
function summary(): string[] {
  return [...serverDevices()]
    .map(([name, d]) => `${idOf(name)}: ${d.online ? 'online' : 'offline'} [${d.nodes.join(',')}]`)
    .sort();
}

const cam = (id: string) => cameraName(id);
const ids = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
const idOf = (name: string) => ids.find((id) => cam(id) === name) ?? name;

function configStatus(name: string) {
  const o = (api as KubeApiServer).object('discoveryconfigs', NS, name);
  return (o?.status ?? {}) as {
    devices?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

describe('agents on two nodes, one cluster', () => {
  it('a shared camera seen by two nodes is one Device listing both; one node loses it, it stays with the other', async () => {
    const server = await cluster();
    server.seed('discoveryconfigs', cameras('cams', ['c1']));
    see('n1', ['c1']);
    see('n2', ['c1']);
    await startNode('n1', '2s');
    await startNode('n2', '2s');
    await until(() => summary().join() === 'c1: online [n1,n2]', 10_000, 'one Device, both nodes');
    const device = server.object('devices', NS, cam('c1'));
    // The owner reference carries the config's uid, so deleting the config deletes its Devices.
    const config = server.object('discoveryconfigs', NS, 'cams');
    expect(device?.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'DiscoveryConfig', name: 'cams', uid: config?.metadata.uid }),
    ]);
    expect(device?.metadata.labels).toMatchObject({ 'leafbridge.io/config': 'cams' });
    expect((device?.spec as { properties: Record<string, string> } | undefined)?.properties).toMatchObject({
      CAMERA: 'c1',
    });
    await until(() => configStatus('cams').devices === 1, 5000, 'config status: 1 device');
    expect(configStatus('cams').conditions).toEqual([
      expect.objectContaining({ type: 'Valid', status: 'True' }),
    ]);

    see('n1', []);
    await until(() => summary().join() === 'c1: online [n2]', 5000, 'n1 gone, n2 keeps it');
    await new Promise((r) => setTimeout(r, 2500)); // past n1's grace period
    expect(summary()).toEqual(['c1: online [n2]']);

    see('n2', []);
    await until(() => summary().join() === 'c1: offline []', 5000, 'offline when no node sees it');
    await until(() => serverDevices().size === 0, 5000, 'deleted after the grace period');
  }, 40_000);

  it('a config deleted and re-created under the same name: its Devices are owned by the new uid and stay (no create-and-collect loop)', async () => {
    const server = await cluster();
    server.seed('discoveryconfigs', cameras('cams', ['c1', 'c2']));
    see('n1', ['c1', 'c2']);
    await startNode('n1');
    const both = 'c1: online [n1],c2: online [n1]';
    await until(() => summary().join() === both, 10_000, 'the Devices of the first config');

    server.remove('discoveryconfigs', NS, 'cams');
    await until(() => serverDevices().size === 0, 5000, 'the Devices collected with their config');
    const fresh = server.seed('discoveryconfigs', cameras('cams', ['c1', 'c2']));
    const ownedByFresh = () =>
      server
        .objects('devices', NS)
        .every((d) => d.metadata.ownerReferences?.map((r) => r.uid).join() === fresh.metadata.uid);
    await until(() => summary().join() === both && ownedByFresh(), 10_000, 'Devices owned by the new config');

    // The garbage collector finds their owner: the same Devices stay, none is deleted again.
    const uids = [...serverDevices().values()].map((d) => d.uid);
    const deletions = server.deletions('devices');
    for (const end = Date.now() + 3000; Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 100));
      expect(summary()).toEqual(['c1: online [n1]', 'c2: online [n1]']);
    }
    expect(server.deletions('devices')).toBe(deletions);
    expect([...serverDevices().values()].map((d) => d.uid)).toEqual(uids);
    expect(ownedByFresh()).toBe(true);
  }, 40_000);

  it('a config runs only on nodes its nodeSelector matches; bad details get Valid=False with the field', async () => {
    const server = await cluster({ n1: { zone: 'a' }, n2: { zone: 'b' } });
    server.seed('discoveryconfigs', cameras('cams', ['c1'], { nodeSelector: { zone: 'a' } }));
    const bad = cameras('broken', ['c1']);
    // The CRD cannot check map-key patterns (its schema is structural); the agent's handler schema does.
    (bad.spec.handler.details.devices[0] as { properties: Record<string, string> }).properties = {
      '1-not-an-env-name': 'x',
    };
    server.seed('discoveryconfigs', bad);
    see('n1', ['c1']);
    see('n2', ['c1']);
    await startNode('n1');
    await startNode('n2');
    await until(() => summary().join() === 'c1: online [n1]', 10_000, 'only n1 runs cams');
    await until(
      () =>
        configStatus('broken').conditions?.some((c) => c.type === 'Valid' && c.status === 'False') === true,
      5000,
      'Valid=False on the bad config',
    );
    const valid = configStatus('broken').conditions?.find((c) => c.type === 'Valid');
    expect(valid).toMatchObject({ reason: 'InvalidDetails' });
    expect(valid?.message).toContain('spec.handler.details.devices[0].properties');
    await new Promise((r) => setTimeout(r, 1000));
    expect(summary()).toEqual(['c1: online [n1]']);
  }, 40_000);

  it('API server down for a minute while devices come and go: within 10 s of its return the objects match the truth, none lost, none doubled', async () => {
    const server = await cluster();
    server.seed('discoveryconfigs', cameras('cams', ids));
    see('n1', ['c1', 'c2', 'c3']);
    see('n2', ['c1', 'c4']);
    const agents = [await startNode('n1'), await startNode('n2')];
    const before = ['c1: online [n1,n2]', 'c2: online [n1]', 'c3: online [n1]', 'c4: online [n2]'];
    await until(() => summary().join() === before.join(), 10_000, 'the starting devices');
    const uids = new Map([...serverDevices()].map(([n, d]) => [n, d.uid]));

    await server.down();
    const downAt = Date.now();
    // Early in the outage: c1 vanishes from both nodes (past its 20 s grace period by the end), c5 appears.
    see('n1', ['c2', 'c3', 'c5']);
    see('n2', ['c4']);
    await new Promise((r) => setTimeout(r, 48_000));
    // Late: c2 vanishes (within its grace period at the end), c6 appears on n2.
    see('n1', ['c3', 'c5']);
    see('n2', ['c4', 'c6']);
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - downAt))));
    expect(summary()).toEqual(before); // the server saw nothing of it

    server.clearLog();
    await server.up();
    const upAt = Date.now();
    const truth = [
      'c2: offline []',
      'c3: online [n1]',
      'c4: online [n2]',
      'c5: online [n1]',
      'c6: online [n2]',
    ];
    await until(() => summary().join() === truth.join(), 10_000, 'the truth after the outage');
    const converged = Date.now() - upAt;
    expect(converged).toBeLessThan(10_000);
    // Updated, not recreated; no duplicates (one object per name by construction, so count by device id).
    for (const id of ['c2', 'c3', 'c4']) expect(serverDevices().get(cam(id))?.uid).toBe(uids.get(cam(id)));
    expect(server.objects('devices', NS)).toHaveLength(5);

    // One write per changed Device and node (Kubernetes takes the spec and the status in two requests):
    // counted once both agents have nothing left to write.
    await until(
      () => agents.every((a) => a.pendingDeviceWrites() === 0),
      10_000,
      'both agents to have written everything',
    );
    const after = server
      .requests({ resource: 'devices' })
      .filter((r) => !['get', 'list', 'watch'].includes(r.verb));
    const ok = (id: string) =>
      after
        .filter((r) => r.name === cam(id) && r.status < 300)
        .map((r) => `${r.verb}${r.subresource ? `/${r.subresource}` : ''}`)
        .sort();
    expect(after.filter((r) => r.verb === 'create').map((r) => r.status)).toEqual([201, 201]); // c5, c6
    expect(ok('c5')).toEqual(['patch/status']);
    expect(ok('c6')).toEqual(['patch/status']);
    expect(ok('c2')).toEqual(['patch/status', 'update']); // nodes [], offline
    expect(ok('c3')).toEqual([]); // unchanged
    expect(ok('c4')).toEqual([]);
    // c1, on both nodes: the first node to write takes itself off (update, status), the other one finds
    // itself the last and deletes it; at most one of them meets a conflict on the way.
    const c1 = ok('c1');
    expect(c1.filter((v) => v === 'delete')).toHaveLength(1);
    expect(c1.filter((v) => v === 'update').length).toBeLessThanOrEqual(1);
    expect(c1.filter((v) => v === 'patch/status').length).toBeLessThanOrEqual(1);
    expect(after.filter((r) => r.status >= 300).length).toBeLessThanOrEqual(1);
  }, 120_000);

  it('an agent restarted while the API server is down resumes discovery from its cache, and catches up afterwards', async () => {
    const server = await cluster();
    server.seed('discoveryconfigs', cameras('cams', ids));
    see('n1', ['c1', 'c2']);
    const first = await startNode('n1');
    await until(() => summary().join() === 'c1: online [n1],c2: online [n1]', 10_000, 'devices written');
    void first;

    await server.down();
    await stopNode('n1');
    see('n1', ['c2', 'c3']);
    const started = Date.now();
    const agent = await startNode('n1');
    expect(Date.now() - started).toBeLessThan(5000);
    // Discovery runs from the cached DiscoveryConfig: this node's own view has the devices it sees now.
    await until(
      () => agent.registry.list().filter((d) => d.status.online).length === 2,
      10_000,
      'discovery resumed from cache',
    );
    expect(
      agent.registry
        .list()
        .filter((d) => d.status.online)
        .map((d) => d.spec.id)
        .sort(),
    ).toEqual(['c2', 'c3']);

    await server.up();
    const upAt = Date.now();
    const truth = ['c1: offline []', 'c2: online [n1]', 'c3: online [n1]'];
    await until(() => summary().join() === truth.join(), 10_000, 'caught up after the outage');
    expect(Date.now() - upAt).toBeLessThan(10_000);
  }, 60_000);
});
