import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { API_VERSION, type DeviceObject } from '../../src/model/resources.js';
import type { DeviceStore, DeviceStoreEvent } from '../../src/registry/deviceStore.js';

/**
 * The behaviour every DeviceStore backend shares (STYLE.md: storage behind an interface, one contract
 * suite). `contractTests('local', factory)` registers the tests; each gets a fresh, empty store.
 */
export interface StoreHarness {
  store: DeviceStore;
  cleanup?: () => Promise<void>;
}

const NS = 'default';
const T0 = '2026-01-01T00:00:00Z';

/** A Device as the discovery manager builds one (owner reference without uid; the store resolves it). */
export function device(
  name: string,
  config = 'cams',
  change: { online?: boolean; capacity?: number; message?: string } = {},
): DeviceObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: {
      name,
      namespace: NS,
      uid: 'caller-uid-is-ignored',
      creationTimestamp: T0,
      resourceVersion: '12345',
      labels: { 'leafbridge.io/config': config, 'leafbridge.io/handler': 'onvif' },
      ownerReferences: [{ apiVersion: API_VERSION, kind: 'DiscoveryConfig', name: config }],
    },
    spec: {
      id: `urn:uuid:${name}`,
      configName: config,
      handler: 'onvif',
      shared: true,
      nodes: ['edge-1'],
      capacity: change.capacity ?? 1,
      properties: { ONVIF_IP: '10.0.0.1' },
      deviceNodes: [],
      mounts: [],
    },
    status: {
      online: change.online ?? true,
      lastSeen: T0,
      conditions: [
        {
          type: 'Online',
          status: change.online === false ? 'False' : 'True',
          reason: 'Discovered',
          message: change.message ?? 'seen by onvif on edge-1',
          lastTransitionTime: T0,
        },
      ],
    },
  };
}

