// What the Kubernetes-backed Device store promises about its writes (README "Cluster outages cost nothing",
// docs/operations.md "Kubernetes API outages", the options documented in src/registry/kubeDeviceStore.ts),
// against the test API server over HTTP with the real REST client: reads through a write in flight, changes
// composed through an outage, one write in flight per Device, the right door for each field (PUT, status
// patch, conditional delete), conflicts and refusals, writes that must land now (slot claims), and close.
// The conditional status patch and delete are the request shapes test/cluster/doubleAgreement.test.ts sends to
// kube-apiserver and to the test API server: both answer a stale resourceVersion with 409.
import { createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdManifests } from '../../src/install/crds.js';
import type { DeviceObject, SlotRecord } from '../../src/model/resources.js';
import { KubeDeviceStore, type KubeDeviceStoreOptions } from '../../src/registry/kubeDeviceStore.js';
import { device } from '../contract/deviceStore.contract.js';
import { KubeApiServer, type RequestRecord } from '../helpers/kubeApiServer.js';
import { kubeClients } from '../helpers/kubeClient.js';
import { captureLogs } from '../helpers/logs.js';
import { until } from '../helpers/wait.js';

const NS = 'default';

interface LogLine {
  level: number;
  msg: string;
  device?: string;
  err?: string;
}
const WARN = 40;
const ERROR = 50;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A test API server with the CRDs and config `cams`, and a store on it (every change written at once unless told). */
async function storeOnServer(options: Partial<KubeDeviceStoreOptions> = {}) {
  const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 100 });
  api.seed('discoveryconfigs', {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name: 'cams', namespace: NS },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } } },
  });
  const log = captureLogs();
  const store = new KubeDeviceStore({
    kubeConfig: kubeClients(api).kc,
    namespace: NS,
    logger: log.logger,
    backoff: { baseMs: 50, maxMs: 500 },
    coalesce: { quietMs: 0, maxDelayMs: 0 },
    ...options,
  });
  cleanups.push(async () => {
    await store.close();
    await api.close();
  });
  await store.start();
  /** What the store logged so far. */
  const logs = () => log.lines() as unknown as LogLine[];
  return { api, store, logs };
}

const serverObject = (api: KubeApiServer, name: string) =>
  api.object('devices', NS, name) as DeviceObject | undefined;
const isDevice = (verb: RequestRecord['verb']) => (r: RequestRecord) =>
  r.resource === 'devices' && r.verb === verb;

/** The Device's write requests as `verb[/subresource] status`, in order. */
function writesOf(api: KubeApiServer, name?: string): string[] {
  return api
    .requests({ resource: 'devices' })
    .filter((r) => ['create', 'update', 'patch', 'delete'].includes(r.verb) && (!name || r.name === name))
    .map((r) => `${r.verb}${r.subresource ? `/${r.subresource}` : ''} ${r.status}`);
}

function slot(node: string, name: string): SlotRecord {
  return { node, resource: `leafbridge.io/${name}`, since: '2026-01-01T00:00:00Z' };
}

/** A slot claim as the device plugin makes one: the first of `ids` no node holds, for `node`. */
function claim(node: string, ids: string[]) {
  return (cur: DeviceObject | undefined): DeviceObject | null => {
    if (!cur) return null;
    const slots = { ...(cur.status.slots ?? {}) };
    const free = ids.find((id) => !(id in slots));
    if (free) slots[free] = slot(node, cur.metadata.name);
    return { ...cur, status: { ...cur.status, slots } };
  };
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; status?: number }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string; status?: number };
  }
  throw new Error('expected the promise to reject');
}

