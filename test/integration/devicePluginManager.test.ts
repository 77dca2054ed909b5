import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { socketFileName } from '../../src/deviceplugin/convert.js';
import { DevicePluginManager } from '../../src/deviceplugin/manager.js';
import { MemorySlotClaims, slotIds } from '../../src/deviceplugin/slots.js';
import { shorten } from '../../src/model/naming.js';
import type { DeviceObject } from '../../src/model/resources.js';
import { DeviceRegistry } from '../../src/registry/deviceRegistry.js';
import { LeafbridgeError } from '../../src/util/errors.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';
import { deviceObject } from '../helpers/deviceObjects.js';
import { captureLogs } from '../helpers/logs.js';
import { tempDir } from '../helpers/processes.js';
import { isExtendedResourceName, TestKubelet } from '../helpers/testKubelet.js';
import { until } from '../helpers/wait.js';

const NODE = 'edge-1';
const SERIAL = 'serial-1a2b3c';
const CAM = 'cams-4d5e6f';
const CAM2 = 'cams-7a8b9c';
const R = {
  serial: `leafbridge.io/${SERIAL}`,
  serialConfig: 'leafbridge.io/serial',
  cam: `leafbridge.io/${CAM}`,
  cam2: `leafbridge.io/${CAM2}`,
  camConfig: 'leafbridge.io/cams',
};

function device(
  name: string,
  configName: string,
  spec: Partial<DeviceObject['spec']> = {},
  online = true,
): DeviceObject {
  return deviceObject(name, {
    configName,
    spec: { handler: configName === 'serial' ? 'serial' : 'onvif', nodes: [NODE], ...spec },
    status: { online, lastSeen: new Date().toISOString() },
  });
}

const serial = () =>
  device(SERIAL, 'serial', {
    capacity: 1,
    properties: { SERIAL_PORT: '/dev/ttyUSB0', 'serial.baud': '9600' },
    deviceNodes: [{ hostPath: '/dev/ttyUSB0', containerPath: '/dev/sensor' }],
  });
const camera = (online = true) =>
  device(
    CAM,
    'cams',
    {
      capacity: 2,
      properties: { RTSP_URL: 'rtsp://10.0.0.5/stream1', 'onvif.model': 'C100' },
      mounts: [{ hostPath: '/var/lib/leafbridge/calib', containerPath: '/calib', readOnly: true }],
    },
    online,
  );
const camera2 = () =>
  device(CAM2, 'cams', { capacity: 1, properties: { RTSP_URL: 'rtsp://10.0.0.6/stream1' } });

const ids = (name: string, n: number) => Array.from({ length: n }, (_, i) => `${name}-${i}`);
const health = (kubelet: TestKubelet, resource: string) =>
  Object.fromEntries(kubelet.devices(resource).map((d) => [d.ID, d.health]));
