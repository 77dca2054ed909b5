import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ContainerAllocateRequest,
  type ContainerAllocateResponse,
  type Device,
  devicePluginProto,
  unaryCall,
  unixAddress,
} from '../../src/deviceplugin/api.js';
import { deviceSpec, mount, socketFileName } from '../../src/deviceplugin/convert.js';
import { DevicePluginError } from '../../src/deviceplugin/errors.js';
import { DevicePluginServer } from '../../src/deviceplugin/server.js';
import type { PluginDevice } from '../../src/deviceplugin/service.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';
import { tempDir } from '../helpers/processes.js';
import { TestKubelet } from '../helpers/testKubelet.js';

const RESOURCE = 'leafbridge.io/front-door-1a2b3c';
const SOCKET = socketFileName(RESOURCE);

async function poll(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A socket file whose process was SIGKILLed: it stays on disk and refuses connections. */
async function staleSocket(path: string): Promise<void> {
  const holder = spawn(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(path)})`,
  ]);
  try {
    await poll(() => existsSync(path), 5000, 'the socket');
  } finally {
    holder.kill('SIGKILL');
  }
  await new Promise((r) => holder.once('exit', r));
  expect(statSync(path).isSocket()).toBe(true);
}

/** A file's identity: inode numbers are reused at once on ext4, so the birth time counts too. */
const fileId = (path: string) => {
  const s = statSync(path);
  return `${s.ino}:${s.birthtimeMs}`;
};

type Allocate = (requests: readonly ContainerAllocateRequest[]) => ContainerAllocateResponse[];

describe('device plugin ↔ kubelet over the v1beta1 gRPC API', () => {
  let dir: ReturnType<typeof tempDir>;
  let kubelet: TestKubelet;
  let devices: PluginDevice[];
  let allocate: Allocate;
  let allocated: ContainerAllocateRequest[][];
  const plugins: DevicePluginServer[] = [];

  const startPlugin = async (pluginDir = dir.path): Promise<DevicePluginServer> => {
    const plugin = new DevicePluginServer({
      dir: pluginDir,
      resourceName: RESOURCE,
      logger: silentLogger(),
      clock: systemClock,
      listDevices: () => devices,
      allocate: (requests) => {
        allocated.push([...requests]);
        return allocate(requests);
      },
    });
    plugins.push(plugin);
    await plugin.start();
    return plugin;
  };
  const streaming = (n = 1) =>
    kubelet.waitFor(
      () => {
        const p = kubelet.plugin(RESOURCE);
        return p?.connected && p.updates.length > 0 && kubelet.registrations.length >= n ? p : undefined;
      },
      5000,
      `registration ${n} and a device list`,
    );
  const asKubeletSees = (list: PluginDevice[]): Device[] =>
    list.map((d) => ({ ID: d.id, health: d.health, topology: null }));

  beforeEach(async () => {
    dir = tempDir('lb-dp-');
    devices = [
      { id: 'front-door-1a2b3c-0', health: 'Healthy' },
      { id: 'front-door-1a2b3c-1', health: 'Healthy' },
    ];
    allocate = (requests) => requests.map(() => ({}));
    allocated = [];
    kubelet = new TestKubelet(dir.path);
    await kubelet.start();
  });
  afterEach(async () => {
    for (const p of plugins.splice(0)) await p.stop();
    await kubelet.stop();
    dir.remove();
  });

  it('registers with version, endpoint, resource name and options, and streams the full list at once', async () => {
    const plugin = await startPlugin();
    const endpoint = await streaming();
    expect(kubelet.registrations).toEqual([
      {
        version: 'v1beta1',
        endpoint: SOCKET,
        resource_name: RESOURCE,
        options: { pre_start_required: false, get_preferred_allocation_available: true },
      },
    ]);
    expect(endpoint.options).toEqual({ pre_start_required: false, get_preferred_allocation_available: true });
    expect(endpoint.updates[0]?.devices).toEqual(asKubeletSees(devices));
    expect(statSync(join(dir.path, SOCKET)).isSocket()).toBe(true);
    expect(plugin.status()).toMatchObject({
      listening: true,
      registered: true,
      registrations: 1,
      streams: 1,
    });
  });

  it('sends a device going Unhealthy, and back, to the kubelet within 1 s; no message when nothing changed', async () => {
    const plugin = await startPlugin();
    const endpoint = await streaming();
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const health = i % 2 === 0 ? 'Unhealthy' : 'Healthy';
      devices = [devices[0]!, { id: 'front-door-1a2b3c-1', health }];
      const since = performance.now();
      plugin.update();
      const update = await kubelet.waitForUpdate(RESOURCE, (d) => d[1]?.health === health, {
        since,
        ms: 1000,
      });
      latencies.push(update.at - since);
      expect(update.devices).toEqual(asKubeletSees(devices));
    }
    latencies.sort((a, b) => a - b);
    const p50 = latencies[10]!;
    const max = latencies.at(-1)!;
    console.info(
      `update() → kubelet stream: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms (20 changes)`,
    );
    expect(max).toBeLessThan(1000);

    const count = endpoint.updates.length;
    plugin.update();
    await new Promise((r) => setTimeout(r, 100));
    expect(endpoint.updates.length).toBe(count);
  });

  it('Allocate hands each container what the allocate callback returns: envs, a serial DeviceSpec "rw", mounts', async () => {
    allocate = (requests) =>
      requests.map((r, i) => ({
        envs: { LEAFBRIDGE_DEVICE_ID: r.devices_ids.join(','), LEAFBRIDGE_PORT: `/dev/ttyUSB${i}` },
        devices: [deviceSpec({ hostPath: `/dev/ttyUSB${i}` })],
        mounts: [mount({ hostPath: '/var/lib/leafbridge/calib', containerPath: '/calib', readOnly: true })],
        annotations: { 'leafbridge.io/device': 'front-door-1a2b3c' },
        cdi_devices: i === 0 ? [{ name: 'leafbridge.io/serial=front-door-1a2b3c' }] : [],
      }));
    await startPlugin();
    await streaming();

    const response = await kubelet.allocate(RESOURCE, [['front-door-1a2b3c-0'], ['front-door-1a2b3c-1']]);
    expect(allocated).toEqual([
      [{ devices_ids: ['front-door-1a2b3c-0'] }, { devices_ids: ['front-door-1a2b3c-1'] }],
    ]);
    expect(response.container_responses).toHaveLength(2);
    expect(response.container_responses[0]).toEqual({
      envs: { LEAFBRIDGE_DEVICE_ID: 'front-door-1a2b3c-0', LEAFBRIDGE_PORT: '/dev/ttyUSB0' },
      devices: [{ host_path: '/dev/ttyUSB0', container_path: '/dev/ttyUSB0', permissions: 'rw' }],
      mounts: [{ host_path: '/var/lib/leafbridge/calib', container_path: '/calib', read_only: true }],
      annotations: { 'leafbridge.io/device': 'front-door-1a2b3c' },
      cdi_devices: [{ name: 'leafbridge.io/serial=front-door-1a2b3c' }],
    });
    expect(response.container_responses[1]?.devices?.[0]?.host_path).toBe('/dev/ttyUSB1');
    expect(response.container_responses[1]?.cdi_devices).toEqual([]);

    const preferred = await kubelet.preferred(
      RESOURCE,
      ['front-door-1a2b3c-0', 'front-door-1a2b3c-1'],
      [],
      1,
    );
    expect(preferred.container_responses).toEqual([{ deviceIDs: ['front-door-1a2b3c-0'] }]);
    await expect(kubelet.preStart(RESOURCE, ['front-door-1a2b3c-0'])).resolves.toBeUndefined();
  });

  it('an allocate error reaches the kubelet as a gRPC error with its status and message', async () => {
    await startPlugin();
    await streaming();
    allocate = () => {
      throw new DevicePluginError('RESOURCE_EXHAUSTED', 'all 2 slots of front-door-1a2b3c are in use');
    };
    await expect(kubelet.allocate(RESOURCE, ['front-door-1a2b3c-0'])).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `allocate ${RESOURCE}: all 2 slots of front-door-1a2b3c are in use`,
    });
    allocate = () => {
      throw new Error('claim store unreachable');
    };
    await expect(kubelet.allocate(RESOURCE, ['front-door-1a2b3c-0'])).rejects.toMatchObject({
      code: grpc.status.UNKNOWN,
      details: `allocate ${RESOURCE}: claim store unreachable`,
    });
    allocate = () => [];
    await expect(kubelet.allocate(RESOURCE, ['front-door-1a2b3c-0'])).rejects.toMatchObject({
      code: grpc.status.INTERNAL,
      details: expect.stringContaining('0 responses for 1 containers'),
    });
    await expect(kubelet.allocate(RESOURCE, ['no-such-slot'], { check: false })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringContaining('unknown device ids: no-such-slot'),
    });
    expect(allocated).toHaveLength(3);
  });

  it('re-registers and streams again after a kubelet restart that deleted every socket', async () => {
    const plugin = await startPlugin();
    await streaming();
    const before = fileId(join(dir.path, SOCKET));

    const restarted = performance.now();
    await kubelet.restart();
    const endpoint = await streaming(2);
    console.info(
      `kubelet restart → plugin registered again in ${(performance.now() - restarted).toFixed(0)} ms`,
    );
    expect(kubelet.registrations[1]).toMatchObject({ endpoint: SOCKET, resource_name: RESOURCE });
    expect(statSync(join(dir.path, SOCKET)).isSocket()).toBe(true);
    expect(fileId(join(dir.path, SOCKET))).not.toBe(before);
    expect(plugin.status()).toMatchObject({ registered: true, registrations: 2, streams: 1 });

    devices = [{ id: 'front-door-1a2b3c-0', health: 'Unhealthy' }, devices[1]!];
    plugin.update();
    await kubelet.waitForUpdate(RESOURCE, (d) => d[0]?.health === 'Unhealthy', { ms: 1000 });
    const response = await kubelet.allocate(RESOURCE, ['front-door-1a2b3c-1']);
    expect(response.container_responses).toHaveLength(1);
    expect(endpoint.connected).toBe(true);
  });

  it('waits for a kubelet that is not there yet, and registers when kubelet.sock appears', async () => {
    await kubelet.stop();
    const plugin = await startPlugin();
    expect(plugin.status()).toMatchObject({ listening: true, registered: false });
    await new Promise((r) => setTimeout(r, 200));
    await kubelet.start(); // deletes our socket first, as the kubelet does
    await streaming();
    expect(plugin.status()).toMatchObject({ listening: true, registered: true, registrations: 1 });
  });

  it('retries a registration refused by a dead kubelet.sock, and registers with the kubelet that replaces it', async () => {
    await kubelet.stop();
    await staleSocket(kubelet.socketPath);
    const plugin = await startPlugin();
    expect(plugin.status()).toMatchObject({ listening: true, registered: false, registrations: 0 });
    await kubelet.start();
    await streaming();
    expect(plugin.status()).toMatchObject({ registered: true, registrations: 1 });
  });

  it('stop() removes the socket and ends the stream', async () => {
    const plugin = await startPlugin();
    const endpoint = await streaming();
    await plugin.stop();
    expect(existsSync(join(dir.path, SOCKET))).toBe(false);
    await kubelet.waitFor(() => (endpoint.connected ? undefined : true), 2000, 'the stream to end');
  });

  it('replaces a stale socket left by a killed process', async () => {
    const stale = join(dir.path, SOCKET);
    await staleSocket(stale);
    const staleId = fileId(stale);

    await startPlugin();
    const endpoint = await streaming();
    expect(fileId(stale)).not.toBe(staleId);
    expect(endpoint.updates[0]?.devices).toHaveLength(2);
  });

  it('refuses to start, with a clear error, in a directory too long for a socket name', async () => {
    const long = join(dir.path, 'x'.repeat(100 - dir.path.length));
    mkdirSync(long);
    await expect(startPlugin(long)).rejects.toMatchObject({
      code: 'DEVICEPLUGIN_SOCKET_PATH',
      message: expect.stringMatching(/^the device-plugin directory .* is too long for a unix socket in it/),
    });
    expect(plugins.at(-1)?.status()).toMatchObject({ listening: false, registered: false });
  });

  it('the test kubelet takes the endpoint, as the API documents it, as a file name in its directory only', async () => {
    await startPlugin();
    await streaming();
    const register = async (endpoint: string) => {
      const client = new grpc.Client(unixAddress(kubelet.socketPath), grpc.credentials.createInsecure());
      const request = { version: 'v1beta1', endpoint, resource_name: 'leafbridge.io/other' };
      try {
        return await unaryCall(client, devicePluginProto().Registration.Register, request, 5000);
      } finally {
        client.close();
      }
    };
    for (const endpoint of [
      join(dir.path, SOCKET),
      `./${SOCKET}`,
      `../${SOCKET}`,
      `sub/${SOCKET}`,
      '',
      '..',
    ]) {
      await expect(register(endpoint), endpoint).rejects.toMatchObject({
        details: expect.stringContaining('invalid endpoint'),
      });
    }
    expect(kubelet.plugin('leafbridge.io/other')).toBeUndefined();
    await expect(register(SOCKET)).resolves.toEqual({});
    await kubelet.waitFor(() => (kubelet.devices('leafbridge.io/other').length === 2 ? true : undefined));
  });
});