describe('KubeDeviceStore reads while writes are on their way', () => {
  it('a Device whose creation is in flight reads and lists with what is queued behind it, without uid or resourceVersion until it lands; one write in flight per Device', async () => {
    const { api, store } = await storeOnServer();
    const gate = api.hold(isDevice('create'));
    const first = store.upsert(device('cams-held'));
    await until(() => gate.waiting === 1, 5000, 'the create at the server');
    // In flight, not yet on the server: read as asked for.
    expect(store.pending).toBe(1);
    expect((await store.list()).map((d) => d.metadata.name)).toEqual(['cams-held']);
    const inFlight = await store.get('cams-held');
    expect(inFlight?.status.online).toBe(true);
    expect(inFlight?.metadata).toMatchObject({
      name: 'cams-held',
      namespace: NS,
      uid: '',
      resourceVersion: '',
    });
    expect(inFlight?.metadata.creationTimestamp).toBe('');

    // A change behind it: read composed with the one in flight; still one Device pending, one write at the server.
    const second = store.update('cams-held', (cur) => ({
      ...(cur as DeviceObject),
      status: { ...(cur as DeviceObject).status, online: false },
    }));
    const both = await store.get('cams-held');
    expect(both?.status.online).toBe(false);
    expect(both?.spec).toEqual(device('cams-held').spec);
    expect(store.pending).toBe(1);
    // Time for a second request to show up if the store sent one (it must not).
    await new Promise((r) => setTimeout(r, 300));
    expect(gate.waiting).toBe(1);

    gate.open();
    await Promise.all([first, second]);
    expect(gate.peak).toBe(1);
    expect(store.pending).toBe(0);
    const onServer = serverObject(api, 'cams-held')!;
    expect(onServer.status.online).toBe(false);
    const landed = await store.get('cams-held');
    expect(landed?.metadata.uid).toBe(onServer.metadata.uid);
    expect(landed?.metadata.uid).not.toBe('');
    expect(landed?.metadata.resourceVersion).toBe(onServer.metadata.resourceVersion);
    expect(landed?.metadata.creationTimestamp).toBe(onServer.metadata.creationTimestamp);
  });

  it('a queued change to a Device on the server reads with the server’s uid and resourceVersion', async () => {
    const { api, store } = await storeOnServer();
    const stored = await store.upsert(device('cams-known'));
    const gate = api.hold(isDevice('patch'));
    const change = store.upsert(device('cams-known', 'cams', { online: false }));
    await until(() => gate.waiting === 1, 5000, 'the status patch at the server');
    const read = await store.get('cams-known');
    expect(read?.status.online).toBe(false);
    expect(read?.metadata).toMatchObject({
      uid: stored.metadata.uid,
      resourceVersion: stored.metadata.resourceVersion,
      creationTimestamp: stored.metadata.creationTimestamp,
    });
    gate.open();
    await change;
  });

  it('reads and update functions get copies: changing them in place changes neither what the store reads nor what it writes', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-copy'));
    // A caller scribbles on what it read: the store's view stays, and the same change asked for is written.
    const read = await store.get('cams-copy');
    (read as DeviceObject).status.online = false;
    (read as DeviceObject).spec.capacity = 7;
    expect((await store.get('cams-copy'))?.status.online).toBe(true);
    expect((await store.list())[0]?.spec.capacity).toBe(1);
    await store.upsert(device('cams-copy', 'cams', { online: false, capacity: 7 }));
    expect(serverObject(api, 'cams-copy')?.status.online).toBe(false);
    expect(serverObject(api, 'cams-copy')?.spec.capacity).toBe(7);

    // An update function that changes its argument in place, read once before the write is taken.
    const inPlace = (cur: DeviceObject | undefined) => {
      const o = cur as DeviceObject;
      o.status.online = true;
      o.status.conditions = [{ ...o.status.conditions[0]!, message: 'changed in place' }];
      return o;
    };
    const written = store.update('cams-copy', inPlace);
    expect((await store.get('cams-copy'))?.status.online).toBe(true);
    await written;
    expect(serverObject(api, 'cams-copy')?.status).toMatchObject({ online: true });
    expect(serverObject(api, 'cams-copy')?.status.conditions?.[0]?.message).toBe('changed in place');
  });
});

describe('KubeDeviceStore pending count (leafbridge_device_writes_pending)', () => {
  it('with the default coalescing, nothing is pending once a write resolves: the watch’s echo of the store’s own writes queues nothing', async () => {
    const { store } = await storeOnServer({ coalesce: undefined });
    await store.upsert(device('cams-echo'));
    expect(store.pending).toBe(0);
    await store.upsert(device('cams-echo', 'cams', { online: false }));
    expect(store.pending).toBe(0);
    expect((await store.get('cams-echo'))?.status.online).toBe(false);
  });
});

