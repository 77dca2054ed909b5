import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DevicePluginManager,
  type DevicePluginManagerOptions,
  type SlotUsage,
} from '../../../src/deviceplugin/manager.js';
import { MemorySlotClaims } from '../../../src/deviceplugin/slots.js';
import type { DeviceObject } from '../../../src/model/resources.js';
import { DeviceRegistry } from '../../../src/registry/deviceRegistry.js';
import { deviceObject } from '../../helpers/deviceObjects.js';
import { captureLogs, type LogCapture } from '../../helpers/logs.js';
import { type ManualClock, manualClock } from '../../helpers/manualClock.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/wait.js';

// The manager without a kubelet: what it offers (status()), how it reconciles claims with what the kubelet
// reports in use, and what it logs. Allocate goes through the kubelet: test/integration/devicePluginManager.

const NODE = 'edge-1';
const CAM = 'cams-4d5e6f';
const SERIAL = 'serial-1a2b3c';
const CAM2 = 'cams-7a8b9c';
const R = {
  cam: `leafbridge.io/${CAM}`,
  cam2: `leafbridge.io/${CAM2}`,
  camConfig: 'leafbridge.io/cams',
  serial: `leafbridge.io/${SERIAL}`,
  serialConfig: 'leafbridge.io/serial',
};
/** Longer than any interval here: the servers' own polls (no kubelet to find) never come due. */
const POLL_MS = 3_600_000;
/** When the manager's own timers are due, leaving out the servers' polls. */
const scheduled = (clock: ManualClock) => clock.dueAt().filter((at) => at < POLL_MS);

function device(name: string, configName: string, capacity = 1, online = true): DeviceObject {
  return deviceObject(name, { configName, spec: { nodes: [NODE], capacity }, status: { online } });
}

