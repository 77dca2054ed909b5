import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { openDb } from '../../src/database/db.js';
import { crdManifests } from '../../src/install/crds.js';
import type { DeviceObject } from '../../src/model/resources.js';
import { DeviceRegistry } from '../../src/registry/deviceRegistry.js';
import type { DeviceStoreEvent } from '../../src/registry/deviceStore.js';
import { KubeDeviceStore } from '../../src/registry/kubeDeviceStore.js';
import { LocalDeviceStore } from '../../src/registry/localDeviceStore.js';
import { MemoryDeviceStore } from '../../src/registry/memoryDeviceStore.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';
import { contractTests, device, until } from '../contract/deviceStore.contract.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { kubeClients } from '../helpers/kubeClient.js';

/**
 * The DeviceStore backends: the contract suite against each, then what only the Kubernetes-backed store
 * has to survive (outage, flapping, conflicts, cut and expired watches) against the test API server, which
 * speaks the Kubernetes REST/watch protocol (no real kube-apiserver runs here).
 */

const logger = silentLogger();

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'leafbridge-devstore-'));
}

function localStore(dir: string): LocalDeviceStore {
  const db = openDb(dir, { synchronous: 'normal' });
  const store = new LocalDeviceStore({ db, namespace: 'default', logger, clock: systemClock });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    db.close();
  };
  return store;
}

function config(name: string) {
  return {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name, namespace: 'default' },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } } },
  };
}

async function kubeHarness(coalesce?: { quietMs: number; maxDelayMs: number }, gcDelayMs?: number) {
  const api = await KubeApiServer.start({
    crds: crdManifests(builtinHandlers),
    bookmarkIntervalMs: 100,
    ...(gcDelayMs !== undefined ? { gcDelayMs } : {}),
  });
  api.seed('discoveryconfigs', config('cams'));
  api.seed('discoveryconfigs', config('plcs'));
  const store = new KubeDeviceStore({
    kubeConfig: kubeClients(api).kc,
    namespace: 'default',
    logger,
    backoff: { baseMs: 50, maxMs: 500 },
    coalesce,
  });
  await store.start();
  return { api, store };
}