describe('KubeDeviceStore through an outage', () => {
  it('changes to one Device made before and after the store found the server gone are composed: both land; pending counts each Device once; the outage is logged once', async () => {
    const { api, store, logs } = await storeOnServer();
    for (const n of ['cams-o1', 'cams-o2', 'cams-o3']) await store.upsert(device(n));
    await api.down();
    const capacity = store.update('cams-o1', (cur) => {
      const o = cur as DeviceObject;
      return { ...o, spec: { ...o.spec, capacity: 3 } };
    });
    const others = ['cams-o2', 'cams-o3'].map((n) => store.upsert(device(n, 'cams', { online: false })));
    await until(
      () => logs().some((l) => l.msg === 'API server unreachable; device writes queued'),
      10_000,
      'the store to find the server gone',
    );
    expect(store.pending).toBe(3);
    // A second change to cams-o1 after its first attempt failed: applied to what the first one made.
    const message = store.update('cams-o1', (cur) => {
      const o = cur as DeviceObject;
      return { ...o, status: { ...o.status, conditions: [{ ...o.status.conditions[0]!, message: 'two' }] } };
    });
    expect(store.pending).toBe(3);
    expect((await store.get('cams-o1'))?.spec.capacity).toBe(3);
    await api.up();
    await Promise.all([capacity, message, ...others]);
    const o1 = serverObject(api, 'cams-o1')!;
    expect(o1.spec.capacity).toBe(3);
    expect(o1.status.conditions?.[0]?.message).toBe('two');
    expect(serverObject(api, 'cams-o2')?.status.online).toBe(false);
    expect(store.pending).toBe(0);
    // One warning for the outage, not one per Device or per attempt.
    const outage = logs().filter((l) => l.msg === 'API server unreachable; device writes queued');
    expect(outage).toHaveLength(1);
    // The line says why: the error the request met.
    expect(outage[0]?.err).toMatch(/\w/);
  });

  it('after an outage the watch comes back at the probe’s pace, not the write backoff’s: another writer’s Device shows within 3 s', async () => {
    const { api, store } = await storeOnServer({
      backoff: { baseMs: 10_000, maxMs: 20_000 },
      probe: { baseMs: 50, maxMs: 200 },
    });
    await api.down();
    await until(() => api.openWatches === 0, 5000, 'the watch cut');
    await api.up();
    const {
      resourceVersion: _rv,
      uid: _uid,
      creationTimestamp: _ts,
      ...metadata
    } = device('cams-other').metadata;
    api.seed('devices', { ...device('cams-other'), metadata: { ...metadata, ownerReferences: [] } });
    await until(
      async () => (await store.get('cams-other')) !== undefined,
      3000,
      'the Device through the watch',
    );
  }, 20_000);

  it('an outage costs one probe every few seconds, not a request per Device: 10 queued Devices, 3 s without an answer', async () => {
    // The default probe (250 ms … 5 s) under test; writes refused for other reasons back off 50 ms … 500 ms.
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-p0'));
    await api.down();
    // In the server's place, a port that takes each connection, notes its request line and cuts it: no answer.
    const lines: string[] = [];
    const sockets = new Set<Socket>();
    const hole = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.once('data', (d) => {
        lines.push(d.toString('latin1').split('\r\n')[0] ?? '');
        socket.destroy();
      });
    });
    await new Promise<void>((r) => hole.listen(api.port, '127.0.0.1', () => r()));
    const writes = Array.from({ length: 10 }, (_, i) =>
      store.upsert(device(`cams-p${i}`, 'cams', { online: i % 2 === 0 })),
    );
    await new Promise((r) => setTimeout(r, 3000)); // the outage lasts
    const during = [...lines];
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hole.close(() => r()));
    await api.up();
    await Promise.all(writes);
    const probes = during.filter((l) => /^GET \S*\/devices\?limit=1 /.test(l));
    const deviceWrites = during.filter((l) => /^(POST|PUT|PATCH|DELETE) \S*\/devices/.test(l));
    // Delays of 250 ms, then 250 ms up to 500, 1000, 2000, 4000 ms: about 4 probes in 3 s, at least 2.
    expect(probes.length).toBeGreaterThanOrEqual(2);
    expect(probes.length).toBeLessThanOrEqual(10);
    // Each Device tried once, when the outage was not known yet; then they waited for the probe.
    expect(deviceWrites.length).toBeLessThanOrEqual(10);
    expect(serverObject(api, 'cams-p9')?.status.online).toBe(false);
  }, 30_000);

  it('close rejects the writes still queued with STORE_CLOSED and refuses new ones, without logging them as refused', async () => {
    const { api, store, logs } = await storeOnServer();
    await store.upsert(device('cams-closing'));
    await api.down();
    const queued = store.upsert(device('cams-closing', 'cams', { online: false }));
    const fresh = store.upsert(device('cams-never'));
    await until(() => store.pending === 2, 5000, 'two Devices pending');
    await until(
      () => logs().some((l) => l.msg === 'API server unreachable; device writes queued'),
      10_000,
      'the store to find the server gone',
    );
    await store.close();
    const queuedErr = await rejection(queued);
    expect([queuedErr.code, queuedErr.message]).toEqual(['STORE_CLOSED', 'the device store is closed']);
    expect((await rejection(fresh)).code).toBe('STORE_CLOSED');
    const afterErr = await rejection(store.upsert(device('cams-after')));
    expect([afterErr.code, afterErr.message]).toEqual(['STORE_CLOSED', 'the device store is closed']);
    expect((await rejection(store.delete('cams-closing'))).code).toBe('STORE_CLOSED');
    const now = await rejection(store.update('cams-closing', (c) => c ?? null, { now: true }));
    expect([now.code, now.message]).toEqual(['STORE_CLOSED', 'the device store is closed']);
    await new Promise((r) => setImmediate(r));
    expect(logs().filter((l) => l.level >= ERROR)).toEqual([]);
  });
});