describe('DevicePluginManager without a kubelet', () => {
  let dir: ReturnType<typeof tempDir>;
  let registry: DeviceRegistry;
  let log: LogCapture;
  let manager: DevicePluginManager | undefined;

  beforeEach(() => {
    dir = tempDir('lb-dpm-unit-');
    registry = new DeviceRegistry();
    log = captureLogs();
  });
  afterEach(async () => {
    await manager?.stop();
    manager = undefined;
    dir.remove();
  });

  const health = (resource: string) => {
    const s = manager?.status().find((x) => x.resourceName === resource);
    return Object.fromEntries((s?.devices ?? []).map((d) => [d.id, d.health]));
  };
  const offered = () =>
    manager?.status().map((s) => [s.resourceName, s.kind, s.source, s.devices.map((d) => d.id)]);
  /** A manager on the test's registry and directory, started; `options` adds to the defaults or replaces them. */
  const startManager = async (
    options: Partial<DevicePluginManagerOptions> = {},
  ): Promise<DevicePluginManager> => {
    manager = new DevicePluginManager({
      registry,
      node: NODE,
      dir: dir.path,
      logger: log.logger,
      pollIntervalMs: POLL_MS,
      ...options,
    });
    await manager.start();
    return manager;
  };

  it('releases at start the claims the kubelet no longer reports once 2 min old, then looks every 30 s; another node’s claims stay', async () => {
    registry.put(device(CAM, 'cams', 2));
    registry.put(device(SERIAL, 'serial'));
    const clock = manualClock();
    const claims = new MemorySlotClaims(clock);
    await claims.claim([{ slot: `${CAM}-0`, device: CAM }], { node: NODE, resource: R.cam });
    await claims.claim([{ slot: `${CAM}-1`, device: CAM }], { node: 'edge-2', resource: R.cam });
    clock.set(60_000);
    await claims.claim([{ slot: `${SERIAL}-0`, device: SERIAL }], { node: NODE, resource: R.serial });
    clock.set(120_000); // CAM-0 is exactly 2 min old, SERIAL-0 1 min
    let answer: SlotUsage | undefined = [];
    let looks = 0;
    const inUse = async () => {
      looks++;
      return answer;
    };
    manager = await startManager({ clock, claims, inUse });
    await manager.start(); // a second start changes nothing: still one look at a time
    // a slot held by another node is Unhealthy on both resources here
    expect(health(R.cam)).toEqual({ [`${CAM}-0`]: 'Healthy', [`${CAM}-1`]: 'Unhealthy' });
    expect(health(R.camConfig)[`${CAM}-1`]).toBe('Unhealthy');

    const holder = (slot: string) => claims.holder(slot)?.node;
    /** Runs the look due after `ms` and waits until the next one is scheduled. */
    const look = async (ms: number) => {
      clock.advance(ms);
      const now = clock.now();
      await until(() => scheduled(clock).some((at) => at > now), 2000, 'the next look scheduled');
    };
    await look(0);
    expect(looks).toBe(1);
    expect([holder(`${CAM}-0`), holder(`${CAM}-1`), holder(`${SERIAL}-0`)]).toEqual([
      undefined,
      'edge-2',
      NODE,
    ]);
    expect(
      log
        .lines()
        .filter((l) => l.msg === 'slots released')
        .map((l) => l.slots),
    ).toEqual([[`${CAM}-0`]]);
    expect(scheduled(clock)).toEqual([150_000]);

    clock.advance(29_999);
    expect(looks).toBe(1);
    await look(1); // 150 s: SERIAL-0 is 90 s old
    expect(looks).toBe(2);
    expect(holder(`${SERIAL}-0`)).toBe(NODE);
    answer = [`${SERIAL}-0`];
    await look(30_000); // 180 s: 2 min old, but in use
    expect(holder(`${SERIAL}-0`)).toBe(NODE);
    answer = undefined; // the kubelet's list is not available: nothing is released
    await look(30_000);
    expect([looks, holder(`${SERIAL}-0`)]).toEqual([4, NODE]);
    answer = [];
    await look(30_000);
    expect([looks, holder(`${SERIAL}-0`)]).toEqual([5, undefined]);
    expect(log.lines().filter((l) => l.level === 50)).toEqual([]);
  });

  it('a failed look is logged and the next comes anyway; after stop() no look runs, nor does one in flight release', async () => {
    registry.put(device(CAM, 'cams', 2));
    const clock = manualClock();
    const claims = new MemorySlotClaims(clock);
    await claims.claim([{ slot: `${CAM}-0`, device: CAM }], { node: NODE, resource: R.cam });
    const answers: (() => Promise<SlotUsage>)[] = [
      async () => Promise.reject(new Error('podresources: connection refused')),
      async () => [],
    ];
    let looks = 0;
    const inUse = () => (answers[looks++] ?? (async () => []))();
    manager = await startManager({ clock, claims, inUse, reconcileIntervalMs: 1000, reconcileGraceMs: 0 });
    clock.advance(0);
    await until(() => scheduled(clock).length > 0, 2000, 'the look after the failed one');
    expect(log.lines().filter((l) => l.level === 50)).toEqual([
      expect.objectContaining({
        msg: 'reconciling slots in use failed',
        err: 'podresources: connection refused',
      }),
    ]);
    expect(claims.holder(`${CAM}-0`)?.node).toBe(NODE);
    clock.advance(1000);
    await until(() => claims.holder(`${CAM}-0`) === undefined, 2000, 'the release after the failed look');

    // stopped with a look pending: it never runs
    await until(() => scheduled(clock).length > 0, 2000, 'the next look scheduled');
    await manager.stop();
    clock.advance(10_000);
    expect(looks).toBe(2);

    // stopped while a look waits for the kubelet's answer: the answer releases nothing, no look follows
    await claims.claim([{ slot: `${CAM}-1`, device: CAM }], { node: NODE, resource: R.cam });
    let answer: (usage: SlotUsage) => void = () => {};
    answers[2] = () => new Promise((resolve) => (answer = resolve));
    await manager.start();
    clock.advance(0);
    expect(looks).toBe(3);
    await manager.stop();
    answer([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(claims.holder(`${CAM}-1`)?.node).toBe(NODE);
    expect(scheduled(clock)).toEqual([]);
    clock.advance(10_000);
    expect(looks).toBe(3);
  });

  it.each([
    ['the device first', 'serial', 'other', SERIAL, 'serial'],
    ['the config first', 'a-cam', 'b-cams', 'b-cams', 'other'],
  ])(
    'a DiscoveryConfig named like a device is not offered, and says so (%s); when the device goes, the config is offered',
    async (_order, first, firstConfig, second, secondConfig) => {
      // `first` sorts before `second`; one of them is a device whose name is the other's DiscoveryConfig
      registry.put(device(first, firstConfig));
      registry.put(device(second, secondConfig));
      manager = await startManager();
      const [clash, clashing] =
        first === firstConfig || first === secondConfig ? [first, second] : [second, first];
      const resource = `leafbridge.io/${clash}`;
      expect(offered()).toContainEqual([resource, 'device', clash, [`${clash}-0`]]);
      expect(offered()?.filter((o) => o[0] === resource)).toHaveLength(1);
      expect(
        log.lines().filter((l) => l.msg === 'a DiscoveryConfig has the name of a device; not offered'),
      ).toEqual([expect.objectContaining({ level: 40, resource })]);

      registry.delete(clash);
      await manager.settled();
      const left = [
        [resource, 'config', clash, [`${clashing}-0`]],
        [`leafbridge.io/${clashing}`, 'device', clashing, [`${clashing}-0`]],
      ];
      expect(offered()).toEqual(left.sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)));
    },
  );

  it('a resource whose server cannot start is logged with its name; start() still resolves', async () => {
    registry.put(device(SERIAL, 'serial'));
    const long = join(dir.path, 'x'.repeat(120));
    mkdirSync(long);
    manager = await startManager({ dir: long });
    expect(manager.status().map((s) => [s.resourceName, s.listening])).toEqual([
      ['leafbridge.io/serial', false],
      [R.serial, false],
    ]);
    const errors = log.lines().filter((l) => l.msg === 'device plugin server did not start');
    expect(errors.map((l) => l.resource).sort()).toEqual(['leafbridge.io/serial', R.serial]);
    expect(errors[0]).toMatchObject({
      level: 50,
      code: 'DEVICEPLUGIN_SOCKET_PATH',
      err: expect.stringContaining('is too long for a unix socket'),
    });
  });

  it('logs under deviceplugin:manager each resource offered and withdrawn, and each release that frees slots; a config of two devices is no name clash', async () => {
    registry.put(device(CAM, 'cams', 2));
    registry.put(device(CAM2, 'cams'));
    const claims = new MemorySlotClaims();
    manager = await startManager({ claims });
    await claims.claim([{ slot: `${CAM}-0`, device: CAM }], { node: NODE, resource: R.cam });
    expect(await manager.release([`${CAM}-0`, `${CAM}-1`])).toEqual([`${CAM}-0`]);
    expect(await manager.release([`${CAM}-0`])).toEqual([]); // nothing was held: nothing to say
    registry.delete(CAM2);
    await manager.settled();
    const ns = 'deviceplugin:manager';
    expect(
      log
        .lines()
        .filter((l) => l.ns === ns)
        .map(({ time: _, ...l }) => l),
    ).toEqual([
      { level: 30, ns, resource: R.cam, kind: 'device', source: CAM, msg: 'offering resource' },
      { level: 30, ns, resource: R.camConfig, kind: 'config', source: 'cams', msg: 'offering resource' },
      { level: 30, ns, resource: R.cam2, kind: 'device', source: CAM2, msg: 'offering resource' },
      { level: 30, ns, slots: [`${CAM}-0`], msg: 'slots released' },
      { level: 30, ns, resource: R.cam2, msg: 'resource withdrawn' },
    ]);
  });

  it('without inUse nothing is scheduled: claims stay, however old, until release()', async () => {
    registry.put(device(CAM, 'cams'));
    const clock = manualClock();
    const claims = new MemorySlotClaims(clock);
    await claims.claim([{ slot: `${CAM}-0`, device: CAM }], { node: NODE, resource: R.cam });
    manager = await startManager({ clock, claims });
    expect(scheduled(clock)).toEqual([]);
    clock.advance(POLL_MS - 1); // an hour on: the claim is still held
    expect(claims.holder(`${CAM}-0`)?.node).toBe(NODE);
    expect(await manager.release([`${CAM}-0`])).toEqual([`${CAM}-0`]);
  });

  it('a DiscoveryConfig lists its slots by device name, then index, whatever order the registry gives (a Danish locale sorts "aa" last)', async () => {
    // DeviceRegistry.list() sorts with localeCompare, so on a node whose LANG is da_DK it lists `aa-…` after `ab-…`.
    registry = new (class extends DeviceRegistry {
      override list() {
        return super.list().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, 'da'));
      }
    })();
    registry.put(device('aa-000001', 'door', 2));
    registry.put(device('ab-000002', 'door'));
    expect(registry.list().map((d) => d.metadata.name)).toEqual(['ab-000002', 'aa-000001']);
    manager = await startManager();
    expect(Object.keys(health('leafbridge.io/door'))).toEqual(['aa-000001-0', 'aa-000001-1', 'ab-000002-0']);
  });

  it('a server that cannot be stopped is logged with its resource name; the others still stop', async () => {
    registry.put(device(SERIAL, 'serial'));
    manager = await startManager({ clock: manualClock() });
    const socket = (resource: string) =>
      manager?.status().find((s) => s.resourceName === resource)?.socketPath;
    const [own, config] = [socket(R.serial), socket(R.serialConfig)];
    if (own === undefined || config === undefined) throw new Error('both resources offered');
    // A directory where the device's socket was: removing the socket path when the server stops fails.
    rmSync(own);
    mkdirSync(own);
    registry.delete(SERIAL);
    await manager.settled();
    expect(log.lines().filter((l) => l.msg === 'device plugin server operation failed')).toEqual([
      expect.objectContaining({
        level: 50,
        ns: 'deviceplugin:manager',
        name: R.serial,
        code: 'ERR_FS_EISDIR',
        err: expect.stringContaining('is a directory'),
      }),
    ]);
    expect(manager.status()).toEqual([]);
    expect(existsSync(config)).toBe(false);
  });
});