contractTests('LocalDeviceStore (SQLite)', async () => {
  const dir = tempDir();
  return { store: localStore(dir), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

contractTests('KubeDeviceStore (test API server)', async () => {
  const { api, store } = await kubeHarness();
  return { store, cleanup: () => api.close() };
});

contractTests('MemoryDeviceStore (in-memory DeviceRegistry)', async () => ({
  store: new MemoryDeviceStore(new DeviceRegistry(), systemClock),
}));

describe('LocalDeviceStore', () => {
  it('keeps its objects and resource versions across an agent restart', async () => {
    const dir = tempDir();
    try {
      const first = localStore(dir);
      const stored = await first.upsert(device('cams-0000aa'));
      await first.upsert(device('cams-0000bb'));
      await first.delete('cams-0000bb');
      await first.close();
      const second = localStore(dir);
      expect(await second.get('cams-0000aa')).toEqual(stored);
      expect(await second.get('cams-0000bb')).toBeUndefined();
      const again = await second.upsert(device('cams-0000aa', 'cams', { online: false }));
      expect(again.metadata.uid).toBe(stored.metadata.uid);
      expect(Number(again.metadata.resourceVersion)).toBeGreaterThan(Number(stored.metadata.resourceVersion));
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('KubeDeviceStore against the test API server', () => {
  let api: KubeApiServer;
  let store: KubeDeviceStore;
  beforeEach(async () => {
    // Every change written at once, so the tests below can place a write between two server events.
    ({ api, store } = await kubeHarness({ quietMs: 0, maxDelayMs: 0 }));
  });
  afterEach(async () => {
    await store.close();
    await api.close();
  });

  /** The server's devices, as name → [spec, status] (what the store was asked for). */
  function serverState(): Map<string, unknown> {
    return new Map(api.objects('devices', 'default').map((o) => [o.metadata.name, [o.spec, o.status]]));
  }
  function wantedState(objects: Iterable<DeviceObject>): Map<string, unknown> {
    return new Map([...objects].map((o) => [o.metadata.name, [o.spec, o.status]]));
  }

  it('API server down while 20 devices are upserted and some deleted: after up() the server matches within 10 s, one write per changed Device', async () => {
    const before = await Promise.all([0, 1, 2, 3, 4].map((i) => store.upsert(device(`cams-old00${i}`))));
    const wanted = new Map<string, DeviceObject>();
    await api.down();
    const writes: Promise<unknown>[] = [];
    const upsert = (d: DeviceObject) => {
      wanted.set(d.metadata.name, d);
      writes.push(store.upsert(d));
    };
    for (let i = 0; i < 20; i++) {
      upsert(device(`cams-new${String(i).padStart(3, '0')}`, 'cams', { message: `change ${i}` }));
    }
    for (const i of [0, 1]) upsert(device(`cams-old00${i}`, 'cams', { online: false }));
    upsert(device('cams-old004')); // unchanged: costs nothing
    for (const name of ['cams-old002', 'cams-old003', 'cams-new005', 'cams-new006']) {
      wanted.delete(name);
      writes.push(store.delete(name));
    }
    // Through the outage the store answers from its wanted state.
    expect((await store.list()).map((d) => d.metadata.name)).toEqual([...wanted.keys()].sort());
    await new Promise((r) => setTimeout(r, 2000)); // the outage lasts; the first attempts have failed
    // Changed again after the store found the server gone: still one write each.
    upsert(device('cams-old000', 'cams', { online: false, message: 'again' }));
    upsert(device('cams-new000', 'cams', { message: 'change 0, again' }));
    api.clearLog();
    await api.up();
    const upAt = Date.now();
    await until(
      () =>
        JSON.stringify([...serverState()].sort()) ===
        JSON.stringify([...wantedState(wanted.values())].sort()),
      10_000,
      'the server to match the wanted state',
    );
    expect(Date.now() - upAt).toBeLessThan(10_000);
    await Promise.all(writes);
    const objects = api.objects('devices', 'default');
    expect(objects).toHaveLength(wanted.size);
    expect(new Set(objects.map((o) => o.metadata.name)).size).toBe(objects.length);
    // Devices that existed before the outage were updated, not recreated.
    for (const old of before.slice(0, 2)) {
      expect(api.object('devices', 'default', old.metadata.name)?.metadata.uid).toBe(old.metadata.uid);
    }
    expect(store.pending).toBe(0);

    // The writes after up(), per Device: a new Device is created and its status written (the status
    // subresource); a changed one gets one status write, a deleted one one delete; a Device created and
    // deleted during the outage, or upserted unchanged, costs nothing.
    const made = api.requests({ resource: 'devices', verb: 'create' });
    expect(made.map((r) => r.status)).toEqual(Array(18).fill(201));
    const perDevice = new Map<string, string[]>();
    for (const r of api.requests({ resource: 'devices' })) {
      if (!['update', 'patch', 'delete'].includes(r.verb)) continue;
      const list = perDevice.get(r.name ?? '') ?? [];
      list.push(`${r.verb}${r.subresource ? `/${r.subresource}` : ''} ${r.status}`);
      perDevice.set(r.name ?? '', list);
    }
    const expected = new Map<string, string[]>([
      ['cams-old000', ['patch/status 200']],
      ['cams-old001', ['patch/status 200']],
      ['cams-old002', ['delete 200']],
      ['cams-old003', ['delete 200']],
    ]);
    for (let i = 0; i < 20; i++) {
      if (i !== 5 && i !== 6) expected.set(`cams-new${String(i).padStart(3, '0')}`, ['patch/status 200']);
    }
    expect(new Map([...perDevice].sort())).toEqual(new Map([...expected].sort()));
    expect(api.writes('devices')).toBe(18 + 18 + 2 + 2);
  });

  it('a burst of 50 upserts of one device while the server is slow costs a handful of writes; the last state wins', async () => {
    await store.upsert(device('cams-flappy'));
    api.clearLog();
    api.slow(200);
    const burst: Promise<DeviceObject>[] = [];
    for (let i = 0; i < 50; i++) {
      burst.push(
        store.upsert(
          device('cams-flappy', 'cams', { online: i % 2 === 1, capacity: 1 + (i % 3), message: `m${i}` }),
        ),
      );
    }
    const results = await Promise.all(burst);
    api.slow(0);
    const last = device('cams-flappy', 'cams', { online: true, capacity: 1 + (49 % 3), message: 'm49' });
    const onServer = api.object('devices', 'default', 'cams-flappy');
    expect(onServer?.spec).toMatchObject(last.spec);
    expect(onServer?.status).toEqual(last.status);
    expect(results.at(-1)?.status).toEqual(last.status);
    // The first wanted state's status patch, then the newest one's update and status patch: 3 of 50.
    expect(api.writes('devices')).toBeLessThanOrEqual(4);
    expect(await store.get('cams-flappy')).toMatchObject({ spec: last.spec, status: last.status });
  });

  it('with the default coalescing, 10 changes 10 ms apart on a fast server are one write, after the last', async () => {
    const coalescing = new KubeDeviceStore({ kubeConfig: kubeClients(api).kc, namespace: 'default', logger });
    try {
      await coalescing.start();
      await coalescing.upsert(device('cams-burst'));
      api.clearLog();
      const burst: Promise<DeviceObject>[] = [];
      for (let i = 0; i < 10; i++) {
        burst.push(
          coalescing.upsert(device('cams-burst', 'cams', { online: i % 2 === 0, message: `m${i}` })),
        );
        await new Promise((r) => setTimeout(r, 10));
      }
      expect((await coalescing.get('cams-burst'))?.status.conditions[0]?.message).toBe('m9'); // read before it lands
      await Promise.all(burst);
      expect(api.requests({ verb: 'patch', resource: 'devices' }).map((r) => r.subresource)).toEqual([
        'status',
      ]);
      expect(api.writes('devices')).toBe(1);
      const last = device('cams-burst', 'cams', { online: false, message: 'm9' });
      expect(api.object('devices', 'default', 'cams-burst')?.status).toEqual(last.status);
    } finally {
      await coalescing.close();
    }
  });

  it('with the default coalescing, a device that flaps without end costs at most one write a second', async () => {
    const coalescing = new KubeDeviceStore({ kubeConfig: kubeClients(api).kc, namespace: 'default', logger });
    try {
      await coalescing.start();
      await coalescing.upsert(device('cams-flapping'));
      api.clearLog();
      // A change every 50 ms for 3.2 s: never quiet for the 200 ms that would end a burst.
      const changes: Promise<DeviceObject>[] = [];
      const started = performance.now();
      for (let i = 0; performance.now() - started < 3200; i++) {
        changes.push(
          coalescing.upsert(device('cams-flapping', 'cams', { online: i % 2 === 0, message: `f${i}` })),
        );
        await new Promise((r) => setTimeout(r, 50));
      }
      const whileFlapping = api.writes('devices');
      const elapsedS = (performance.now() - started) / 1000;
      await Promise.all(changes);
      // Written while it flapped (at most a second after each burst began), never more than once a second.
      expect(whileFlapping).toBeGreaterThanOrEqual(2);
      expect(whileFlapping).toBeLessThanOrEqual(Math.ceil(elapsedS));
      expect(api.writes('devices')).toBeLessThanOrEqual(Math.ceil(elapsedS) + 1); // and the last state
      const last = device('cams-flapping', 'cams', {
        online: (changes.length - 1) % 2 === 0,
        message: `f${changes.length - 1}`,
      });
      expect(api.object('devices', 'default', 'cams-flapping')?.status).toEqual(last.status);
    } finally {
      await coalescing.close();
    }
  });

  it('a 409 on update re-reads and retries, and the write succeeds', async () => {
    const first = await store.upsert(device('cams-conflict'));
    api.clearLog();
    api.failNext(1, 409, { verb: 'update', resource: 'devices' });
    const second = await store.upsert(device('cams-conflict', 'cams', { capacity: 4 }));
    const spec = api.object('devices', 'default', 'cams-conflict')?.spec as { capacity: number } | undefined;
    expect(spec?.capacity).toBe(4);
    expect(second.metadata.uid).toBe(first.metadata.uid);
    const updates = api.requests({ verb: 'update', resource: 'devices' }).map((r) => r.status);
    expect(updates).toEqual([409, 200]);
    expect(api.requests({ verb: 'get', resource: 'devices', name: 'cams-conflict' })).toHaveLength(1);
  });

  it('a 401 and a 403 on create (a restarted apiserver whose caches are not filled yet) are retried: the Device lands', async () => {
    api.clearLog();
    api.failNext(1, 401, { verb: 'create', resource: 'devices' });
    api.failNext(1, 403, { verb: 'create', resource: 'devices' });
    await store.upsert(device('cams-refused'));
    expect(api.object('devices', 'default', 'cams-refused')).toBeDefined();
    const creates = api.requests({ verb: 'create', resource: 'devices' }).map((r) => r.status);
    expect(creates).toEqual([401, 403, 201]);
  });

  it('a real conflict (another writer changed the object) re-reads and keeps the other writer’s fields', async () => {
    await store.upsert(device('cams-shared'));
    // Another writer (the cloud hub) sets spec.desired right before the store writes: the store's cached
    // copy is stale (the watch event is still on its way), so its PUT gets a real 409 Conflict.
    const other = api.object('devices', 'default', 'cams-shared')!;
    const spec = other.spec as Record<string, unknown>;
    api.clearLog();
    api.resources.update(
      api.type('devices'),
      'default',
      'cams-shared',
      { ...other, spec: { ...spec, desired: { $version: 1, fps: 5 } } },
      {},
    );
    await store.upsert(device('cams-shared', 'cams', { capacity: 2 }));
    const now = api.object('devices', 'default', 'cams-shared')!;
    expect(now.spec).toMatchObject({ capacity: 2, desired: { $version: 1, fps: 5 } });
    expect(api.requests({ verb: 'update', resource: 'devices' }).map((r) => r.status)).toEqual([409, 200]);
  });

  it('a config deleted and created again: Devices naming its old uid are corrected before the garbage collector takes them; new writes get the new uid', async () => {
    // The garbage collector waits 3 s here: a Device left with the old uid would be collected then.
    const slow = await kubeHarness({ quietMs: 0, maxDelayMs: 0 }, 3000);
    const ownerUid = (name: string) =>
      slow.api.object('devices', 'default', name)?.metadata.ownerReferences?.[0]?.uid;
    try {
      await slow.store.upsert(device('cams-a'));
      const old = slow.api.object('discoveryconfigs', 'default', 'cams')!.metadata.uid;
      expect(ownerUid('cams-a')).toBe(old);
      await slow.api.gcSettled();

      slow.api.remove('discoveryconfigs', 'default', 'cams');
      const fresh = slow.api.seed('discoveryconfigs', config('cams')).metadata.uid;
      await until(() => ownerUid('cams-a') === fresh, 2000, 'the owner reference corrected');
      // Written as the old object reads (its reference with the old uid), and a new Device: the new uid.
      const stale = device('cams-a', 'cams', { capacity: 3 });
      stale.metadata.ownerReferences = [{ ...stale.metadata.ownerReferences[0]!, uid: old } as never];
      await slow.store.upsert(stale);
      await slow.store.upsert(device('cams-b'));
      await slow.api.gcSettled();
      expect(ownerUid('cams-a')).toBe(fresh);
      expect(ownerUid('cams-b')).toBe(fresh);
      expect(slow.api.deletions('devices')).toBe(0);
    } finally {
      await slow.store.close();
      await slow.api.close();
    }
  });

  it('a Device another writer creates naming a config’s old uid (after the config was created again) is corrected when the watch brings it', async () => {
    const slow = await kubeHarness({ quietMs: 0, maxDelayMs: 0 }, 3000);
    const ownerUid = (name: string) =>
      slow.api.object('devices', 'default', name)?.metadata.ownerReferences?.[0]?.uid;
    try {
      const old = slow.api.object('discoveryconfigs', 'default', 'cams')!.metadata.uid;
      slow.api.remove('discoveryconfigs', 'default', 'cams');
      const fresh = slow.api.seed('discoveryconfigs', config('cams')).metadata.uid;
      // The store knows the new uid once a Device it writes carries it.
      await until(
        async () => {
          await slow.store.upsert(device('cams-mine'));
          return ownerUid('cams-mine') === fresh;
        },
        2000,
        'the store to know the new uid',
      );
      // An agent that still knows the old uid writes a Device: nothing but the watch tells this store of it.
      const theirs = device('cams-theirs');
      theirs.metadata.ownerReferences = [{ ...theirs.metadata.ownerReferences[0]!, uid: old } as never];
      const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ts, ...metadata } = theirs.metadata;
      slow.api.seed('devices', { ...theirs, metadata });
      await until(() => ownerUid('cams-theirs') === fresh, 2000, 'the owner reference corrected');
      await slow.api.gcSettled();
      expect(slow.api.deletions('devices')).toBe(0);
    } finally {
      await slow.store.close();
      await slow.api.close();
    }
  });

  it('a quiet watch resumes from its last bookmark after a compaction: no re-list, and bookmarks are not objects', async () => {
    await store.upsert(device('cams-quiet'));
    const events: DeviceStoreEvent[] = [];
    store.watch((e) => events.push(e));
    // Other resources move the resourceVersion on; the Devices do not change, only bookmarks come.
    for (const name of ['n1', 'n2', 'n3']) {
      api.seed('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name } });
    }
    const moved = api.store.currentRv;
    api.sendBookmarks();
    await new Promise((r) => setTimeout(r, 300)); // the bookmarks reach the store
    api.compact();
    api.closeWatches();
    const watches = () => api.requests({ verb: 'watch', resource: 'devices' });
    const before = watches().length;
    await until(() => watches().length > before && api.openWatches > 0, 5000, 'the store watching again');

    api.seed('devices', { ...device('cams-later'), metadata: { name: 'cams-later', labels: {} } });
    await until(
      () => events.some((e) => e.object.metadata.name === 'cams-later'),
      5000,
      'the Device created after the resume',
    );
    expect(Number(watches()[before]?.query.resourceVersion)).toBeGreaterThanOrEqual(moved);
    expect(api.requests({ verb: 'list', resource: 'devices' })).toHaveLength(1);
    expect(events.map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'cams-later']]);
    expect((await store.list()).map((d) => d.metadata.name)).toEqual(['cams-later', 'cams-quiet']);
  });

  it('a cut watch resumes and a 410 after compaction re-lists: the listeners lose no change', async () => {
    await store.upsert(device('cams-keep'));
    await store.upsert(device('cams-gone'));
    const events: DeviceStoreEvent[] = [];
    store.watch((e) => events.push(e));
    const plain = (name: string) => ({ ...device(name), metadata: { name, labels: {} } });

    api.closeWatches(); // the store re-watches from its resourceVersion
    api.seed('devices', plain('cams-other1'));
    await until(
      () => events.some((e) => e.object.metadata.name === 'cams-other1'),
      5000,
      'other1 after the re-watch',
    );
    const lists = api.requests({ verb: 'list', resource: 'devices' }).length;

    await until(() => api.openWatches > 0, 5000, 'the store watching again');
    api.closeWatches(); // and before it re-watches: changes it has not seen, then a compaction → 410
    api.seed('devices', plain('cams-other2'));
    api.resources.delete(api.type('devices'), 'default', 'cams-gone', {});
    api.compact();
    await until(
      () =>
        events.some((e) => e.type === 'ADDED' && e.object.metadata.name === 'cams-other2') &&
        events.some((e) => e.type === 'DELETED' && e.object.metadata.name === 'cams-gone'),
      5000,
      'the changes after the 410 re-list',
    );
    expect(api.requests({ verb: 'list', resource: 'devices' }).length).toBeGreaterThan(lists);
    expect((await store.list()).map((d) => d.metadata.name)).toEqual([
      'cams-keep',
      'cams-other1',
      'cams-other2',
    ]);
    // Each change reported once.
    const added = events.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name);
    expect(added).toEqual(['cams-other1', 'cams-other2']);
  });
});
