import { Writable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { afterEach, describe, expect, it } from 'vitest';
import { DiscoveryManager } from '../../../src/discovery/manager.js';
import { toConfigObject } from '../../../src/model/discoveryConfigs.js';
import type { DiscoveredDevice, DiscoveryHandler } from '../../../src/model/handler.js';
import { deviceName, legacyDeviceName } from '../../../src/model/naming.js';
import type { DeviceObject } from '../../../src/model/resources.js';
import { DeviceRegistry } from '../../../src/registry/deviceRegistry.js';
import { MemoryDeviceStore } from '../../../src/registry/memoryDeviceStore.js';
import { systemClock } from '../../../src/util/clock.js';
import { createLogger, type Logger, silentLogger } from '../../../src/util/logger.js';
import { until } from '../../helpers/mqtt.js';

/** A handler the test drives: each `push` is the full device list the handler yields next. */
function scriptedHandler(name: string, shared: boolean) {
  const queue: (DiscoveredDevice[] | Error)[] = [];
  let wake: (() => void) | undefined;
  let starts = 0;
  const handler: DiscoveryHandler = {
    name,
    shared,
    detailsSchema: Type.Object({ label: Type.String({ default: 'x' }) }, { additionalProperties: false }),
    async *discover(_details, ctx) {
      starts++;
      while (!ctx.signal.aborted) {
        const next = queue.shift();
        if (next instanceof Error) throw next;
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((r) => {
          wake = r;
          ctx.signal.addEventListener('abort', () => r(), { once: true });
        });
      }
    },
  };
  return {
    handler,
    push(item: DiscoveredDevice[] | Error) {
      queue.push(item);
      wake?.();
    },
    get starts() {
      return starts;
    },
  };
}

const dev = (id: string, extra: Partial<DiscoveredDevice> = {}): DiscoveredDevice => ({
  id,
  properties: { ID: id },
  ...extra,
});

describe('DiscoveryManager', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });
  function manager(
    handlers: DiscoveryHandler[],
    gracePeriodMs = 300,
    node = 'n1',
    store = new MemoryDeviceStore(new DeviceRegistry(), systemClock),
    logger: Logger = silentLogger(),
  ) {
    const registry = new DeviceRegistry();
    const m = new DiscoveryManager({
      node,
      namespace: 'default',
      handlers,
      registry,
      store,
      logger,
      clock: systemClock,
      gracePeriodMs,
    });
    stops.push(() => m.stop());
    return { m, registry, store };
  }
  const config = (name: string, handler: string, capacity = 1) =>
    toConfigObject(
      { name, spec: { handler: { name: handler, details: {} }, capacity, properties: { SITE: 'lab' } } },
      'default',
    );

  it('turns a list into Device objects with stable names, properties and the config capacity', async () => {
    const cams = scriptedHandler('cams', true);
    const { m, registry } = manager([cams.handler]);
    m.sync([config('front', 'cams', 2)]);
    cams.push([
      dev('uuid-1', {
        conditions: [
          { type: 'Authenticated', status: 'False', reason: 'NotAuthorized', message: 'wrong password' },
        ],
      }),
    ]);
    await until(() => registry.list().length === 1, 2000, 'device listed');
    const d = registry.list()[0]!;
    expect(d.metadata.name).toBe(deviceName('front', 'uuid-1', undefined));
    expect(d.metadata.name).toMatch(/^front-[0-9a-f]{16}$/);
    expect(d.spec).toMatchObject({
      id: 'uuid-1',
      configName: 'front',
      handler: 'cams',
      shared: true,
      nodes: ['n1'],
      capacity: 2,
    });
    expect(d.spec.properties).toEqual({ SITE: 'lab', ID: 'uuid-1' });
    expect(d.status.online).toBe(true);
    expect(d.status.conditions.map((c) => `${c.type}=${c.status}`)).toEqual([
      'Online=True',
      'Authenticated=False',
    ]);
    expect(d.metadata.ownerReferences).toEqual([
      { apiVersion: 'leafbridge.io/v1alpha1', kind: 'DiscoveryConfig', name: 'front' },
    ]);
  });

  it('local devices are named per node; shared ones are not', () => {
    expect(deviceName('c', 'id', 'n1')).not.toBe(deviceName('c', 'id', 'n2'));
    expect(deviceName('c', 'id', undefined)).toBe(deviceName('c', 'id', undefined));
  });

  it('marks a vanished device offline at once and deletes it only after the grace period', async () => {
    const h = scriptedHandler('h', false);
    const { m, registry } = manager([h.handler], 400);
    m.sync([config('c', 'h')]);
    h.push([dev('a'), dev('b')]);
    await until(() => registry.list().length === 2, 2000, 'two devices');
    const vanishedAt = Date.now();
    h.push([dev('a')]);
    await until(() => registry.list().some((d) => !d.status.online), 2000, 'offline');
    expect(Date.now() - vanishedAt).toBeLessThan(100);
    const offline = registry.list().find((d) => !d.status.online)!;
    expect(offline.spec.id).toBe('b');
    expect(offline.status.conditions.find((c) => c.type === 'Online')).toMatchObject({
      status: 'False',
      reason: 'Vanished',
    });
    await until(() => registry.list().length === 1, 2000, 'removed after grace');
    expect(Date.now() - vanishedAt).toBeGreaterThanOrEqual(390);
  });

  it('a device that flaps within the grace period keeps its object (same uid), no delete/recreate', async () => {
    const h = scriptedHandler('h', true);
    const { m, registry } = manager([h.handler], 500);
    const events: string[] = [];
    registry.watch((e) => events.push(`${e.type}:${e.object.status.online}`));
    m.sync([config('c', 'h')]);
    h.push([dev('a')]);
    await until(() => registry.list().length === 1, 2000, 'listed');
    const uid = registry.list()[0]!.metadata.uid;
    for (let i = 0; i < 5; i++) {
      h.push([]);
      h.push([dev('a')]);
    }
    await new Promise((r) => setTimeout(r, 800)); // past the grace period
    expect(registry.list()).toHaveLength(1);
    expect(registry.list()[0]!.metadata.uid).toBe(uid);
    expect(registry.list()[0]!.status.online).toBe(true);
    expect(events.filter((e) => e.startsWith('DELETED'))).toEqual([]);
    expect(events[0]).toBe('ADDED:true');
  });

  it('an unchanged list writes nothing', async () => {
    const h = scriptedHandler('h', true);
    const { m, registry } = manager([h.handler]);
    let writes = 0;
    registry.watch(() => writes++);
    m.sync([config('c', 'h')]);
    for (let i = 0; i < 10; i++) h.push([dev('a'), dev('b')]);
    await until(() => registry.list().length === 2, 2000, 'listed');
    await new Promise((r) => setTimeout(r, 100));
    expect(writes).toBe(2);
  });

  it('a failing handler is restarted with backoff and says why; another handler carries on', async () => {
    const bad = scriptedHandler('bad', true);
    const good = scriptedHandler('good', true);
    const { m, registry } = manager([bad.handler, good.handler]);
    m.sync([config('b', 'bad'), config('g', 'good'), config('u', 'nosuch')]);
    bad.push(new Error('socket exploded'));
    good.push([dev('g1')]);
    await until(() => registry.list().length === 1, 2000, 'good device listed');
    await until(() => bad.starts >= 2, 3000, 'bad handler restarted');
    const byName = Object.fromEntries(m.configs().map((c) => [c.metadata.name, c]));
    const running = byName.b?.status.conditions.find((c) => c.type === 'Running');
    expect(running).toMatchObject({ status: 'False', reason: 'HandlerFailed', message: 'socket exploded' });
    expect(byName.u?.status.conditions.find((c) => c.type === 'Valid')).toMatchObject({
      status: 'False',
      reason: 'UnknownHandler',
    });
    bad.push([dev('b1')]);
    await until(() => registry.list().length === 2, 3000, 'bad handler back');
  });

  it('ignores unusable devices from a handler (no id, huge id, non-string properties)', async () => {
    const h = scriptedHandler('h', true);
    const { m, registry } = manager([h.handler]);
    m.sync([config('c', 'h')]);
    h.push([
      { id: '', properties: {} },
      { id: 'x'.repeat(1000), properties: {} },
      { id: 'n', properties: { A: 1 as unknown as string } },
      dev('ok'),
    ]);
    await until(() => registry.list().length === 1, 2000, 'the good one');
    expect(registry.list()[0]!.spec.id).toBe('ok');
  });

  describe('Device names', () => {
    /** A Device as an older agent stored it, under `name`. */
    const stored = (name: string, id: string): DeviceObject => ({
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'Device',
      metadata: {
        name,
        namespace: 'default',
        uid: `uid-${name}`,
        creationTimestamp: new Date().toISOString(),
        resourceVersion: '0',
        labels: { 'leafbridge.io/config': 'front', 'leafbridge.io/handler': 'cams' },
        ownerReferences: [{ apiVersion: 'leafbridge.io/v1alpha1', kind: 'DiscoveryConfig', name: 'front' }],
      },
      spec: {
        id,
        configName: 'front',
        handler: 'cams',
        shared: true,
        nodes: ['n1'],
        capacity: 1,
        properties: {},
        deviceNodes: [],
        mounts: [],
      },
      status: { online: true, lastSeen: new Date().toISOString(), conditions: [] },
    });
    function logCapture() {
      const lines: Record<string, unknown>[] = [];
      const destination = new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
          cb();
        },
      });
      return { logger: createLogger({ level: 'info', destination }), lines };
    }

    it('keeps two ids apart whose 6-digit names collide (echo-454 and echo-2540 both hash to front-66ef85)', async () => {
      expect(legacyDeviceName('front', 'echo-454', undefined)).toBe(
        legacyDeviceName('front', 'echo-2540', undefined),
      );
      const cams = scriptedHandler('cams', true);
      const { m, registry, store } = manager([cams.handler]);
      m.sync([config('front', 'cams')]);
      cams.push([dev('echo-454'), dev('echo-2540')]);
      await until(async () => (await store.list()).length === 2, 2000, 'two Devices');
      expect(
        registry
          .list()
          .map((d) => d.spec.id)
          .sort(),
      ).toEqual(['echo-2540', 'echo-454']);
    });

    it('5,000 devices in one config are 5,000 Devices (the 6-digit names lost one of them)', async () => {
      const echo = scriptedHandler('echo', true);
      const { m, registry, store } = manager([echo.handler]);
      m.sync([config('front', 'echo')]);
      echo.push(Array.from({ length: 5_000 }, (_, i) => dev(`echo-${i}`)));
      await until(() => registry.list().length >= 4_999, 10_000, 'the devices');
      await new Promise((r) => setTimeout(r, 200));
      expect(registry.list()).toHaveLength(5_000);
      expect(await store.list()).toHaveLength(5_000);
    }, 20_000);

    it('a Device stored under its 6-digit name keeps it, and is not created again under the new one', async () => {
      const store = new MemoryDeviceStore(new DeviceRegistry(), systemClock);
      const legacy = legacyDeviceName('front', 'uuid-1', undefined);
      const { uid } = await store.upsert(stored(legacy, 'uuid-1')).then((d) => d.metadata);
      const cams = scriptedHandler('cams', true);
      const { m, registry } = manager([cams.handler], 300, 'n1', store);
      m.sync([config('front', 'cams')]);
      cams.push([dev('uuid-1'), dev('uuid-2')]);
      await until(() => registry.list().length === 2, 2000, 'both listed');
      const names = registry.list().map((d) => d.metadata.name);
      expect(names).toContain(legacy);
      expect(names).toContain(deviceName('front', 'uuid-2', undefined));
      await new Promise((r) => setTimeout(r, 100));
      const all = await store.list();
      expect(all.map((d) => d.metadata.name).sort()).toEqual([...names].sort());
      expect((await store.get(legacy))?.metadata.uid).toBe(uid);
      expect((await store.get(legacy))?.spec.properties).toEqual({ SITE: 'lab', ID: 'uuid-1' });
    });

    it('a device whose id changed (formerIds) keeps the stored Device; a second claimant of that id does not', async () => {
      const store = new MemoryDeviceStore(new DeviceRegistry(), systemClock);
      const legacy = legacyDeviceName('front', 'urn:plc:1', undefined);
      const { uid } = (await store.upsert(stored(legacy, 'urn:plc:1'))).metadata;
      const plcs = scriptedHandler('cams', true);
      const { m, registry } = manager([plcs.handler], 300, 'n1', store);
      m.sync([config('front', 'cams')]);
      const a = 'urn:plc:1|opc.tcp://10.0.0.1:4840';
      const b = 'urn:plc:1|opc.tcp://10.0.0.2:4840';
      plcs.push([dev(a, { formerIds: ['urn:plc:1'] }), dev(b, { formerIds: ['urn:plc:1'] })]);
      await until(() => registry.list().length === 2, 2000, 'both listed');
      await until(async () => (await store.get(legacy))?.spec.id === a, 2000, 'the stored Device, adopted');
      expect((await store.get(legacy))?.metadata.uid).toBe(uid);
      expect((await store.get(deviceName('front', b, undefined)))?.spec.id).toBe(b);
      expect((await store.list()).map((d) => d.spec.id).sort()).toEqual([a, b]);
    });

    it('never takes over a name another id holds (a hash collision): logs it once and takes the next alternative', async () => {
      const store = new MemoryDeviceStore(new DeviceRegistry(), systemClock);
      const taken = deviceName('front', 'uuid-1', undefined);
      await store.upsert(stored(taken, 'someone-else'));
      const { logger, lines } = logCapture();
      const cams = scriptedHandler('cams', true);
      const { m, registry } = manager([cams.handler], 300, 'n1', store, logger);
      m.sync([config('front', 'cams')]);
      cams.push([dev('uuid-1')]);
      cams.push([dev('uuid-1', { properties: { ID: 'again' } })]);
      await until(() => registry.list()[0]?.spec.properties.ID === 'again', 2000, 'the second list');
      const mine = registry.list()[0]!;
      expect(mine.metadata.name).toBe(deviceName('front', 'uuid-1', undefined, 1));
      expect(mine.metadata.name).not.toBe(taken);
      expect((await store.get(taken))?.spec.id).toBe('someone-else');
      const collisions = lines.filter((l) => String(l.msg).startsWith('Device name collision'));
      expect(collisions).toEqual([
        expect.objectContaining({ level: 50, id: 'uuid-1', heldBy: 'someone-else' }),
      ]);
    });
  });

  describe('the shared view (the device store), two nodes', () => {
    const nodes = async (store: MemoryDeviceStore, name: string) => (await store.get(name))?.spec.nodes;

    it('one shared camera seen by two nodes is one Device listing both; one node loses it, it stays with the other', async () => {
      const store = new MemoryDeviceStore(new DeviceRegistry(), systemClock);
      const h1 = scriptedHandler('cams', true);
      const h2 = scriptedHandler('cams', true);
      const a = manager([h1.handler], 300, 'n1', store);
      const b = manager([h2.handler], 300, 'n2', store);
      a.m.sync([config('front', 'cams')]);
      b.m.sync([config('front', 'cams')]);
      const name = deviceName('front', 'uuid-1', undefined);
      h1.push([dev('uuid-1')]);
      h2.push([dev('uuid-1')]);
      await until(async () => (await nodes(store, name))?.length === 2, 2000, 'both nodes listed');
      expect(await store.list()).toHaveLength(1);
      expect(await nodes(store, name)).toEqual(['n1', 'n2']);

      h1.push([]);
      await until(async () => (await nodes(store, name))?.length === 1, 2000, 'n1 gone from nodes');
      expect(await nodes(store, name)).toEqual(['n2']);
      expect((await store.get(name))?.status.online).toBe(true);
      await new Promise((r) => setTimeout(r, 500)); // past n1's grace period: n2 still sees it
      expect((await store.get(name))?.spec.nodes).toEqual(['n2']);
      expect(a.registry.list()).toEqual([]); // n1's own view: gone after its grace period
      expect(b.registry.list()).toHaveLength(1);

      const lostAt = Date.now();
      h2.push([]);
      await until(async () => (await store.get(name))?.status.online === false, 2000, 'offline');
      expect((await store.get(name))?.spec.nodes).toEqual([]);
      await until(async () => (await store.get(name)) === undefined, 2000, 'deleted after grace');
      expect(Date.now() - lostAt).toBeGreaterThanOrEqual(290);
    });

    it('local devices are one Device per node; a device deleted from the store by someone else is written again', async () => {
      const store = new MemoryDeviceStore(new DeviceRegistry(), systemClock);
      const h1 = scriptedHandler('tty', false);
      const h2 = scriptedHandler('tty', false);
      manager([h1.handler], 300, 'n1', store).m.sync([config('serial', 'tty')]);
      manager([h2.handler], 300, 'n2', store).m.sync([config('serial', 'tty')]);
      h1.push([dev('ttyUSB0')]);
      h2.push([dev('ttyUSB0')]);
      await until(async () => (await store.list()).length === 2, 2000, 'two devices');
      const all = await store.list();
      expect(all.map((d) => d.spec.nodes).sort()).toEqual([['n1'], ['n2']]);
      const victim = all[0]!.metadata.name;
      await store.delete(victim);
      await until(async () => (await store.get(victim)) !== undefined, 2000, 'written again');
    });

    it('a config that goes away takes its devices with it; a changed config restarts its handler', async () => {
      const store = new MemoryDeviceStore(new DeviceRegistry(), systemClock);
      const h = scriptedHandler('cams', true);
      const { m, registry } = manager([h.handler], 60_000, 'n1', store);
      m.sync([config('front', 'cams')]);
      h.push([dev('uuid-1')]);
      await until(async () => (await store.list()).length === 1, 2000, 'listed');
      m.sync([config('front', 'cams', 3)]);
      await until(() => h.starts === 2, 2000, 'restarted');
      h.push([dev('uuid-1')]);
      await until(async () => (await store.list())[0]?.spec.capacity === 3, 2000, 'capacity 3');
      m.sync([]);
      await until(async () => (await store.list()).length === 0, 2000, 'devices gone with the config');
      expect(registry.list()).toEqual([]);
      expect(m.configs()).toEqual([]);
    });

    it('bad details: Valid=False with the reason and the field, no handler run; status reported through the callback', async () => {
      const h = scriptedHandler('cams', true);
      const reports: { name: string; status: unknown }[] = [];
      const m = new DiscoveryManager({
        node: 'n1',
        namespace: 'default',
        handlers: [h.handler],
        registry: new DeviceRegistry(),
        store: new MemoryDeviceStore(new DeviceRegistry(), systemClock),
        logger: silentLogger(),
        clock: systemClock,
        gracePeriodMs: 1000,
        onConfigStatus: (name, status) => reports.push({ name, status }),
      });
      stops.push(() => m.stop());
      const bad = config('front', 'cams');
      bad.spec.handler.details = { label: 7 };
      m.sync([bad]);
      await until(() => reports.length > 0, 2000, 'a status report');
      expect(reports[0]).toMatchObject({
        name: 'front',
        status: {
          devices: 0,
          conditions: [{ type: 'Valid', status: 'False', reason: 'InvalidDetails' }],
        },
      });
      expect(JSON.stringify(reports[0])).toContain('spec.handler.details.label');
      expect(h.starts).toBe(0);
      expect(m.runtime('front')[0]).toMatchObject({ type: 'Valid', status: 'False' });
    });
  });
});
