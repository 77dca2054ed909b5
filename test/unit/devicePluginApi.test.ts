import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { devicePluginProto, type Method, protoPath } from '../../src/deviceplugin/api.js';
import { deviceSpec, mount, socketFileName } from '../../src/deviceplugin/convert.js';
import { DevicePluginError, toServiceError } from '../../src/deviceplugin/errors.js';
import { preferInOrder } from '../../src/deviceplugin/service.js';
import { tempDir } from '../helpers/processes.js';

// A protobuf encoder small enough to check by eye, fed with the field numbers of the published v1beta1 API:
// whatever api.proto says, these bytes are what the kubelet's Go code sends and expects.
const varint = (n: number): number[] => (n < 0x80 ? [n] : [(n & 0x7f) | 0x80, ...varint(n >>> 7)]);
const bytes = (field: number, payload: number[]) => [
  ...varint((field << 3) | 2),
  ...varint(payload.length),
  ...payload,
];
const str = (field: number, s: string) => bytes(field, [...Buffer.from(s)]);
const msg = (field: number, ...parts: number[][]) => bytes(field, parts.flat());
const num = (field: number, n: number) => [...varint(field << 3), ...varint(n)];
const wire = (...parts: number[][]) => Buffer.from(parts.flat());

function encodes<Req, Res>(
  method: Method<Req, Res>,
  side: 'request' | 'response',
  value: Req | Res,
  expected: Buffer,
) {
  const encoded =
    side === 'request' ? method.requestSerialize(value as Req) : method.responseSerialize(value as Res);
  expect(encoded.toString('hex')).toBe(expected.toString('hex'));
}

describe('api.proto against the published v1beta1 wire format', () => {
  const { DevicePlugin, Registration } = devicePluginProto();

  it('has the published service paths, ListAndWatch a server stream', () => {
    expect(Registration.Register.path).toBe('/v1beta1.Registration/Register');
    expect(Object.values(DevicePlugin).map((m) => m.path)).toEqual([
      '/v1beta1.DevicePlugin/GetDevicePluginOptions',
      '/v1beta1.DevicePlugin/ListAndWatch',
      '/v1beta1.DevicePlugin/GetPreferredAllocation',
      '/v1beta1.DevicePlugin/Allocate',
      '/v1beta1.DevicePlugin/PreStartContainer',
    ]);
    expect(DevicePlugin.ListAndWatch.responseStream).toBe(true);
    expect(DevicePlugin.Allocate.responseStream).toBe(false);
  });

  it('RegisterRequest and DevicePluginOptions', () => {
    const request = {
      version: 'v1beta1',
      endpoint: 'p.sock',
      resource_name: 'a.io/b',
      options: { pre_start_required: true, get_preferred_allocation_available: true },
    };
    const expected = wire(
      str(1, 'v1beta1'),
      str(2, 'p.sock'),
      str(3, 'a.io/b'),
      msg(4, num(1, 1), num(2, 1)),
    );
    encodes(Registration.Register, 'request', request, expected);
    expect(Registration.Register.requestDeserialize(expected)).toEqual(request);
  });

  it('ListAndWatchResponse: Device ID, health, topology of NUMA nodes', () => {
    const response = { devices: [{ ID: 'cam-0', health: 'Healthy', topology: { nodes: [{ ID: 1 }] } }] };
    const expected = wire(msg(1, str(1, 'cam-0'), str(2, 'Healthy'), msg(3, msg(1, num(1, 1)))));
    encodes(DevicePlugin.ListAndWatch, 'response', response, expected);
    expect(DevicePlugin.ListAndWatch.responseDeserialize(expected)).toEqual(response);
  });

  it('AllocateRequest: container_requests of devices_ids', () => {
    const request = { container_requests: [{ devices_ids: ['a', 'b'] }, { devices_ids: ['c'] }] };
    const expected = wire(msg(1, str(1, 'a'), str(1, 'b')), msg(1, str(1, 'c')));
    encodes(DevicePlugin.Allocate, 'request', request, expected);
    expect(DevicePlugin.Allocate.requestDeserialize(expected)).toEqual(request);
  });

  it('AllocateResponse: envs, mounts, devices, annotations, cdi_devices', () => {
    const container = {
      envs: { K: 'V' },
      mounts: [{ container_path: '/c', host_path: '/h', read_only: true }],
      devices: [{ container_path: '/dev/x', host_path: '/dev/y', permissions: 'rw' }],
      annotations: { A: 'B' },
      cdi_devices: [{ name: 'v.io/d=1' }],
    };
    const expected = wire(
      msg(
        1,
        msg(1, str(1, 'K'), str(2, 'V')),
        msg(2, str(1, '/c'), str(2, '/h'), num(3, 1)),
        msg(3, str(1, '/dev/x'), str(2, '/dev/y'), str(3, 'rw')),
        msg(4, str(1, 'A'), str(2, 'B')),
        msg(5, str(1, 'v.io/d=1')),
      ),
    );
    encodes(DevicePlugin.Allocate, 'response', { container_responses: [container] }, expected);
    expect(DevicePlugin.Allocate.responseDeserialize(expected)).toEqual({ container_responses: [container] });
  });

  it('PreferredAllocationRequest/Response and PreStartContainerRequest', () => {
    const request = {
      container_requests: [
        { available_deviceIDs: ['a', 'b'], must_include_deviceIDs: ['b'], allocation_size: 1 },
      ],
    };
    const expected = wire(msg(1, str(1, 'a'), str(1, 'b'), str(2, 'b'), num(3, 1)));
    encodes(DevicePlugin.GetPreferredAllocation, 'request', request, expected);
    encodes(
      DevicePlugin.GetPreferredAllocation,
      'response',
      { container_responses: [{ deviceIDs: ['b'] }] },
      wire(msg(1, str(1, 'b'))),
    );
    encodes(DevicePlugin.PreStartContainer, 'request', { devices_ids: ['a'] }, wire(str(1, 'a')));
    // protobufjs writes a set `false` too (Go leaves it out); both decode to the same options.
    encodes(
      DevicePlugin.GetDevicePluginOptions,
      'response',
      { pre_start_required: false, get_preferred_allocation_available: true },
      wire(num(1, 0), num(2, 1)),
    );
    expect(DevicePlugin.GetDevicePluginOptions.responseDeserialize(wire(num(2, 1)))).toEqual({
      pre_start_required: false,
      get_preferred_allocation_available: true,
    });
  });
});