describe('KubeDeviceStore writes each field through its own door', () => {
  it('labels and our spec fields by one PUT, status by one status patch, nothing when nothing changed', async () => {
    const { api, store } = await storeOnServer();
    const base = device('cams-doors');
    await store.upsert(base);
    api.clearLog();
    await store.upsert(device('cams-doors'));
    expect(writesOf(api)).toEqual([]);

    const relabelled = device('cams-doors');
    relabelled.metadata.labels = { ...relabelled.metadata.labels, zone: 'north' };
    await store.upsert(relabelled);
    expect(writesOf(api)).toEqual(['update 200']);
    expect(serverObject(api, 'cams-doors')?.metadata.labels).toMatchObject({ zone: 'north' });

    api.clearLog();
    const respecced = structuredClone(relabelled);
    respecced.spec.nodes = ['edge-1', 'edge-2'];
    await store.upsert(respecced);
    expect(writesOf(api)).toEqual(['update 200']);
    expect(serverObject(api, 'cams-doors')?.spec.nodes).toEqual(['edge-1', 'edge-2']);

    api.clearLog();
    const disowned = structuredClone(respecced);
    disowned.metadata.ownerReferences = [];
    await store.upsert(disowned);
    expect(writesOf(api)).toEqual(['update 200']);
    expect(serverObject(api, 'cams-doors')?.metadata.ownerReferences ?? []).toEqual([]);

    api.clearLog();
    const offline = structuredClone(disowned);
    offline.status.online = false;
    await store.upsert(offline);
    expect(writesOf(api)).toEqual(['patch/status 200']);
    expect(serverObject(api, 'cams-doors')?.status.online).toBe(false);
    expect(serverObject(api, 'cams-doors')?.spec.nodes).toEqual(['edge-1', 'edge-2']);
  });

  it('a Device of a config that does not exist is created without an owner reference, and not written again when unchanged', async () => {
    const { api, store } = await storeOnServer();
    const orphan = device('nosuch-dev', 'nosuch');
    const stored = await store.upsert(orphan);
    expect(serverObject(api, 'nosuch-dev')?.metadata.ownerReferences ?? []).toEqual([]);
    expect(stored.metadata.ownerReferences).toEqual([]);
    expect(writesOf(api, 'nosuch-dev')).toEqual(['patch/status 200']);
    expect(api.requests({ verb: 'create', resource: 'devices' }).map((r) => r.status)).toEqual([201]);
    api.clearLog();
    await store.upsert(device('nosuch-dev', 'nosuch'));
    expect(writesOf(api)).toEqual([]);
  });

  it('a released slot is removed from the server; the other slots and the fields another writer owns stay', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-slots'));
    await store.update('cams-slots', (cur) => {
      const o = cur as DeviceObject;
      return {
        ...o,
        status: {
          ...o.status,
          slots: {
            'cams-slots-0': slot('edge-1', 'cams-slots'),
            'cams-slots-1': slot('edge-1', 'cams-slots'),
          },
        },
      };
    });
    // The hub writes the reported twin into the same status.
    const held = serverObject(api, 'cams-slots')!;
    api.resources.update(
      api.type('devices'),
      NS,
      'cams-slots',
      { ...held, status: { ...held.status, reported: { $version: 4, temp: 21 } } },
      { subresource: 'status' },
    );
    await until(
      async () => (await store.get('cams-slots'))?.metadata.resourceVersion !== held.metadata.resourceVersion,
      5000,
      'the store to see the hub’s write',
    );
    api.clearLog();
    await store.update('cams-slots', (cur) => {
      const o = cur as DeviceObject;
      const { 'cams-slots-1': _released, ...slots } = o.status.slots ?? {};
      return { ...o, status: { ...o.status, slots } };
    });
    expect(writesOf(api)).toEqual(['patch/status 200']);
    const status = serverObject(api, 'cams-slots')?.status as DeviceObject['status'] & { reported?: unknown };
    expect(Object.keys(status.slots ?? {})).toEqual(['cams-slots-0']);
    expect(status.reported).toEqual({ $version: 4, temp: 21 });
  });

  it('a status patch is conditional on the version read: a slot another node took in between is seen and kept, and the claim takes the next one', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-race'));
    api.beforeNext({ verb: 'patch', subresource: 'status', name: 'cams-race' }, () => {
      const o = serverObject(api, 'cams-race')!;
      api.resources.update(
        api.type('devices'),
        NS,
        'cams-race',
        { ...o, status: { ...o.status, slots: { 'cams-race-0': slot('edge-2', 'cams-race') } } },
        { subresource: 'status' },
      );
    });
    api.clearLog();
    const mine = await store.update('cams-race', claim('edge-1', ['cams-race-0', 'cams-race-1']));
    const slots = serverObject(api, 'cams-race')?.status.slots;
    expect(slots?.['cams-race-0']?.node).toBe('edge-2');
    expect(slots?.['cams-race-1']?.node).toBe('edge-1');
    expect(mine?.status.slots).toEqual(slots);
    expect(writesOf(api, 'cams-race')).toEqual(['patch/status 409', 'patch/status 200']);
  });

  it('a delete carries the resourceVersion it decided on: a node that sees the Device again in between keeps it; one deleted by someone else is no error', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-del'));
    // Delete unless a second node sees it; edge-2 adds itself right before the DELETE is served.
    api.beforeNext({ verb: 'delete', name: 'cams-del' }, () => {
      const o = serverObject(api, 'cams-del')!;
      api.resources.update(
        api.type('devices'),
        NS,
        'cams-del',
        { ...o, spec: { ...o.spec, nodes: ['edge-1', 'edge-2'] } },
        {},
      );
    });
    api.clearLog();
    const kept = await store.update('cams-del', (cur) => (cur?.spec.nodes.includes('edge-2') ? cur : null));
    expect(kept?.spec.nodes).toEqual(['edge-1', 'edge-2']);
    expect(serverObject(api, 'cams-del')?.spec.nodes).toEqual(['edge-1', 'edge-2']);
    expect(writesOf(api, 'cams-del')).toEqual(['delete 409']);

    // Someone else deletes it right before the store's DELETE: done, without a retry.
    api.beforeNext({ verb: 'delete', name: 'cams-del' }, () =>
      api.resources.delete(api.type('devices'), NS, 'cams-del', {}),
    );
    api.clearLog();
    await store.delete('cams-del');
    expect(serverObject(api, 'cams-del')).toBeUndefined();
    expect(await store.get('cams-del')).toBeUndefined();
    expect(
      api.requests({ resource: 'devices', name: 'cams-del' }).map((r) => `${r.verb} ${r.status}`),
    ).toEqual(['delete 404']);
  });
});

