import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreSlotClaims } from '../../../src/deviceplugin/storeClaims.js';
import type { DeviceObject } from '../../../src/model/resources.js';
import { DeviceRegistry } from '../../../src/registry/deviceRegistry.js';
import type { DeviceStoreEvent, UpdateOptions } from '../../../src/registry/deviceStore.js';
import { MemoryDeviceStore } from '../../../src/registry/memoryDeviceStore.js';
import { type Clock, systemClock } from '../../../src/util/clock.js';
import { LeafbridgeError } from '../../../src/util/errors.js';
import { createLogger, type Logger } from '../../../src/util/logger.js';
import { deviceObject } from '../../helpers/deviceObjects.js';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const A = { node: 'n1', resource: 'leafbridge.io/cam' };
const B = { node: 'n2', resource: 'leafbridge.io/cam' };

function device(name: string, shared = true, slots?: DeviceObject['status']['slots']): DeviceObject {
  return deviceObject(name, {
    spec: { shared, nodes: ['n1', 'n2'], capacity: 2 },
    status: { lastSeen: new Date(T0).toISOString(), ...(slots && { slots }) },
  });
}

/**
 * A memory store whose server can be taken away (writes that must land now are then refused), that can refuse
 * writes for another reason, and whose watch can lag behind its writes as the Kubernetes store's does.
 */
class OutageStore extends MemoryDeviceStore {
  down = false;
  queued = 0;
  refuse: LeafbridgeError | undefined;
  lagging = false;
  private readonly late: (() => void)[] = [];
  override watch(listener: (e: DeviceStoreEvent) => void): () => void {
    return super.watch((e) => (this.lagging ? this.late.push(() => listener(e)) : listener(e)));
  }
  /** Delivers the watch events held back while lagging. */
  catchUp(): void {
    this.lagging = false;
    for (const deliver of this.late.splice(0)) deliver();
  }
  override update(
    name: string,
    mutate: (current: DeviceObject | undefined) => DeviceObject | null,
    options?: UpdateOptions,
  ): Promise<DeviceObject | undefined> {
    if (this.refuse) return Promise.reject(this.refuse);
    if (this.down && options?.now) {
      return Promise.reject(new LeafbridgeError('API_UNREACHABLE', 'no answer from the API server'));
    }
    if (this.down) {
      this.queued++;
      return new Promise(() => {});
    }
    return super.update(name, mutate);
  }
}