describe('device-plugin helpers', () => {
  const dirs: ReturnType<typeof tempDir>[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) d.remove();
  });

  it('names sockets with a fixed prefix and a hash of the resource name: short, stable, one per resource', () => {
    const long = `leafbridge.io/${'d'.repeat(63)}`;
    const names = ['leafbridge.io/front-door-1a2b3c', 'leafbridge.io/cameras', 'example.com/x y', long];
    for (const n of names) expect(socketFileName(n)).toMatch(/^leafbridge-[0-9a-f]{12}\.sock$/);
    expect(socketFileName(long)).toBe(socketFileName(`leafbridge.io/${'d'.repeat(63)}`));
    expect(new Set(names.map(socketFileName)).size).toBe(names.length);
    // what the kubelet's directory may be: 107 bytes of path, less a slash and these 28 bytes
    expect(Buffer.byteLength(socketFileName(long))).toBe(28);
  });

  it('turns device nodes into DeviceSpecs (same path, rw by default) and mounts into Mounts', () => {
    expect(deviceSpec({ hostPath: '/dev/ttyUSB0' })).toEqual({
      host_path: '/dev/ttyUSB0',
      container_path: '/dev/ttyUSB0',
      permissions: 'rw',
    });
    expect(deviceSpec({ hostPath: '/dev/ttyACM1', containerPath: '/dev/plc', permissions: 'r' })).toEqual({
      host_path: '/dev/ttyACM1',
      container_path: '/dev/plc',
      permissions: 'r',
    });
    expect(mount({ hostPath: '/h', containerPath: '/c' })).toEqual({
      host_path: '/h',
      container_path: '/c',
      read_only: false,
    });
  });

  it('prefers the required devices, then the available ones, up to the size asked', () => {
    const request = {
      available_deviceIDs: ['a', 'b', 'c'],
      must_include_deviceIDs: ['c'],
      allocation_size: 2,
    };
    expect(preferInOrder([request])).toEqual([{ deviceIDs: ['c', 'a'] }]);
  });

  it('maps errors to gRPC statuses: the code a DevicePluginError names, UNKNOWN otherwise', () => {
    expect(toServiceError(new DevicePluginError('RESOURCE_EXHAUSTED', 'no slot'), 'allocate r')).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: 'allocate r: no slot',
    });
    expect(toServiceError(new DevicePluginError('FAILED_PRECONDITION', 'offline'), 'x').code).toBe(
      status.FAILED_PRECONDITION,
    );
    expect(toServiceError(new Error('boom'), 'x')).toEqual({ code: status.UNKNOWN, details: 'x: boom' });
  });

  it('finds api.proto beside the module (dist after the copy) or under src/ walking up (src, dist before it)', () => {
    const root = tempDir('lb-proto-');
    dirs.push(root);
    const fromDist = join(root.path, 'dist', 'src', 'deviceplugin');
    mkdirSync(join(root.path, 'src', 'deviceplugin', 'proto'), { recursive: true });
    mkdirSync(join(fromDist, 'proto'), { recursive: true });
    writeFileSync(join(root.path, 'src', 'deviceplugin', 'proto', 'api.proto'), '');
    expect(protoPath(fromDist)).toBe(join(root.path, 'src', 'deviceplugin', 'proto', 'api.proto'));
    writeFileSync(join(fromDist, 'proto', 'api.proto'), '');
    expect(protoPath(fromDist)).toBe(join(fromDist, 'proto', 'api.proto'));

    const empty = tempDir('lb-proto-');
    dirs.push(empty);
    expect(() => protoPath(empty.path)).toThrow(/api.proto not found/);
  });
});