describe('KubeDeviceStore conflicts and refusals', () => {
  it('conflicts re-read conflictRetries times in a row (default 5), then the write counts as failed and is retried later: it lands', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-c5'));
    api.clearLog();
    api.failNext(6, 409, { verb: 'update', resource: 'devices' });
    await store.upsert(device('cams-c5', 'cams', { capacity: 5 }));
    expect(serverObject(api, 'cams-c5')?.spec.capacity).toBe(5);
    const seq = api
      .requests({ resource: 'devices', name: 'cams-c5' })
      .filter((r) => r.verb === 'get' || r.verb === 'update')
      .map((r) => `${r.verb} ${r.status}`);
    // Six conflicts, a re-read after each of the first five; the later attempt writes from the watched copy.
    expect(seq).toEqual([
      'update 409',
      ...Array.from({ length: 5 }, () => ['get 200', 'update 409']).flat(),
      'update 200',
    ]);
  });

  it('with conflictRetries 1: one re-read, then a retry after backoff', async () => {
    const { api, store } = await storeOnServer({ conflictRetries: 1 });
    await store.upsert(device('cams-c1'));
    api.clearLog();
    api.failNext(2, 409, { verb: 'update', resource: 'devices' });
    await store.upsert(device('cams-c1', 'cams', { capacity: 2 }));
    expect(serverObject(api, 'cams-c1')?.spec.capacity).toBe(2);
    const seq = api
      .requests({ resource: 'devices', name: 'cams-c1' })
      .filter((r) => r.verb === 'get' || r.verb === 'update')
      .map((r) => `${r.verb} ${r.status}`);
    expect(seq).toEqual(['update 409', 'get 200', 'update 409', 'update 200']);
  });

  it('5xx and 429 answers are retried with backoff, and a 404 beyond the conflict retries (the CRD not served yet): the Device lands', async () => {
    const { api, store, logs } = await storeOnServer();
    api.failNext(2, 503, { verb: 'create', resource: 'devices' });
    api.failNext(1, 429, { verb: 'create', resource: 'devices' });
    await store.upsert(device('cams-busy'));
    expect(api.requests({ verb: 'create', resource: 'devices' }).map((r) => r.status)).toEqual([
      503, 503, 429, 201,
    ]);
    const retries = logs().filter((l) => l.msg === 'device write failed; will retry');
    expect(retries.map((l) => [l.level, l.device])).toEqual(Array(3).fill([WARN, 'cams-busy']));

    api.clearLog();
    api.failNext(8, 404, { verb: 'create', resource: 'devices' });
    await store.upsert(device('cams-early'));
    expect(serverObject(api, 'cams-early')).toBeDefined();
    expect(api.requests({ verb: 'create', resource: 'devices' }).map((r) => r.status)).toEqual([
      ...Array(8).fill(404),
      201,
    ]);
  });

  it('repeated conflicts back off, growing (20 ms doubling, full jitter): with the jitter at its top, about 40, 80, 160, 320 ms before the 2nd to 5th re-reads', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-jitter'));
    api.clearLog();
    api.failNext(5, 409, { verb: 'update', resource: 'devices' });
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.99);
    try {
      await store.upsert(device('cams-jitter', 'cams', { capacity: 7 }));
    } finally {
      random.mockRestore();
    }
    expect(serverObject(api, 'cams-jitter')?.spec.capacity).toBe(7);
    const seq = api
      .requests({ resource: 'devices', name: 'cams-jitter' })
      .filter((r) => r.verb === 'get' || r.verb === 'update');
    expect(seq.map((r) => `${r.verb} ${r.status}`)).toEqual([
      ...Array.from({ length: 5 }, () => ['update 409', 'get 200']).flat(),
      'update 200',
    ]);
    // The wait between each 409's answer and the re-read after it: none after the first (not asserted here,
    // it is timing), then 0.99 × backoffDelay(n, 20, 1000) for the n-th repeated conflict.
    const waits = [2, 4, 6, 8].map((i) => (seq[i + 1]?.at ?? 0) - (seq[i]?.answeredAt ?? 0));
    const floors = [35, 70, 140, 280];
    for (const [n, w] of waits.entries()) expect(w).toBeGreaterThanOrEqual(floors[n] ?? 0);
  });

  it('a write the server keeps refusing (503) is retried with a growing backoff: with the jitter at its top, 50, 100, 199 ms between the tries', async () => {
    const { api, store } = await storeOnServer();
    api.failNext(3, 503, { verb: 'create', resource: 'devices' });
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.99);
    try {
      await store.upsert(device('cams-grow'));
    } finally {
      random.mockRestore();
    }
    const creates = api.requests({ verb: 'create', resource: 'devices' });
    expect(creates.map((r) => r.status)).toEqual([503, 503, 503, 201]);
    const waits = [0, 1, 2].map((i) => (creates[i + 1]?.at ?? 0) - (creates[i]?.answeredAt ?? 0));
    const floors = [45, 95, 190];
    for (const [n, w] of waits.entries()) expect(w).toBeGreaterThanOrEqual(floors[n] ?? 0);
  });

  it('a re-read that fails (503) after a conflict is not taken for a deleted Device: the change is retried and lands', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-reread'));
    api.clearLog();
    api.failNext(1, 409, { verb: 'update', resource: 'devices' });
    api.failNext(1, 503, { verb: 'get', resource: 'devices' });
    // Changes the Device if it exists; a Device that is gone stays gone.
    const changed = await store.update('cams-reread', (cur) =>
      cur ? { ...cur, spec: { ...cur.spec, capacity: 6 } } : null,
    );
    expect(changed?.spec.capacity).toBe(6);
    expect(serverObject(api, 'cams-reread')?.spec.capacity).toBe(6);
    expect(writesOf(api, 'cams-reread')).toEqual(['update 409', 'update 200']);
  });

  it('a delete queued behind a creation in flight resolves only once the Device is gone from the server', async () => {
    const { api, store } = await storeOnServer();
    const gate = api.hold(isDevice('create'));
    const created = store.upsert(device('cams-brief'));
    await until(() => gate.waiting === 1, 5000, 'the create at the server');
    const deleted = store.delete('cams-brief');
    gate.open();
    await created;
    await deleted;
    expect(serverObject(api, 'cams-brief')).toBeUndefined();
    expect(writesOf(api, 'cams-brief').at(-1)).toBe('delete 200');
  });

  it('a Device deleted under an update is created again at once (the 404 re-reads and applies the change to nothing)', async () => {
    // A long backoff: the write must not wait for it.
    const { api, store } = await storeOnServer({ backoff: { baseMs: 20_000, maxMs: 20_000 } });
    await store.upsert(device('cams-vanish'));
    api.beforeNext({ verb: 'update', name: 'cams-vanish' }, () =>
      api.resources.delete(api.type('devices'), NS, 'cams-vanish', {}),
    );
    api.clearLog();
    const started = performance.now();
    const again = device('cams-vanish', 'cams', { capacity: 4 });
    await store.upsert(again);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(serverObject(api, 'cams-vanish')?.spec.capacity).toBe(4);
    expect(writesOf(api)).toEqual(['update 404', 'create 201', 'patch/status 200']);
  }, 30_000);

  it('a write the server refuses for good (422) is dropped: its caller gets the error, the log names the Device, the next change goes on', async () => {
    const { api, store, logs } = await storeOnServer();
    const bad = device('cams-bad', 'cams', { capacity: 0 });
    const err = await rejection(store.upsert(bad));
    expect(err.status).toBe(422);
    expect(store.pending).toBe(0);
    expect(await store.get('cams-bad')).toBeUndefined();
    expect(
      logs()
        .filter((l) => l.level === ERROR)
        .map((l) => [l.msg, l.device]),
    ).toEqual([['device write refused; dropped', 'cams-bad']]);
    expect(logs().find((l) => l.level === ERROR)?.err).toMatch(/capacity/);
    await store.upsert(device('cams-bad', 'cams', { capacity: 2 }));
    expect(serverObject(api, 'cams-bad')?.spec.capacity).toBe(2);
  });
});