function logged(): { logger: Logger; lines: () => { level: number; msg: string }[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  return { logger, lines: () => lines.map((l) => JSON.parse(l)) };
}

describe('StoreSlotClaims', () => {
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const s of stops.splice(0)) s();
  });

  function setup(devices: DeviceObject[] = [device('cam'), device('cam2')]) {
    const clock: Clock = { ...systemClock, now: () => T0 };
    const store = new OutageStore(new DeviceRegistry(), clock);
    const node = async (logger: Logger = logged().logger) => {
      const claims = new StoreSlotClaims({ store, logger, clock });
      await claims.start();
      stops.push(() => claims.stop());
      return claims;
    };
    return { store, node, ready: Promise.all(devices.map((d) => store.upsert(d))) };
  }

  it('loads the claims recorded on the Devices when it starts, and tells its watchers', async () => {
    const since = '2026-11-30T08:00:00.000Z';
    const { store } = setup([]);
    await store.upsert(
      device('cam', true, { 'cam-0': { ...A, since }, 'cam-1': { ...B, since: 'not a time' } }),
    );
    const claims = new StoreSlotClaims({ store, logger: logged().logger });
    let heard = 0;
    claims.watch(() => heard++);
    await claims.start();
    stops.push(() => claims.stop());
    expect(heard).toBe(1);
    expect(claims.holder('cam-0')).toEqual({ slot: 'cam-0', device: 'cam', ...A, since: Date.parse(since) });
    expect(claims.holder('cam-1')).toEqual({ slot: 'cam-1', device: 'cam', ...B, since: 0 });
    expect(claims.held('n1').map((c) => c.slot)).toEqual(['cam-0']);
  });

  it('records a claim on the Device before answering, and every node sees it', async () => {
    const { store, node, ready } = setup();
    await ready;
    const [one, two] = [await node(), await node()];
    let heard = 0;
    one.watch(() => heard++);
    expect(await one.claim([{ slot: 'cam-0', device: 'cam' }], A)).toEqual({ conflicts: [] });
    const since = new Date(T0).toISOString();
    expect((await store.get('cam'))?.status.slots).toEqual({ 'cam-0': { ...A, since } });
    expect(one.holder('cam-0')).toEqual({ slot: 'cam-0', device: 'cam', ...A, since: T0 });
    expect(two.holder('cam-0')).toEqual({ slot: 'cam-0', device: 'cam', ...A, since: T0 });
    expect(heard).toBeGreaterThan(0);
    // The same holder claims again: no conflict, one record.
    expect(await one.claim([{ slot: 'cam-0', device: 'cam' }], A)).toEqual({ conflicts: [] });
    expect(Object.keys((await store.get('cam'))?.status.slots ?? {})).toEqual(['cam-0']);
  });

  it('of two nodes claiming one slot, the second is told who holds it and records nothing', async () => {
    const { store, node, ready } = setup();
    await ready;
    const [one, two] = [await node(), await node()];
    await one.claim([{ slot: 'cam-0', device: 'cam' }], A);
    const { conflicts } = await two.claim(
      [
        { slot: 'cam-1', device: 'cam' },
        { slot: 'cam-0', device: 'cam' },
      ],
      B,
    );
    expect(conflicts).toEqual([{ slot: 'cam-0', device: 'cam', ...A, since: T0 }]);
    expect(Object.keys((await store.get('cam'))?.status.slots ?? {})).toEqual(['cam-0']);
    expect(two.holder('cam-1')).toBeUndefined();
    // Another resource on the same node is another holder too.
    const other = await one.claim([{ slot: 'cam-0', device: 'cam' }], { node: 'n1', resource: 'x/y' });
    expect(other.conflicts.map((c) => c.resource)).toEqual([A.resource]);
  });

  it('is all or nothing across Devices: a conflict on the second undoes the claim on the first', async () => {
    const { store, node, ready } = setup();
    await ready;
    const [one, two] = [await node(), await node()];
    await one.claim([{ slot: 'cam2-0', device: 'cam2' }], A);
    const { conflicts } = await two.claim(
      [
        { slot: 'cam-0', device: 'cam' },
        { slot: 'cam-1', device: 'cam' },
        { slot: 'cam2-0', device: 'cam2' },
      ],
      B,
    );
    expect(conflicts.map((c) => [c.slot, c.node])).toEqual([['cam2-0', 'n1']]);
    await expect.poll(async () => (await store.get('cam'))?.status.slots).toEqual({});
    expect(two.holder('cam-0')).toBeUndefined();
    expect(two.held('n2')).toEqual([]);
  });

  it('a Device not in the store cannot be claimed, and the slots claimed before it are released', async () => {
    const { store, node, ready } = setup();
    await ready;
    const one = await node();
    const claim = one.claim(
      [
        { slot: 'cam-0', device: 'cam' },
        { slot: 'gone-0', device: 'gone' },
      ],
      A,
    );
    await expect(claim).rejects.toMatchObject({
      code: 'DEVICE_NOT_STORED',
      message: 'device gone is not in the device store (yet)',
    });
    expect(await store.get('gone')).toBeUndefined();
    expect(one.holder('cam-0')).toBeUndefined();
    await expect.poll(async () => (await store.get('cam'))?.status.slots).toEqual({});
  });

  it('refuses a claim on a shared Device while the server does not answer; queues one on a local Device', async () => {
    const { store, node, ready } = setup([device('cam'), device('serial', false)]);
    await ready;
    const { logger, lines } = logged();
    const one = await node(logger);
    store.down = true;
    await expect(one.claim([{ slot: 'cam-0', device: 'cam' }], A)).rejects.toMatchObject({
      code: 'API_UNREACHABLE',
    });
    expect(one.holder('cam-0')).toBeUndefined();
    let heard = 0;
    const unwatch = one.watch(() => heard++);
    expect(await one.claim([{ slot: 'serial-0', device: 'serial' }], A)).toEqual({ conflicts: [] });
    expect(store.queued).toBe(1);
    // Claimed here at once, while the write waits for the server: another resource of this node is refused.
    expect(one.holder('serial-0')).toMatchObject({ ...A, since: T0 });
    expect(heard).toBe(1);
    const other = { node: 'n1', resource: 'leafbridge.io/serial' };
    expect((await one.claim([{ slot: 'serial-0', device: 'serial' }], other)).conflicts).toEqual([
      { slot: 'serial-0', device: 'serial', ...A, since: T0 },
    ]);
    expect(store.queued).toBe(1); // a refused claim queues no write
    unwatch();
    expect(await one.release(['serial-0'], 'n1')).toEqual(['serial-0']);
    expect(heard).toBe(1);
    expect(
      lines().find((l) => l.msg === 'API server unreachable; claim on a local device queued'),
    ).toMatchObject({ ns: 'deviceplugin:claims', device: 'serial' });
  });

  it('a claim queued on a local Device through an outage leaves the claims on other Devices with their Devices', async () => {
    const { store, node, ready } = setup([device('cam'), device('serial', false), device('serial2', false)]);
    await ready;
    const one = await node();
    await one.claim([{ slot: 'cam-0', device: 'cam' }], A);
    await one.claim([{ slot: 'serial2-0', device: 'serial2' }], A);
    store.down = true;
    expect(await one.claim([{ slot: 'serial-0', device: 'serial' }], A)).toEqual({ conflicts: [] });
    // A release goes to the Device its claim names: each claim must still name its own.
    expect(
      one
        .held('n1')
        .map((c) => `${c.slot}@${c.device}`)
        .sort(),
    ).toEqual(['cam-0@cam', 'serial-0@serial', 'serial2-0@serial2']);
  });

  it('a claim on a local Device refused for another reason than an unreachable server fails; nothing is queued', async () => {
    const { store, node, ready } = setup([device('serial', false)]);
    await ready;
    const one = await node();
    store.refuse = new LeafbridgeError('API_FORBIDDEN', 'devices.leafbridge.io "serial" is forbidden');
    await expect(one.claim([{ slot: 'serial-0', device: 'serial' }], A)).rejects.toMatchObject({
      code: 'API_FORBIDDEN',
    });
    expect(store.queued).toBe(0);
    expect(one.holder('serial-0')).toBeUndefined();
  });

  it('with a watch that lags behind the writes, a claim and a release show here and reach the watchers at once', async () => {
    const { store, node, ready } = setup();
    await ready;
    const one = await node();
    let heard = 0;
    one.watch(() => heard++);
    store.lagging = true;
    await one.claim([{ slot: 'cam-0', device: 'cam' }], A);
    expect(one.holder('cam-0')).toEqual({ slot: 'cam-0', device: 'cam', ...A, since: T0 });
    expect(heard).toBe(1);
    expect(await one.release(['cam-0'], 'n1')).toEqual(['cam-0']);
    expect(one.holder('cam-0')).toBeUndefined();
    expect(heard).toBe(2);
    store.catchUp();
    expect(one.holder('cam-0')).toBeUndefined();
    expect((await store.get('cam'))?.status.slots).toEqual({});
  });

  it('a release takes off the Device only the released slots, and only while this node holds them there', async () => {
    const { store, node, ready } = setup();
    await ready;
    const one = await node();
    const since = new Date(T0).toISOString();
    await one.claim(
      [
        { slot: 'cam-0', device: 'cam' },
        { slot: 'cam-1', device: 'cam' },
      ],
      A,
    );
    await one.release(['cam-0'], 'n1');
    expect((await store.get('cam'))?.status.slots).toEqual({ 'cam-1': { ...A, since } });
    // Meanwhile cam-1 went to n2 on the Device (this node's claim was cleared and n2 claimed it), and this
    // node has not heard yet: its release must not take n2's claim away.
    store.lagging = true;
    await store.update('cam', (cur) =>
      cur ? { ...cur, status: { ...cur.status, slots: { 'cam-1': { ...B, since } } } } : null,
    );
    expect(await one.release(['cam-1'], 'n1')).toEqual(['cam-1']);
    expect((await store.get('cam'))?.status.slots).toEqual({ 'cam-1': { ...B, since } });
    store.catchUp();
    expect(one.holder('cam-1')?.node).toBe('n2');
  });

  it('releases only its own slots, at once here and on the Device when the write lands', async () => {
    const { store, node, ready } = setup();
    await ready;
    const [one, two] = [await node(), await node()];
    await one.claim(
      [
        { slot: 'cam-0', device: 'cam' },
        { slot: 'cam2-0', device: 'cam2' },
      ],
      A,
    );
    await two.claim([{ slot: 'cam-1', device: 'cam' }], B);
    let heard = 0;
    one.watch(() => heard++);
    expect(await one.release(['cam-1', 'nothing'], 'n1')).toEqual([]);
    expect(heard).toBe(0);
    expect(await one.release(['cam-0', 'cam-0', 'cam-1', 'cam2-0'], 'n1')).toEqual(['cam-0', 'cam2-0']);
    expect(one.holder('cam-0')).toBeUndefined();
    expect(heard).toBeGreaterThan(0);
    await expect
      .poll(async () => (await store.get('cam'))?.status.slots)
      .toEqual({ 'cam-1': { ...B, since: new Date(T0).toISOString() } });
    expect((await store.get('cam2'))?.status.slots).toEqual({});
    expect(two.holder('cam-0')).toBeUndefined();
    expect(two.holder('cam-1')?.node).toBe('n2');
  });

  it('a release that cannot be written is logged; a release on a Device with no slots writes nothing', async () => {
    const { store, node, ready } = setup();
    await ready;
    const { logger, lines } = logged();
    const one = await node(logger);
    await one.claim([{ slot: 'cam-0', device: 'cam' }], A);
    const before = (await store.get('cam'))?.metadata.resourceVersion;
    // Someone else cleared the slots meanwhile: nothing to write.
    await store.update('cam', (cur) =>
      cur ? { ...cur, status: { ...cur.status, slots: undefined } } : null,
    );
    const cleared = (await store.get('cam'))?.metadata.resourceVersion;
    expect(cleared).not.toBe(before);
    await one.claim([{ slot: 'cam2-0', device: 'cam2' }], A);
    await store.delete('cam2');
    expect(one.holder('cam2-0')).toBeUndefined();
    const failing = await node(logger);
    await failing.claim([{ slot: 'cam-1', device: 'cam' }], A);
    store.update = () => Promise.reject(new Error('write refused'));
    expect(await failing.release(['cam-1'], 'n1')).toEqual(['cam-1']);
    await expect
      .poll(() => lines().find((l) => l.msg === 'slot release not recorded'))
      .toMatchObject({ device: 'cam', slots: ['cam-1'], err: 'write refused' });
  });

  it('follows changes made elsewhere, contains a failing watcher, and stops following when stopped', async () => {
    const { store, node, ready } = setup();
    await ready;
    const { logger, lines } = logged();
    const one = await node(logger);
    one.watch(() => {
      throw new Error('listener broke');
    });
    const since = '2026-12-01T09:00:00.000Z';
    await store.update('cam', (cur) =>
      cur ? { ...cur, status: { ...cur.status, slots: { 'cam-1': { ...B, since } } } } : null,
    );
    expect(one.holder('cam-1')).toEqual({ slot: 'cam-1', device: 'cam', ...B, since: Date.parse(since) });
    expect(lines().find((l) => l.msg === 'slot claim listener failed')).toMatchObject({
      err: 'listener broke',
    });
    await store.update('cam', (cur) => (cur ? { ...cur, status: { ...cur.status, slots: {} } } : null));
    expect(one.holder('cam-1')).toBeUndefined();
    one.stop();
    await store.update('cam', (cur) =>
      cur ? { ...cur, status: { ...cur.status, slots: { 'cam-1': { ...B, since } } } } : null,
    );
    expect(one.holder('cam-1')).toBeUndefined();
  });
});
