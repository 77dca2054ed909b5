// What docs/operations.md promises about the agent's Device writes ("Kubernetes API outages", "Device plugins
// and slot claims"), against the test API server over HTTP with the real REST client: at most 32 writes in
// flight, deletes of shared Devices conditional on their resourceVersion, and a claim on a local device made
// while the server is away recorded when it returns (an agent with its test kubelet).
import { afterEach, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdManifests } from '../../src/install/crds.js';
import { deviceName } from '../../src/model/naming.js';
import type { SlotRecord } from '../../src/model/resources.js';
import { withSighting } from '../../src/model/sighting.js';
import { KubeDeviceStore } from '../../src/registry/kubeDeviceStore.js';
import { silentLogger } from '../../src/util/logger.js';
import { device } from '../contract/deviceStore.contract.js';
import { NS, TestCluster } from '../helpers/cluster.js';
import { KubeApiServer, type RequestRecord } from '../helpers/kubeApiServer.js';
import { kubeClients } from '../helpers/kubeClient.js';
import { until } from '../helpers/wait.js';

const WRITES = new Set(['create', 'update', 'patch', 'delete']);
const isDeviceWrite = (r: RequestRecord) => r.resource === 'devices' && WRITES.has(r.verb);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A test API server with the CRDs and config `cams`, and a store on it writing every change at once. */
async function storeOnServer() {
  const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 100 });
  api.seed('discoveryconfigs', {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name: 'cams', namespace: NS },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } } },
  });
  // The default concurrency (not given here) is what is under test.
  const store = new KubeDeviceStore({
    kubeConfig: kubeClients(api).kc,
    namespace: NS,
    logger: silentLogger(),
    backoff: { baseMs: 50, maxMs: 500 },
    coalesce: { quietMs: 0, maxDelayMs: 0 },
  });
  cleanups.push(async () => {
    await store.close();
    await api.close();
  });
  await store.start();
  return { api, store };
}

describe('Device writes to the API server (docs/operations.md)', () => {
  it('at most 32 writes in flight per agent: 100 new Devices through a server that answers one write at a time', async () => {
    const { api, store } = await storeOnServer();
    const gate = api.hold(isDeviceWrite);
    const n = 100;
    const settled = Promise.all(Array.from({ length: n }, (_, i) => store.upsert(device(`cams-w${i}`))));
    settled.catch(() => {}); // awaited below; a failed assertion closes the store under it
    // A Device is done when its status patch (after its create) has been answered.
    const left = () =>
      n - api.requests({ verb: 'patch', resource: 'devices', subresource: 'status', status: 200 }).length;
    await until(() => gate.waiting >= 32, 20_000, '32 writes at the server');
    // Each answer lets the store send one more: it keeps 32 in flight while it has that many to write, never more.
    while (left() > 0) {
      gate.release(1);
      await until(() => gate.waiting >= Math.min(32, left()), 10_000, 'the store to send its next write');
    }
    await settled;
    expect(gate.peak).toBe(32);
    expect(api.objects('devices', NS)).toHaveLength(n);
  }, 60_000);

  it('deletes of shared Devices carry a resourceVersion precondition: a node that sees the Device again in between wins', async () => {
    const { api, store } = await storeOnServer();
    const name = 'cams-lost';
    // A shared Device no node has seen for longer than the grace period: due for deletion.
    const lost = device(name, 'cams');
    api.seed('devices', {
      ...lost,
      metadata: { name, namespace: NS, labels: lost.metadata.labels },
      spec: { ...lost.spec, nodes: [] },
    });
    const old = '2026-01-01T00:00:00Z';
    api.resources.patch(
      api.type('devices'),
      NS,
      name,
      'application/merge-patch+json',
      { status: { ...lost.status, online: false, lastSeen: old } },
      { subresource: 'status' },
    );
    await until(async () => (await store.get(name))?.status.online === false, 5000, 'the store to see it');
    // Node n2 sees it again just before n1's delete reaches the server.
    api.beforeNext({ verb: 'delete', resource: 'devices', name }, () =>
      api.resources.patch(
        api.type('devices'),
        NS,
        name,
        'application/merge-patch+json',
        { spec: { nodes: ['n2'] } },
        {},
      ),
    );
    api.clearLog();
    await store.update(name, (cur) =>
      withSighting(cur, { node: 'n1', lostAt: old, now: new Date().toISOString(), graceMs: 60_000 }),
    );
    // The delete named the version n1 decided on; the server refused it, n1 re-read and kept the Device.
    expect(api.requests({ verb: 'delete', resource: 'devices' }).map((r) => r.status)).toEqual([409]);
    expect(api.object('devices', NS, name)?.spec).toMatchObject({ nodes: ['n2'] });
  });
});

describe('slot claims (docs/operations.md "Device plugins and slot claims")', () => {
  it('a local device claimed while the API server is away: Allocate answers, and the claim is recorded when the server returns', async () => {
    const c = await TestCluster.start({ n1: {} });
    cleanups.push(() => c.close());
    const config = c.cameras('locals', ['l1'], { capacity: 2 });
    config.spec.handler.details.shared = false;
    c.api.seed('discoveryconfigs', config);
    c.see('n1', ['l1']);
    await c.startNode('n1', { kubelet: true });
    const name = deviceName('locals', 'l1', 'n1');
    const resource = `leafbridge.io/${name}`;
    const slots = () =>
      ((c.api.object('devices', NS, name)?.status ?? {}) as { slots?: Record<string, SlotRecord> }).slots ??
      {};
    await until(() => c.api.object('devices', NS, name) !== undefined, 10_000, 'the local Device');
    await until(async () => (await c.pendingWrites('n1')) === 0, 10_000, 'the agent to have written it');
    await c.kubelet('n1').waitFor(
      () =>
        c
          .kubelet('n1')
          .devices(resource)
          .filter((d) => d.health === 'Healthy').length === 2
          ? true
          : undefined,
      10_000,
      'both slots healthy',
    );

    await c.api.down();
    // Only this node sees the device, so nobody else can take the slot meanwhile: the claim is not refused.
    await c.kubelet('n1').allocate(resource, [`${name}-0`]);
    expect(slots()).toEqual({});
    expect(await c.pendingWrites('n1')).toBeGreaterThan(0);

    await c.api.up();
    await until(() => slots()[`${name}-0`] !== undefined, 20_000, 'the claim on the server');
    expect(slots()[`${name}-0`]).toMatchObject({ node: 'n1', resource });
    await until(async () => (await c.pendingWrites('n1')) === 0, 10_000, 'nothing left to write');
  }, 60_000);
});