export async function until(check: () => boolean | Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function contractTests(name: string, factory: () => Promise<StoreHarness>): void {
  describe(`DeviceStore contract: ${name}`, () => {
    let h: StoreHarness;
    beforeEach(async () => {
      h = await factory();
    });
    afterEach(async () => {
      await h.store.close();
      await h.cleanup?.();
    });

    it('upsert, get and list round-trip an object; the store sets uid, creationTimestamp and resourceVersion', async () => {
      const want = device('cams-000001');
      const stored = await h.store.upsert(want);
      expect(stored.metadata.uid).not.toBe('caller-uid-is-ignored');
      expect(stored.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
      expect(stored.metadata.resourceVersion).not.toBe('12345');
      expect(stored.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const got = await h.store.get('cams-000001');
      expect(got).toMatchObject({ spec: want.spec, status: want.status });
      expect(got?.metadata).toMatchObject({
        name: 'cams-000001',
        namespace: NS,
        uid: stored.metadata.uid,
        resourceVersion: stored.metadata.resourceVersion,
        labels: want.metadata.labels,
      });
      expect(got?.metadata.ownerReferences).toEqual([
        expect.objectContaining({ apiVersion: API_VERSION, kind: 'DiscoveryConfig', name: 'cams' }),
      ]);
      expect((await h.store.list()).map((d) => d.metadata.name)).toEqual(['cams-000001']);
      expect(await h.store.get('nope')).toBeUndefined();
    });

    it('an update keeps uid and creationTimestamp and bumps resourceVersion; spec and status both change', async () => {
      const first = await h.store.upsert(device('cams-000002'));
      const second = await h.store.upsert(device('cams-000002', 'cams', { online: false, capacity: 3 }));
      expect(second.metadata.uid).toBe(first.metadata.uid);
      expect(second.metadata.creationTimestamp).toBe(first.metadata.creationTimestamp);
      expect(Number(second.metadata.resourceVersion)).toBeGreaterThan(Number(first.metadata.resourceVersion));
      const got = await h.store.get('cams-000002');
      expect(got?.spec.capacity).toBe(3);
      expect(got?.status.online).toBe(false);
      expect(got?.metadata.resourceVersion).toBe(second.metadata.resourceVersion);
    });

    it('delete removes the object; deleting a missing one is no error', async () => {
      await h.store.upsert(device('cams-000003'));
      await h.store.upsert(device('cams-000004'));
      await h.store.delete('cams-000003');
      expect(await h.store.get('cams-000003')).toBeUndefined();
      expect((await h.store.list()).map((d) => d.metadata.name)).toEqual(['cams-000004']);
      await h.store.delete('cams-000003');
      await h.store.delete('never-was');
    });

    it('watch sees ADDED, MODIFIED and DELETED in order; unsubscribing stops the events; a throwing listener is contained', async () => {
      const events: DeviceStoreEvent[] = [];
      const stop = h.store.watch((e) => events.push(e));
      h.store.watch(() => {
        throw new Error('a broken watcher');
      });
      await h.store.upsert(device('cams-000005'));
      await h.store.upsert(device('cams-000005', 'cams', { online: false }));
      await h.store.delete('cams-000005');
      await until(() => events.some((e) => e.type === 'DELETED'), 5000, 'DELETED');
      // A backend may report one upsert as more than one change (Kubernetes: create, then the status
      // subresource), so runs of the same kind count once.
      const kinds = events.map((e) => e.type).filter((t, i, all) => t !== all[i - 1]);
      expect(kinds).toEqual(['ADDED', 'MODIFIED', 'DELETED']);
      expect(events.every((e) => e.object.metadata.name === 'cams-000005')).toBe(true);
      expect(events.filter((e) => e.type === 'MODIFIED').at(-1)?.object.status.online).toBe(false);
      const uid = events[0]?.object.metadata.uid;
      expect(events.every((e) => e.object.metadata.uid === uid)).toBe(true);
      stop();
      await h.store.upsert(device('cams-000006'));
      const seen = events.length;
      await new Promise((r) => setTimeout(r, 100));
      expect(events).toHaveLength(seen);
    });

    it('lists by label selector leafbridge.io/config=<name>, in string or object form, sorted by name', async () => {
      await h.store.upsert(device('plcs-000002', 'plcs'));
      await h.store.upsert(device('cams-000008', 'cams'));
      await h.store.upsert(device('cams-000007', 'cams'));
      await h.store.upsert(device('plcs-000001', 'plcs'));
      const names = (ds: DeviceObject[]) => ds.map((d) => d.metadata.name);
      expect(names(await h.store.list('leafbridge.io/config=cams'))).toEqual(['cams-000007', 'cams-000008']);
      expect(names(await h.store.list({ 'leafbridge.io/config': 'plcs' }))).toEqual([
        'plcs-000001',
        'plcs-000002',
      ]);
      expect(names(await h.store.list('leafbridge.io/config!=cams,leafbridge.io/handler=onvif'))).toEqual([
        'plcs-000001',
        'plcs-000002',
      ]);
      expect(await h.store.list('leafbridge.io/config=none')).toEqual([]);
      expect(names(await h.store.list())).toHaveLength(4);
    });

    it('update applies a function to the current object: create from nothing, merge into what is there, null deletes, unchanged writes nothing', async () => {
      const addNode = (node: string) => (cur: DeviceObject | undefined) => {
        const next = cur ?? device('cams-000009');
        next.spec.nodes = [...new Set([...(cur?.spec.nodes ?? []), node])].sort();
        return next;
      };
      const created = await h.store.update('cams-000009', addNode('edge-2'));
      expect(created?.spec.nodes).toEqual(['edge-2']);
      const merged = await h.store.update('cams-000009', addNode('edge-1'));
      expect(merged?.spec.nodes).toEqual(['edge-1', 'edge-2']);
      expect(merged?.metadata.uid).toBe(created?.metadata.uid);

      const events: DeviceStoreEvent[] = [];
      h.store.watch((e) => events.push(e));
      const same = await h.store.update('cams-000009', (cur) => cur ?? null);
      expect(same?.metadata.resourceVersion).toBe(merged?.metadata.resourceVersion);
      await new Promise((r) => setTimeout(r, 100));
      expect(events).toEqual([]);

      const seen: (string[] | undefined)[] = [];
      expect(
        await h.store.update('cams-000009', (cur) => {
          seen.push(cur?.spec.nodes);
          return null;
        }),
      ).toBeUndefined();
      expect(seen.at(-1)).toEqual(['edge-1', 'edge-2']);
      expect(await h.store.get('cams-000009')).toBeUndefined();
      await until(() => events.some((e) => e.type === 'DELETED'), 5000, 'DELETED');
      expect(await h.store.update('never-was', () => null)).toBeUndefined();
    });

    it('updates of one device land in order: the last wish is what stays', async () => {
      const writes = [true, false, true, false].map((online) =>
        h.store.update('cams-000010', () => device('cams-000010', 'cams', { online })),
      );
      await Promise.all(writes);
      expect((await h.store.get('cams-000010'))?.status.online).toBe(false);
    });

    it('updates queued together compose: each one sees what the one before made', async () => {
      await h.store.upsert(device('cams-000011', 'cams'));
      const tag = (key: string) => (cur: DeviceObject | undefined) =>
        cur
          ? { ...cur, metadata: { ...cur.metadata, labels: { ...cur.metadata.labels, [key]: 'yes' } } }
          : null;
      const writes = ['a', 'b', 'c', 'd'].map((k) => h.store.update('cams-000011', tag(k)));
      expect((await h.store.get('cams-000011'))?.metadata.labels).toMatchObject({
        a: 'yes',
        b: 'yes',
        c: 'yes',
        d: 'yes',
      });
      await Promise.all(writes);
      expect((await h.store.get('cams-000011'))?.metadata.labels).toMatchObject({
        a: 'yes',
        b: 'yes',
        c: 'yes',
        d: 'yes',
      });
    });
  });
}