const fileId = (path: string) => {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.birthtimeMs}`;
  } catch {
    return undefined;
  }
};
const sockets = (dir: string) => readdirSync(dir).filter((f) => f !== 'kubelet.sock');

describe('DevicePluginManager: Device objects → device-plugin resources at the kubelet', () => {
  let dir: ReturnType<typeof tempDir>;
  let kubelet: TestKubelet;
  let registry: DeviceRegistry;
  let manager: DevicePluginManager;

  const streaming = (resources: string[]) =>
    kubelet.waitFor(
      () =>
        resources.every((r) => {
          const p = kubelet.plugin(r);
          return p?.connected && p.updates.length > 0;
        })
          ? true
          : undefined,
      5000,
      `streams of ${resources.join(', ')}`,
    );

  beforeEach(async () => {
    dir = tempDir('lb-dpm-');
    kubelet = new TestKubelet(dir.path);
    await kubelet.start();
    registry = new DeviceRegistry();
    registry.put(serial());
    registry.put(camera());
    registry.put(camera2());
    registry.put({ ...device('elsewhere-000000', 'cams'), spec: { ...camera().spec, nodes: ['edge-2'] } });
    manager = new DevicePluginManager({ registry, node: NODE, dir: dir.path, logger: silentLogger() });
    await manager.start();
    await streaming(Object.values(R));
  });
  afterEach(async () => {
    await manager.stop();
    await kubelet.stop();
    dir.remove();
  });

  it('registers a resource per device and per DiscoveryConfig, listing the capacity slots', () => {
    expect(kubelet.registrations.map((r) => r.resource_name).sort()).toEqual(Object.values(R).sort());
    expect(kubelet.devices(R.serial)).toEqual([{ ID: `${SERIAL}-0`, health: 'Healthy', topology: null }]);
    expect(health(kubelet, R.cam)).toEqual({ [`${CAM}-0`]: 'Healthy', [`${CAM}-1`]: 'Healthy' });
    expect(kubelet.devices(R.camConfig).map((d) => d.ID)).toEqual([...ids(CAM, 2), ...ids(CAM2, 1)]);
    expect(kubelet.devices(R.serialConfig).map((d) => d.ID)).toEqual([`${SERIAL}-0`]);
    // the device seen by another node only is not offered here
    expect(kubelet.plugin('leafbridge.io/elsewhere-000000')).toBeUndefined();
    expect(manager.status().map((s) => [s.resourceName, s.kind, s.registered])).toEqual([
      [R.camConfig, 'config', true],
      [R.cam, 'device', true],
      [R.cam2, 'device', true],
      [R.serialConfig, 'config', true],
      [R.serial, 'device', true],
    ]);
  });

  it('a camera going offline makes its slots Unhealthy on both resources within 1 s, and Healthy again', async () => {
    const rounds: { offline: number; online: number }[] = [];
    for (let i = 0; i < 5; i++) {
      let since = performance.now();
      registry.put(camera(false));
      const allOff = (d: { ID: string; health: string }[]) =>
        d.filter((x) => x.ID.startsWith(CAM)).every((x) => x.health === 'Unhealthy');
      const [a, b] = await Promise.all([
        kubelet.waitForUpdate(R.cam, allOff, { since, ms: 1000 }),
        kubelet.waitForUpdate(R.camConfig, allOff, { since, ms: 1000 }),
      ]);
      const offline = Math.max(a.at, b.at) - since;
      // the other camera of the config stays Healthy
      expect(health(kubelet, R.camConfig)[`${CAM2}-0`]).toBe('Healthy');
      expect(health(kubelet, R.serial)[`${SERIAL}-0`]).toBe('Healthy');

      if (i === 0) {
        await expect(kubelet.allocate(R.cam, [`${CAM}-0`], { check: false })).rejects.toMatchObject({
          code: status.FAILED_PRECONDITION,
          details: expect.stringContaining(`device ${CAM} is offline`),
        });
      }

      since = performance.now();
      registry.put(camera(true));
      const allOn = (d: { ID: string; health: string }[]) => d.every((x) => x.health === 'Healthy');
      const [c, e] = await Promise.all([
        kubelet.waitForUpdate(R.cam, allOn, { since, ms: 1000 }),
        kubelet.waitForUpdate(R.camConfig, allOn, { since, ms: 1000 }),
      ]);
      rounds.push({ offline, online: Math.max(c.at, e.at) - since });
    }
    const worst = (k: 'offline' | 'online') => Math.max(...rounds.map((r) => r[k]));
    console.info(
      `registry offline → Unhealthy at the kubelet (both resources): max ${worst('offline').toFixed(2)} ms; ` +
        `online → Healthy: max ${worst('online').toFixed(2)} ms (5 rounds)`,
    );
    expect(worst('offline')).toBeLessThan(1000);
  });

  it('Allocate for the serial slot returns its DeviceSpec, properties as envs; the config resource then cannot over-allocate', async () => {
    const response = await kubelet.allocate(R.serial, [`${SERIAL}-0`]);
    expect(response.container_responses).toEqual([
      {
        envs: {
          SERIAL_PORT: '/dev/ttyUSB0',
          'serial.baud': '9600',
          LEAFBRIDGE_DEVICES: SERIAL,
          LEAFBRIDGE_SLOTS: `${SERIAL}-0`,
        },
        devices: [{ host_path: '/dev/ttyUSB0', container_path: '/dev/sensor', permissions: 'rw' }],
        mounts: [],
        annotations: {},
        cdi_devices: [],
      },
    ]);
    // the slot is now Unhealthy on the config resource: the kubelet will not hand it out there
    await kubelet.waitForUpdate(R.serialConfig, (d) => d[0]?.health === 'Unhealthy', { ms: 1000 });
    expect(health(kubelet, R.serial)[`${SERIAL}-0`]).toBe('Healthy');
    await expect(kubelet.allocate(R.serialConfig, [`${SERIAL}-0`])).rejects.toThrow(/not healthy/);
    // and the plugin refuses it even when asked directly
    await expect(kubelet.allocate(R.serialConfig, [`${SERIAL}-0`], { check: false })).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details:
        `allocate ${R.serialConfig}: slots already claimed: ${SERIAL} (capacity 1, 0 free): ` +
        `${SERIAL}-0 is held through ${R.serial} on node ${NODE}`,
    });

    // released (the pod is gone): Healthy on the config resource again, and allocatable there
    const released = performance.now();
    expect(await manager.release([`${SERIAL}-0`])).toEqual([`${SERIAL}-0`]);
    await kubelet.waitForUpdate(R.serialConfig, (d) => d[0]?.health === 'Healthy', {
      since: released,
      ms: 1000,
    });
    const again = await kubelet.allocate(R.serialConfig, [`${SERIAL}-0`]);
    expect(again.container_responses[0]?.devices?.[0]?.host_path).toBe('/dev/ttyUSB0');
    await kubelet.waitForUpdate(R.serial, (d) => d[0]?.health === 'Unhealthy', { ms: 1000 });
  });

  it('a camera slot allocated via the device resource is marked Unhealthy on the config resource only', async () => {
    const since = performance.now();
    await kubelet.allocate(R.cam, [`${CAM}-0`]);
    const update = await kubelet.waitForUpdate(
      R.camConfig,
      (d) => d.find((x) => x.ID === `${CAM}-0`)?.health === 'Unhealthy',
      { since, ms: 1000 },
    );
    expect(health(kubelet, R.camConfig)).toEqual({
      [`${CAM}-0`]: 'Unhealthy',
      [`${CAM}-1`]: 'Healthy',
      [`${CAM2}-0`]: 'Healthy',
    });
    expect(health(kubelet, R.cam)).toEqual({ [`${CAM}-0`]: 'Healthy', [`${CAM}-1`]: 'Healthy' });
    console.info(`Allocate → slot Unhealthy on the config resource in ${(update.at - since).toFixed(2)} ms`);

    // the second slot through the config resource: now the camera is full on both
    await kubelet.allocate(R.camConfig, [`${CAM}-1`]);
    await kubelet.waitForUpdate(R.cam, (d) => d[1]?.health === 'Unhealthy', { ms: 1000 });
    await expect(kubelet.allocate(R.cam, [`${CAM}-1`], { check: false })).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: expect.stringContaining(
        `${CAM} (capacity 2, 0 free): ${CAM}-1 is held through ${R.camConfig}`,
      ),
    });
  });

  it('an init container and an app container of one pod get the same slot; several containers and devices', async () => {
    // the kubelet calls Allocate for the init container, then again with the same slot for the app container
    const init = await kubelet.allocate(R.cam, [`${CAM}-0`]);
    const app = await kubelet.allocate(R.cam, [`${CAM}-0`]);
    expect(app.container_responses).toEqual(init.container_responses);
    expect(app.container_responses[0]?.envs).toMatchObject({
      RTSP_URL: 'rtsp://10.0.0.5/stream1',
      'onvif.model': 'C100',
      LEAFBRIDGE_DEVICES: CAM,
    });
    expect(app.container_responses[0]?.mounts).toEqual([
      { host_path: '/var/lib/leafbridge/calib', container_path: '/calib', read_only: true },
    ]);

    // two containers in one request, and one container with two devices of the config
    const multi = await kubelet.allocate(R.camConfig, [[`${CAM}-1`], [`${CAM2}-0`]]);
    expect(multi.container_responses.map((c) => c.envs?.LEAFBRIDGE_DEVICES)).toEqual([CAM, CAM2]);
    const released = performance.now();
    await manager.release([`${CAM}-1`, `${CAM2}-0`]);
    // held through the config resource, CAM-1 was Unhealthy on the device resource: Healthy there again
    await kubelet.waitForUpdate(R.cam, (d) => d[1]?.health === 'Healthy', { since: released, ms: 1000 });
    const both = await kubelet.allocate(R.camConfig, [`${CAM}-1`, `${CAM2}-0`]);
    expect(both.container_responses[0]?.envs).toEqual({
      RTSP_URL: 'rtsp://10.0.0.5/stream1',
      'onvif.model': 'C100',
      LEAFBRIDGE_DEVICES: `${CAM},${CAM2}`,
      LEAFBRIDGE_SLOTS: `${CAM}-1,${CAM2}-0`,
      LEAFBRIDGE_DEVICE_0_NAME: CAM,
      LEAFBRIDGE_DEVICE_0_RTSP_URL: 'rtsp://10.0.0.5/stream1',
      LEAFBRIDGE_DEVICE_0_ONVIF_MODEL: 'C100',
      LEAFBRIDGE_DEVICE_1_NAME: CAM2,
      LEAFBRIDGE_DEVICE_1_RTSP_URL: 'rtsp://10.0.0.6/stream1',
    });

    // reconcile: the kubelet reports only CAM-0 in use → the others are released
    expect((await manager.reconcile([`${CAM}-0`])).sort()).toEqual([]); // within the grace period
  });

  /** The manager again, with these options. */
  async function restartWith(options: Partial<ConstructorParameters<typeof DevicePluginManager>[0]>) {
    await manager.stop();
    manager = new DevicePluginManager({
      registry,
      node: NODE,
      dir: dir.path,
      logger: silentLogger(),
      ...options,
    });
    await manager.start();
    await streaming(Object.values(R));
  }

  /** The manager again, with no release grace: any claim not in use is released by reconcile. */
  const restartWithoutGrace = () => restartWith({ claims: new MemorySlotClaims(), reconcileGraceMs: 0 });

  it('Allocate refuses a slot with no device here (NOT_FOUND) and slots it cannot claim now (UNAVAILABLE), claiming nothing', async () => {
    let down = false;
    const claims = new (class extends MemorySlotClaims {
      override claim(...args: Parameters<MemorySlotClaims['claim']>) {
        return down
          ? Promise.reject(new LeafbridgeError('API_UNREACHABLE', 'no answer from the API server'))
          : super.claim(...args);
      }
    })();
    await restartWith({ claims });
    await expect(kubelet.allocate(R.cam, [`${CAM}-0`, `${CAM}-7`], { check: false })).rejects.toMatchObject({
      code: status.NOT_FOUND,
      details: `allocate ${R.cam}: unknown device ids: ${CAM}-7`,
    });
    down = true;
    await expect(kubelet.allocate(R.cam, [`${CAM}-0`])).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: `allocate ${R.cam}: the slots cannot be claimed now: no answer from the API server`,
    });
    expect(claims.held(NODE)).toEqual([]);
    down = false;
    await kubelet.allocate(R.cam, [`${CAM}-0`]);
    expect(claims.held(NODE).map((c) => [c.slot, c.resource])).toEqual([[`${CAM}-0`, R.cam]]);
  });

  it('a Device deleted while Allocate records its claim: the answer is made from the Devices as checked', async () => {
    let record: () => void = () => {};
    let recording = false;
    const claims = new (class extends MemorySlotClaims {
      override async claim(...args: Parameters<MemorySlotClaims['claim']>) {
        recording = true;
        await new Promise<void>((resolve) => (record = resolve));
        return super.claim(...args);
      }
    })();
    await restartWith({ claims });
    const allocated = kubelet.allocate(R.camConfig, [`${CAM}-0`, `${CAM2}-0`]);
    await until(() => recording, 2000, 'the claim being recorded');
    registry.delete(CAM2); // the config resource stays: CAM is still in it
    record();
    // the container gets all of both devices, as if CAM2 had gone just after Allocate
    expect((await allocated).container_responses[0]?.envs).toEqual({
      RTSP_URL: 'rtsp://10.0.0.5/stream1',
      'onvif.model': 'C100',
      LEAFBRIDGE_DEVICES: `${CAM},${CAM2}`,
      LEAFBRIDGE_SLOTS: `${CAM}-0,${CAM2}-0`,
      LEAFBRIDGE_DEVICE_0_NAME: CAM,
      LEAFBRIDGE_DEVICE_0_RTSP_URL: 'rtsp://10.0.0.5/stream1',
      LEAFBRIDGE_DEVICE_0_ONVIF_MODEL: 'C100',
      LEAFBRIDGE_DEVICE_1_NAME: CAM2,
      LEAFBRIDGE_DEVICE_1_RTSP_URL: 'rtsp://10.0.0.6/stream1',
    });
  });

  it('RESOURCE_EXHAUSTED names each held slot by device, with its capacity and free slots; nothing is claimed', async () => {
    const claims = new MemorySlotClaims();
    await restartWith({ claims });
    // another node holds CAM-0 and CAM2-0 (its claims reach this node through the shared store)
    await claims.claim([{ slot: `${CAM}-0`, device: CAM }], { node: 'edge-2', resource: R.camConfig });
    await claims.claim([{ slot: `${CAM2}-0`, device: CAM2 }], { node: 'edge-2', resource: R.cam2 });
    await expect(
      kubelet.allocate(R.camConfig, [[`${CAM}-1`], [`${CAM}-0`, `${CAM2}-0`]], { check: false }),
    ).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details:
        `allocate ${R.camConfig}: slots already claimed: ${CAM} (capacity 2, 1 free): ${CAM}-0 is held through ` +
        `${R.camConfig} on node edge-2; ${CAM2} (capacity 1, 0 free): ${CAM2}-0 is held through ${R.cam2} on node edge-2`,
    });
    expect(claims.holder(`${CAM}-1`)).toBeUndefined();
    await claims.claim([{ slot: `${CAM}-1`, device: CAM }], { node: 'edge-2', resource: R.cam });
    await expect(kubelet.allocate(R.cam, [`${CAM}-0`, `${CAM}-1`], { check: false })).rejects.toMatchObject({
      details:
        `allocate ${R.cam}: slots already claimed: ${CAM} (capacity 2, 0 free): ${CAM}-0 is held through ` +
        `${R.camConfig} on node edge-2, ${CAM}-1 is held through ${R.cam} on node edge-2`,
    });
  });

  it('a container with two devices gets each device node once per host path and each mount once per container path, the first device in the request winning', async () => {
    const tty = (name: string, spec: Partial<DeviceObject['spec']>) => device(name, 'ttys', spec);
    registry.put(
      tty('tty-a', {
        deviceNodes: [{ hostPath: '/dev/ttyUSB0', containerPath: '/dev/a' }],
        mounts: [{ hostPath: '/var/a', containerPath: '/data', readOnly: true }],
      }),
    );
    registry.put(
      tty('tty-b', {
        deviceNodes: [{ hostPath: '/dev/ttyUSB0', containerPath: '/dev/b' }, { hostPath: '/dev/ttyUSB1' }],
        mounts: [
          { hostPath: '/var/b', containerPath: '/data' },
          { hostPath: '/var/b2', containerPath: '/logs' },
        ],
      }),
    );
    await streaming(['leafbridge.io/ttys']);
    const response = await kubelet.allocate('leafbridge.io/ttys', ['tty-b-0', 'tty-a-0']);
    expect(response.container_responses[0]).toMatchObject({
      devices: [
        { host_path: '/dev/ttyUSB0', container_path: '/dev/b', permissions: 'rw' },
        { host_path: '/dev/ttyUSB1', container_path: '/dev/ttyUSB1', permissions: 'rw' },
      ],
      mounts: [
        { host_path: '/var/b', container_path: '/data', read_only: false },
        { host_path: '/var/b2', container_path: '/logs', read_only: false },
      ],
    });
  });

  it('reconcile releases claims the kubelet no longer reports, after the grace period', async () => {
    await restartWithoutGrace();
    await kubelet.allocate(R.cam, [`${CAM}-0`, `${CAM}-1`]);
    expect(await manager.reconcile([`${CAM}-1`])).toEqual([`${CAM}-0`]);
    await kubelet.waitForUpdate(
      R.camConfig,
      (d) => d[0]?.health === 'Healthy' && d[1]?.health === 'Unhealthy',
      { ms: 1000 },
    );
  });

  it('with only the pod list to go by, a claim stays while a live pod requests its resource', async () => {
    await restartWithoutGrace();
    await kubelet.allocate(R.cam, [`${CAM}-0`]);
    await kubelet.allocate(R.serial, [`${SERIAL}-0`]);
    // A pod of this node still asks for the camera resource; none for the serial one any more.
    expect(await manager.reconcile({ resources: [R.cam, 'leafbridge.io/other'] })).toEqual([`${SERIAL}-0`]);
    expect(await manager.reconcile({ resources: [] })).toEqual([`${CAM}-0`]);
  });

  it('a deleted device: its resource server stops and its socket is gone; the config resource goes with its last device', async () => {
    const endpoint = kubelet.plugin(R.serial)!;
    const configEndpoint = kubelet.plugin(R.serialConfig)!;
    registry.delete(SERIAL);
    await manager.settled();
    expect(existsSync(join(dir.path, socketFileName(R.serial)))).toBe(false);
    expect(existsSync(join(dir.path, socketFileName(R.serialConfig)))).toBe(false);
    await kubelet.waitFor(
      () => (endpoint.connected || configEndpoint.connected ? undefined : true),
      2000,
      'the streams to end',
    );
    // a camera of a config with two cameras: only its own resource goes
    registry.delete(CAM2);
    await manager.settled();
    expect(existsSync(join(dir.path, socketFileName(R.cam2)))).toBe(false);
    await kubelet.waitForUpdate(R.camConfig, (d) => d.length === 2, { ms: 1000 });
    expect(manager.status().map((s) => s.resourceName)).toEqual([R.camConfig, R.cam]);

    // and it comes back
    registry.put(serial());
    await manager.settled();
    await kubelet.waitFor(
      () =>
        kubelet.registrations.filter((r) => r.resource_name === R.serial).length === 2 ? true : undefined,
      5000,
      're-registration',
    );
    await streaming([R.serial, R.serialConfig]);
  });

  it('a resource that goes and comes back at once is stopped, then started again; settled() waits for both', async () => {
    const gate = kubelet.holdRegistrations((r) => r.resource_name === R.serial);
    const registrations = () => kubelet.registrations.filter((r) => r.resource_name === R.serial).length;
    registry.delete(SERIAL);
    registry.put(serial()); // the old server's stop and the new one's start, queued in that order
    // The new server registers: the old one has stopped, and the new one now waits for the kubelet.
    await kubelet.waitFor(() => (registrations() === 2 ? true : undefined), 5000, 'the new registration');
    const settled = manager.settled();
    gate.open();
    await settled;
    expect(manager.status().find((s) => s.resourceName === R.serial)).toMatchObject({
      listening: true,
      registered: true,
    });
  });

  it('registers again when the kubelet ends a ListAndWatch stream, kubelet.sock unchanged', async () => {
    const kubeletSock = statSync(kubelet.socketPath);
    const registrations = (r: string) => kubelet.registrations.filter((x) => x.resource_name === r).length;
    const dropped = kubelet.plugin(R.serial);
    kubelet.dropStreams(R.serial);
    expect(dropped?.connected).toBe(false);
    await kubelet.waitFor(
      () => {
        const p = kubelet.plugin(R.serial);
        return p !== dropped && p?.connected && p.updates.length > 0 ? p : undefined;
      },
      5000,
      `${R.serial} registered and streaming again`,
    );
    expect(registrations(R.serial)).toBe(2);
    expect(kubelet.registrations).toHaveLength(6); // the other resources kept their streams
    expect(kubelet.devices(R.serial)).toEqual([{ ID: `${SERIAL}-0`, health: 'Healthy', topology: null }]);
    const response = await kubelet.allocate(R.serial, [`${SERIAL}-0`]);
    expect(response.container_responses[0]?.envs?.LEAFBRIDGE_SLOTS).toBe(`${SERIAL}-0`);

    // every stream, twice in a row: each resource registers again each time (the second after a backoff)
    for (let round = 0; round < 2; round++) {
      const before = Object.values(R).map((r) => kubelet.plugin(r));
      kubelet.dropStreams();
      await kubelet.waitFor(
        () =>
          Object.values(R).every((r, i) => {
            const p = kubelet.plugin(r);
            return p !== before[i] && p?.connected && p.updates.length > 0;
          })
            ? true
            : undefined,
        5000,
        `every resource registered and streaming again (round ${round})`,
      );
    }
    expect(registrations(R.serial)).toBe(4);
    expect(registrations(R.camConfig)).toBe(3);
    expect(manager.status().every((s) => s.registered && s.streams === 1)).toBe(true);
    await kubelet.allocate(R.cam, [`${CAM}-0`]);
    const now = statSync(kubelet.socketPath);
    expect([now.ino, now.birthtimeMs]).toEqual([kubeletSock.ino, kubeletSock.birthtimeMs]);
  });

  it('a kubelet restart that deletes every socket: each of many resources listens again, registers again and streams', async () => {
    // 12 more cameras: 17 resources, each with its own socket and registration, all in one directory.
    const more = Array.from({ length: 12 }, (_, i) => `cams-${String(i).padStart(6, '0')}`);
    for (const name of more) registry.put(device(name, 'cams', { capacity: 1 }));
    const resources = [...Object.values(R), ...more.map((n) => `leafbridge.io/${n}`)];
    await streaming(resources);
    const files = () => new Map(manager.status().map((s) => [s.resourceName, fileId(s.socketPath)]));
    const before = files();
    expect(before.size).toBe(17);
    const endpoints = resources.map((r) => kubelet.plugin(r));
    const registered = kubelet.registrations.length;

    await kubelet.restart();
    await kubelet.waitFor(
      () =>
        resources.every((r, i) => {
          const p = kubelet.plugin(r);
          return p !== endpoints[i] && p?.connected && p.updates.length > 0;
        })
          ? true
          : undefined,
      10_000,
      'every resource registered and streaming again',
    );
    // Each resource registered with the new kubelet (a socket the kubelet deleted after we listened again
    // costs one more registration: the stream on it ends).
    const again = new Set(kubelet.registrations.slice(registered).map((x) => x.resource_name));
    expect([...again].sort()).toEqual([...resources].sort());
    const after = files();
    for (const [resource, id] of after) {
      expect(id, resource).toBeDefined();
      expect(id, resource).not.toBe(before.get(resource)); // a new socket: the kubelet deleted the old one
    }
    expect(manager.status().every((s) => s.registered && s.registrations >= 2 && s.streams === 1)).toBe(true);
    expect(health(kubelet, R.cam)).toEqual({ [`${CAM}-0`]: 'Healthy', [`${CAM}-1`]: 'Healthy' });
    for (const name of more) {
      const response = await kubelet.allocate(`leafbridge.io/${name}`, [`${name}-0`]);
      expect(response.container_responses[0]?.envs?.LEAFBRIDGE_SLOTS).toBe(`${name}-0`);
    }
  });

  it('stop() leaves no sockets', async () => {
    expect(sockets(dir.path)).toHaveLength(5);
    await manager.stop();
    expect(sockets(dir.path)).toEqual([]);
    registry.put(camera(false)); // no longer watched: nothing starts again
    await manager.settled();
    expect(sockets(dir.path)).toEqual([]);
  });
});

interface CdiRig {
  cdiDir: string;
  /** The CDI spec file the manager writes. */
  file: string;
  kubelet: TestKubelet;
  registry: DeviceRegistry;
}

/**
 * Runs `body` with a test kubelet and a started manager that writes its CDI spec to `cdiDir` (`cdi` under a fresh
 * temp dir unless given), its registry holding `devices`; everything is stopped and removed afterwards.
 */
async function withCdiManager(
  o: {
    devices: DeviceObject[];
    cdiDir?: (root: string) => string;
    logger?: Logger;
    claims?: MemorySlotClaims;
  },
  body: (rig: CdiRig) => Promise<void>,
): Promise<void> {
  const dir = tempDir('lb-dpm-cdi-');
  const cdiDir = o.cdiDir?.(dir.path) ?? join(dir.path, 'cdi');
  const kubelet = new TestKubelet(dir.path);
  await kubelet.start();
  const registry = new DeviceRegistry();
  for (const d of o.devices) registry.put(d);
  const manager = new DevicePluginManager({
    registry,
    node: NODE,
    dir: dir.path,
    logger: o.logger ?? silentLogger(),
    cdiDir,
    ...(o.claims ? { claims: o.claims } : {}),
  });
  try {
    await manager.start();
    await body({ cdiDir, file: join(cdiDir, 'leafbridge.io-device.json'), kubelet, registry });
  } finally {
    await manager.stop();
    await kubelet.stop();
    dir.remove();
  }
}

describe('DevicePluginManager with CDI on', () => {
  it('writes this node’s devices to the CDI spec and answers Allocate with CDI names and envs, no device nodes', async () => {
    const elsewhere = {
      ...device('elsewhere-000000', 'cams'),
      spec: { ...camera().spec, nodes: ['edge-2'] },
    };
    await withCdiManager({ devices: [serial(), elsewhere] }, async ({ file, kubelet, registry }) => {
      await until(() => existsSync(file), 2000, 'CDI spec written');
      const spec = JSON.parse(readFileSync(file, 'utf8')) as {
        kind: string;
        devices: { name: string; containerEdits: { deviceNodes?: { path: string; hostPath: string }[] } }[];
      };
      expect(spec.kind).toBe('leafbridge.io/device');
      expect(spec.devices.map((d) => d.name)).toEqual([SERIAL]); // not the device of another node
      expect(spec.devices[0]?.containerEdits.deviceNodes).toEqual([
        expect.objectContaining({ path: '/dev/sensor', hostPath: '/dev/ttyUSB0' }),
      ]);
      await kubelet.waitFor(
        () => (kubelet.devices(R.serial).length === 1 ? true : undefined),
        5000,
        'stream',
      );
      const response = await kubelet.allocate(R.serial, [`${SERIAL}-0`]);
      expect(response.container_responses[0]).toMatchObject({
        envs: { SERIAL_PORT: '/dev/ttyUSB0', LEAFBRIDGE_SLOTS: `${SERIAL}-0` },
        devices: [],
        mounts: [],
        cdi_devices: [{ name: `leafbridge.io/device=${SERIAL}` }],
      });
      registry.delete(SERIAL);
      await until(() => !existsSync(file), 2000, 'CDI spec removed with the last device');
    });
  });

  it('a property left out of the CDI spec leaves its device in it; a device left out is refused and claims nothing', async () => {
    // CAM: one property key is no environment variable name (only that property is left out);
    // CAM2: a device node CDI cannot carry (the whole device is left out).
    const withBadKey = () => ({
      ...camera(),
      spec: { ...camera().spec, properties: { RTSP_URL: 'rtsp://x', 'A=B': 'v' } },
    });
    const cam2 = (permissions: string) => ({
      ...camera2(),
      spec: { ...camera2().spec, deviceNodes: [{ hostPath: '/dev/video0', permissions }] },
    });
    const claims = new MemorySlotClaims();
    const log = captureLogs();
    const rig = { devices: [withBadKey(), cam2('rwx')], logger: log.logger, claims };
    await withCdiManager(rig, async ({ cdiDir, file, kubelet, registry }) => {
      const inSpec = () =>
        existsSync(file)
          ? (JSON.parse(readFileSync(file, 'utf8')) as { devices: { name: string }[] }).devices.map(
              (d) => d.name,
            )
          : [];
      await until(() => inSpec().length > 0, 5000, 'CDI spec written');
      expect(inSpec()).toEqual([CAM]);
      await kubelet.waitFor(
        () => ([R.cam, R.cam2, R.camConfig].every((r) => kubelet.devices(r).length > 0) ? true : undefined),
        5000,
        'streams',
      );

      const response = await kubelet.allocate(R.cam, [`${CAM}-0`]);
      expect(response.container_responses[0]).toMatchObject({
        envs: { RTSP_URL: 'rtsp://x', LEAFBRIDGE_SLOTS: `${CAM}-0` },
        cdi_devices: [{ name: `leafbridge.io/device=${CAM}` }],
      });

      await expect(kubelet.allocate(R.cam2, [`${CAM2}-0`])).rejects.toMatchObject({
        code: status.UNAVAILABLE,
        details: `allocate ${R.cam2}: not (yet) in the CDI spec in ${cdiDir}: ${CAM2}; see the agent's log`,
      });
      // A refused Allocate holds no slot: once the device is fixed, the config resource can have it.
      expect(claims.holder(`${CAM2}-0`)).toBeUndefined();
      registry.put(cam2('rw'));
      await until(() => inSpec().includes(CAM2), 5000, 'the fixed device in the CDI spec');
      const again = await kubelet.allocate(R.camConfig, [`${CAM2}-0`]);
      expect(again.container_responses[0]?.cdi_devices).toEqual([{ name: `leafbridge.io/device=${CAM2}` }]);
      // The log says which: a property or the whole device.
      const warned = log.lines().filter((l) => String(l.msg).endsWith('left out of the CDI spec'));
      expect(new Set(warned.map((l) => `${l.msg}: ${l.device}`))).toEqual(
        new Set([`property left out of the CDI spec: ${CAM}`, `device left out of the CDI spec: ${CAM2}`]),
      );
    });
  });

  it('a CDI spec it cannot write is logged with its directory, and Allocate is refused', async () => {
    const log = captureLogs();
    const rig = {
      devices: [serial(), device('serial-4d4d4d', 'serial')],
      logger: log.logger,
      cdiDir: (root: string) => {
        writeFileSync(join(root, 'not-a-dir'), ''); // a file where the directory would go
        return join(root, 'not-a-dir', 'cdi');
      },
    };
    await withCdiManager(rig, async ({ cdiDir, kubelet }) => {
      await until(
        () => log.lines().some((l) => l.msg === 'CDI spec not written'),
        5000,
        'the failed write logged',
      );
      expect(log.lines().find((l) => l.msg === 'CDI spec not written')).toMatchObject({
        level: 50,
        dir: cdiDir,
        code: 'CDI_WRITE_FAILED',
      });
      await kubelet.waitFor(
        () => (kubelet.devices(R.serialConfig).length === 2 ? true : undefined),
        5000,
        'stream',
      );
      await expect(
        kubelet.allocate(R.serialConfig, [`${SERIAL}-0`, 'serial-4d4d4d-0']),
      ).rejects.toMatchObject({
        code: status.UNAVAILABLE,
        details: expect.stringContaining(`not (yet) in the CDI spec in ${cdiDir}: ${SERIAL}, serial-4d4d4d;`),
      });
    });
  });
});