describe('KubeDeviceStore writes that must land now (slot claims)', () => {
  it('goes straight to the server, and reads back at once; a delete too', async () => {
    const { api, store } = await storeOnServer({ coalesce: { quietMs: 5000, maxDelayMs: 10_000 } });
    const made = await store.update('cams-now', () => device('cams-now'), { now: true });
    expect(made?.metadata.uid).toBe(serverObject(api, 'cams-now')?.metadata.uid);
    const started = performance.now();
    const claimed = await store.update('cams-now', claim('edge-1', ['cams-now-0']), { now: true });
    expect(performance.now() - started).toBeLessThan(4000);
    expect(serverObject(api, 'cams-now')?.status.slots?.['cams-now-0']?.node).toBe('edge-1');
    const read = await store.get('cams-now');
    expect(read?.status.slots?.['cams-now-0']?.node).toBe('edge-1');
    expect(read?.metadata.resourceVersion).toBe(claimed?.metadata.resourceVersion);
    expect(store.pending).toBe(0);

    expect(await store.update('cams-now', () => null, { now: true })).toBeUndefined();
    expect(serverObject(api, 'cams-now')).toBeUndefined();
    expect(await store.get('cams-now')).toBeUndefined();
  });

  it('a 503 rejects it with API_UNREACHABLE and the next one asks again; no answer rejects it and the next one at once; a 422 is passed on as it is', async () => {
    const { api, store } = await storeOnServer();
    await store.upsert(device('cams-claim'));
    api.failNext(1, 503, { verb: 'patch', resource: 'devices' });
    const busy = await rejection(
      store.update('cams-claim', claim('edge-1', ['cams-claim-0']), { now: true }),
    );
    expect(busy.code).toBe('API_UNREACHABLE');
    expect(busy.message).toMatch(/cannot take the write now/);
    expect(serverObject(api, 'cams-claim')?.status.slots).toBeUndefined();
    const claimed = await store.update('cams-claim', claim('edge-1', ['cams-claim-0']), { now: true });
    expect(claimed?.status.slots?.['cams-claim-0']?.node).toBe('edge-1');

    const invalid = await rejection(
      store.update(
        'cams-claim',
        (cur) => ({ ...(cur as DeviceObject), spec: { ...(cur as DeviceObject).spec, capacity: 0 } }),
        { now: true },
      ),
    );
    expect(invalid.code).toBe('API_ERROR');
    expect(invalid.status).toBe(422);

    await api.down();
    const down = await rejection(
      store.update('cams-claim', claim('edge-1', ['cams-claim-1']), { now: true }),
    );
    expect(down.code).toBe('API_UNREACHABLE');
    const next = await rejection(
      store.update('cams-claim', claim('edge-1', ['cams-claim-1']), { now: true }),
    );
    expect(next.code).toBe('API_UNREACHABLE');
    expect(next.message).toMatch(/did not answer the last request/);
    // The queued writes are not affected: the store is not pending anything.
    expect(store.pending).toBe(0);
  });

  it('on a Device whose creation is queued, it rides along with the creation, past the burst wait', async () => {
    const { api, store } = await storeOnServer({ coalesce: { quietMs: 5000, maxDelayMs: 10_000 } });
    const created = store.upsert(device('cams-new'));
    const started = performance.now();
    const claimed = await store.update('cams-new', claim('edge-1', ['cams-new-0']), { now: true });
    expect(performance.now() - started).toBeLessThan(4000);
    expect(claimed?.status.slots?.['cams-new-0']?.node).toBe('edge-1');
    expect(serverObject(api, 'cams-new')?.status.slots?.['cams-new-0']?.node).toBe('edge-1');
    await created;
    expect(api.requests({ verb: 'create', resource: 'devices' }).map((r) => r.status)).toEqual([201]);
  });

  it('on a Device whose creation is in flight, it waits for a write of its own: the answer carries the claim', async () => {
    const { api, store } = await storeOnServer();
    const gate = api.hold(isDevice('create'));
    const created = store.upsert(device('cams-flight'));
    await until(() => gate.waiting === 1, 5000, 'the create at the server');
    const claimed = store.update('cams-flight', claim('edge-1', ['cams-flight-0']), { now: true });
    gate.open();
    expect((await claimed)?.status.slots?.['cams-flight-0']?.node).toBe('edge-1');
    await created;
    expect(serverObject(api, 'cams-flight')?.status.slots?.['cams-flight-0']?.node).toBe('edge-1');
  });

  it('on a Device not on the server and not queued, it goes straight to the server: a 503 on its creation rejects it', async () => {
    const { api, store } = await storeOnServer();
    api.failNext(1, 503, { verb: 'create', resource: 'devices' });
    const err = await rejection(store.update('cams-direct', () => device('cams-direct'), { now: true }));
    expect(err.code).toBe('API_UNREACHABLE');
    expect(serverObject(api, 'cams-direct')).toBeUndefined();
    expect(store.pending).toBe(0);
  });

  it('on a Device whose creation does not land within 5 s, it rejects with API_UNREACHABLE; the creation still lands later', async () => {
    const { api, store } = await storeOnServer();
    const gate = api.hold(isDevice('create'));
    const created = store.upsert(device('cams-slow'));
    await until(() => gate.waiting === 1, 5000, 'the create at the server');
    const started = performance.now();
    const err = await rejection(store.update('cams-slow', claim('edge-1', ['cams-slow-0']), { now: true }));
    expect(err.code).toBe('API_UNREACHABLE');
    expect(err.message).toMatch(/did not land within 5000 ms/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(4900);
    gate.open();
    await created;
    expect(serverObject(api, 'cams-slow')).toBeDefined();
  }, 20_000);
});