describe('DevicePluginManager under a kubelet root as long as MicroK8s’s', () => {
  const MICROK8S = '/var/snap/microk8s/common/var/lib/kubelet/device-plugins/';
  const LONG_DEVICE = `${'d'.repeat(56)}-4d5e6f`;
  const LONG_CONFIG = 'c'.repeat(63);

  it('registers a 63-character device of a 63-character config, and Allocate works', async () => {
    const tmp = tempDir('lb-dpm-long-');
    const dir = join(tmp.path, 'x'.repeat(Math.max(1, MICROK8S.length - tmp.path.length - 1)));
    mkdirSync(dir);
    expect(`${dir}/`.length).toBeGreaterThanOrEqual(MICROK8S.length);
    expect([LONG_DEVICE.length, LONG_CONFIG.length]).toEqual([63, 63]);
    const kubelet = new TestKubelet(dir);
    await kubelet.start();
    const registry = new DeviceRegistry();
    registry.put(device(LONG_DEVICE, LONG_CONFIG, { capacity: 1, properties: { RTSP_URL: 'rtsp://x' } }));
    const manager = new DevicePluginManager({ registry, node: NODE, dir, logger: silentLogger() });
    const resources = [`leafbridge.io/${LONG_DEVICE}`, `leafbridge.io/${LONG_CONFIG}`];
    try {
      await manager.start();
      await kubelet.waitFor(
        () => (resources.every((r) => kubelet.devices(r).length === 1) ? true : undefined),
        5000,
        'both resources registered and streaming',
      );
      for (const s of manager.status()) expect(Buffer.byteLength(s.socketPath)).toBeLessThanOrEqual(107);
      const [slot] = slotIds(LONG_DEVICE, 1);
      const response = await kubelet.allocate(resources[0]!, [slot!]);
      expect(response.container_responses[0]?.envs).toMatchObject({
        RTSP_URL: 'rtsp://x',
        LEAFBRIDGE_DEVICES: LONG_DEVICE,
        LEAFBRIDGE_SLOTS: slot,
      });
    } finally {
      await manager.stop();
      await kubelet.stop();
      tmp.remove();
    }
  });
});

describe('slot IDs and resource names', () => {
  it('keeps IDs within 63 characters, stable and distinct, with valid resource names', () => {
    expect(slotIds('cams-4d5e6f', 2)).toEqual(['cams-4d5e6f-0', 'cams-4d5e6f-1']);
    const long = `${'a'.repeat(70)}-4d5e6f`;
    const other = `${'a'.repeat(70)}-000000`;
    const a = slotIds(long, 3);
    expect(a.every((id) => id.length <= 63)).toBe(true);
    expect(a).toEqual(slotIds(long, 3));
    expect(new Set([...a, ...slotIds(other, 3)]).size).toBe(6);
    expect(shorten(long)).toHaveLength(63);
    expect(isExtendedResourceName(`leafbridge.io/${shorten(long)}`)).toBe(true);
    expect(shorten(long)).not.toBe(shorten(other));
  });
});
