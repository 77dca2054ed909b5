import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CDI_KIND,
  CDI_SPEC_DIR,
  CDI_SPEC_FILE,
  CDI_VERSION,
  type CdiSpec,
  cdiName,
  cdiSpec,
  removeCdiSpec,
  writeCdiSpec,
} from '../../../src/deviceplugin/cdi.js';
import { deviceSpec, mount } from '../../../src/deviceplugin/convert.js';
import type { DeviceObject } from '../../../src/model/resources.js';
import { LeafbridgeError } from '../../../src/util/errors.js';
import { deviceObject } from '../../helpers/deviceObjects.js';

const FS_TIMEOUT = { timeout: 5_000 };

function device(name: string, spec: Partial<DeviceObject['spec']> = {}): DeviceObject {
  return deviceObject(name, {
    configName: 'serial',
    spec: { id: name, handler: 'serial', nodes: ['node-a'], ...spec },
  });
}

const serial = device('serial-1a2b3c', {
  properties: { SERIAL_DEVICE_PATH: '/dev/serial/by-id/usb-x', SERIAL_VENDOR_ID: '0403', 'x.y': 'z=1' },
  deviceNodes: [
    { hostPath: '/dev/ttyUSB1', containerPath: '/dev/serial/by-id/usb-x', permissions: 'rw' },
    { hostPath: '/dev/ttyUSB2' },
    { hostPath: '/dev/ttyUSB3', permissions: 'r' },
  ],
  mounts: [
    { hostPath: '/sys/class/tty/ttyUSB1', containerPath: '/sys/class/tty/ttyUSB1', readOnly: true },
    { hostPath: '/var/lib/serial', containerPath: '/data' },
  ],
});

describe('CDI names', () => {
  it('qualifies a Device name with the leafbridge kind', () => {
    expect(CDI_KIND).toBe('leafbridge.io/device');
    expect(CDI_SPEC_DIR).toBe('/var/run/cdi');
    expect(CDI_SPEC_FILE).toBe('leafbridge.io-device.json');
    expect(cdiName('serial-1a2b3c')).toBe('leafbridge.io/device=serial-1a2b3c');
    for (const name of ['a', '7', '0cam', 'A_b.c:d-e9']) expect(cdiName(name)).toBe(`${CDI_KIND}=${name}`);
  });

  it('throws a LeafbridgeError for a name CDI does not accept', () => {
    for (const name of ['', '-a', 'a-', 'a.', '_a', 'a/b', 'a=b', 'a b', 'kamera-ä']) {
      let err: unknown;
      try {
        cdiName(name);
      } catch (e) {
        err = e;
      }
      expect(err, name).toBeInstanceOf(LeafbridgeError);
      expect((err as LeafbridgeError).code).toBe('CDI_INVALID_NAME');
      expect((err as LeafbridgeError).message).toContain(
        `${JSON.stringify(name)} is not a valid CDI device name`,
      );
    }
  });
});

describe('cdiSpec', () => {
  it('hands a serial device to the runtime as convert.ts hands it to the kubelet', () => {
    const spec = cdiSpec([serial]);
    expect(spec).toMatchObject({ cdiVersion: CDI_VERSION, kind: CDI_KIND });
    expect(spec.devices.map((d) => d.name)).toEqual(['serial-1a2b3c']);
    const edits = spec.devices[0]!.containerEdits;

    const asKubelet = (edits.deviceNodes ?? []).map((n) => ({
      host_path: n.hostPath ?? n.path,
      container_path: n.path,
      permissions: n.permissions,
    }));
    expect(asKubelet).toEqual(serial.spec.deviceNodes.map(deviceSpec));

    for (const m of edits.mounts ?? []) {
      expect(m.type).toBe('bind');
      expect(m.options).toContain('rbind');
      expect(m.options?.filter((o) => o === 'ro' || o === 'rw')).toHaveLength(1);
    }
    const mountsAsKubelet = (edits.mounts ?? []).map((m) => ({
      host_path: m.hostPath,
      container_path: m.containerPath,
      read_only: m.options?.includes('ro') ?? false,
    }));
    expect(mountsAsKubelet).toEqual(serial.spec.mounts.map(mount));

    const env = Object.fromEntries(
      (edits.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
    );
    expect(env).toEqual({ ...serial.spec.properties, LEAFBRIDGE_CDI_DEVICE_SERIAL_1A2B3C: 'serial-1a2b3c' });
  });

  it('leaves out property keys that are no environment variable names, and says so without the value', () => {
    const skipped: string[] = [];
    const d = device('cam-000001', {
      properties: { GOOD: 'x', 'A=B': 'secret', 'N\0UL': 'secret', '': 'secret' },
    });
    const spec = cdiSpec([d], {
      onSkip: (dev, reason, left) => skipped.push(`${left} of ${dev.metadata.name}: ${reason}`),
    });
    expect(spec.devices[0]!.containerEdits.env).toEqual([
      'GOOD=x',
      'LEAFBRIDGE_CDI_DEVICE_CAM_000001=cam-000001',
    ]);
    // the device stays in the spec: the listener is told only a property was left out
    expect(skipped).toHaveLength(3);
    expect(skipped.every((s) => s.startsWith('property of cam-000001: property '))).toBe(true);
    expect(skipped.join('\n')).toContain('"A=B"');
    expect(skipped.join('\n')).not.toContain('secret');
  });

  it('leaves out Devices whose name CDI does not accept or is taken, and reports them', () => {
    const skipped: string[] = [];
    const twin = { ...device('cam-2'), metadata: { ...device('cam-2').metadata, namespace: 'other' } };
    const broken = device('cam-3', { deviceNodes: [{ hostPath: '/dev/video0', permissions: 'rwx' }] });
    const spec = cdiSpec([device('cam-2'), device('bad name'), device('cam-1'), twin, broken], {
      onSkip: (d, reason, left) => skipped.push(`${left} ${d.metadata.name}: ${reason}`),
    });
    expect(spec.devices.map((d) => d.name)).toEqual(['cam-1', 'cam-2']);
    expect(skipped).toEqual([
      'device bad name: "bad name" is not a valid CDI device name',
      'device cam-2: another Device is already named cam-2 (namespace other)',
      'device cam-3: a device node has permissions other than r, w, m',
    ]);
  });

  it('gives a Device with nothing to hand over a non-empty edit, and records writer and node', () => {
    const spec = cdiSpec([device('empty-abcdef')], { node: 'node-a' });
    expect(spec.devices[0]!.containerEdits).toEqual({
      env: ['LEAFBRIDGE_CDI_DEVICE_EMPTY_ABCDEF=empty-abcdef'],
    });
    expect(spec.annotations).toEqual({
      'leafbridge.io/written-by': 'leafbridge-agent',
      'leafbridge.io/node': 'node-a',
    });
    expect(cdiSchemaProblems(spec)).toEqual([]);
  });
});

describe('writeCdiSpec', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lb-cdi-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'writes the spec as JSON, mode 0644, into a directory it creates, leaving no temporary file',
    FS_TIMEOUT,
    async () => {
      const specDir = join(dir, 'var', 'run', 'cdi');
      const path = await writeCdiSpec(specDir, [serial, device('cam-1')], 'node-a');
      expect(path).toBe(join(specDir, 'leafbridge.io-device.json'));
      const written = JSON.parse(await readFile(path!, 'utf8')) as CdiSpec;
      expect(written.cdiVersion).toBe(CDI_VERSION);
      expect(written.kind).toBe(CDI_KIND);
      expect(written.devices.map((d) => d.name)).toEqual(['cam-1', 'serial-1a2b3c']);
      expect((await stat(path!)).mode & 0o777).toBe(0o644);
      expect(await readdir(specDir)).toEqual(['leafbridge.io-device.json']);
    },
  );

  it(
    'does not rewrite a file that already holds the same spec, and replaces one that does not',
    FS_TIMEOUT,
    async () => {
      const path = (await writeCdiSpec(dir, [serial], 'node-a'))!;
      const old = new Date('2001-01-01T00:00:00Z');
      await utimes(path, old, old);
      const before = await stat(path);

      expect(await writeCdiSpec(dir, [serial], 'node-a')).toBe(path);
      const after = await stat(path);
      expect(after.ino).toBe(before.ino);
      expect(after.mtimeMs).toBe(old.getTime());

      await writeCdiSpec(dir, [serial, device('cam-1')], 'node-a');
      const changed = await stat(path);
      expect(changed.ino).not.toBe(before.ino);
      expect(changed.mtimeMs).not.toBe(old.getTime());
      expect(await readdir(dir)).toEqual(['leafbridge.io-device.json']);
    },
  );

  it('removes the file when no Device is left to write', FS_TIMEOUT, async () => {
    const path = (await writeCdiSpec(dir, [serial], 'node-a'))!;
    await writeFile(join(dir, 'other-vendor.json'), '{}');
    expect(await writeCdiSpec(dir, [], 'node-a')).toBeUndefined();
    expect(await readdir(dir)).toEqual(['other-vendor.json']);

    await writeCdiSpec(dir, [serial], 'node-a');
    const skipped: string[] = [];
    expect(
      await writeCdiSpec(dir, [device('no/slash')], 'node-a', (d) => skipped.push(d.metadata.name)),
    ).toBe(undefined);
    expect(skipped).toEqual(['no/slash']);
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(removeCdiSpec(dir)).resolves.toBeUndefined();
  });

  it('fails with a LeafbridgeError naming the file when it cannot write', FS_TIMEOUT, async () => {
    await mkdir(join(dir, 'leafbridge.io-device.json', 'in-the-way'), { recursive: true });
    await expect(writeCdiSpec(dir, [serial], 'node-a')).rejects.toMatchObject({
      code: 'CDI_WRITE_FAILED',
      message: expect.stringContaining(join(dir, 'leafbridge.io-device.json')),
    });
  });

  it('writes a spec that keeps the rules of the CDI schema and validator', FS_TIMEOUT, async () => {
    const odd = device('0-digit:first.x_y', {
      properties: { 'lower.case': 'v' },
      deviceNodes: [{ hostPath: '/dev/null', permissions: 'rwm' }],
    });
    const path = (await writeCdiSpec(dir, [serial, odd, device('cam-1')], 'node-a'))!;
    expect(cdiSchemaProblems(JSON.parse(await readFile(path, 'utf8')))).toEqual([]);
  });

  it('has a schema check that catches broken specs', () => {
    expect(cdiSchemaProblems({ kind: 'vendor.com', devices: [] })).toEqual([
      'cdiVersion: required',
      'kind: "vendor.com" is not <vendor>/<class>',
      'devices: at least one device',
    ]);
    const bad = {
      cdiVersion: '0.3.0',
      kind: CDI_KIND,
      annotations: { 'a/b/c': 'x' },
      extra: 1,
      devices: [
        { name: 'x', containerEdits: {} },
        { name: 'x-', containerEdits: { env: ['=v'], deviceNodes: [{ hostPath: '/a', permissions: 'x' }] } },
      ],
    };
    expect(cdiSchemaProblems(bad)).toEqual([
      'extra: not allowed',
      'annotations: key "a/b/c" is not a qualified name',
      'devices[0]: empty container edits',
      'devices[1].name: "x-" is not a CDI device name',
      'devices[1].containerEdits.env[0]: "=v" is not KEY=VALUE',
      'devices[1].containerEdits.deviceNodes[0].path: required',
      'devices[1].containerEdits.deviceNodes[0].permissions: "x" is not any of r, w, m',
      'cdiVersion: 0.3.0 is below 0.6.0, which the spec needs',
    ]);
  });
});

// ---- The CDI rules, encoded here from schema/schema.json + schema/defs.json (required fields, types, no
// unknown fields) and the checks runtimes make on load: pkg/parser (kind, device names), api/producer
// validator-default.go (env, device nodes, mounts, non-empty device edits, unique names), Kubernetes
// annotation keys, and specs-go/version.go (the lowest cdiVersion the features used need).

const KNOWN_VERSIONS = ['0.3.0', '0.4.0', '0.5.0', '0.6.0', '0.7.0', '0.8.0'];
const VENDOR_OR_CLASS = /^[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const DEVICE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isUint32 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;

function cdiSchemaProblems(spec: unknown): string[] {
  const problems: string[] = [];
  if (!isObject(spec)) return ['spec: not an object'];
  unknownKeys(spec, ['cdiVersion', 'kind', 'annotations', 'devices', 'containerEdits'], '', problems);
  if (typeof spec.cdiVersion !== 'string') problems.push('cdiVersion: required');
  else if (!KNOWN_VERSIONS.includes(spec.cdiVersion)) problems.push(`cdiVersion: unknown ${spec.cdiVersion}`);
  const [vendor, cls, more] = typeof spec.kind === 'string' ? spec.kind.split('/') : [];
  if (typeof spec.kind !== 'string') problems.push('kind: required');
  else if (
    !vendor ||
    !cls ||
    more !== undefined ||
    !VENDOR_OR_CLASS.test(vendor) ||
    !VENDOR_OR_CLASS.test(cls)
  )
    problems.push(`kind: ${JSON.stringify(spec.kind)} is not <vendor>/<class>`);
  annotationProblems(spec.annotations, 'annotations', problems);
  if (spec.containerEdits !== undefined) editProblems(spec.containerEdits, 'containerEdits', problems);
  if (!Array.isArray(spec.devices) || spec.devices.length === 0)
    problems.push('devices: at least one device');
  const names = new Set<string>();
  const devices: unknown[] = Array.isArray(spec.devices) ? spec.devices : [];
  devices.forEach((d, i) => {
    deviceProblems(d, `devices[${i}]`, names, problems);
  });
  const needs = neededVersion(spec);
  if (typeof spec.cdiVersion === 'string' && compareVersions(spec.cdiVersion, needs) < 0)
    problems.push(`cdiVersion: ${spec.cdiVersion} is below ${needs}, which the spec needs`);
  return problems;
}

function deviceProblems(d: unknown, at: string, names: Set<string>, problems: string[]): void {
  if (!isObject(d)) {
    problems.push(`${at}: not an object`);
    return;
  }
  unknownKeys(d, ['name', 'annotations', 'containerEdits'], `${at}.`, problems);
  if (typeof d.name !== 'string' || !DEVICE_NAME.test(d.name))
    problems.push(`${at}.name: ${JSON.stringify(d.name)} is not a CDI device name`);
  else if (names.has(d.name)) problems.push(`${at}.name: ${d.name} is taken`);
  else names.add(d.name);
  annotationProblems(d.annotations, `${at}.annotations`, problems);
  const edits = d.containerEdits;
  if (!isObject(edits)) {
    problems.push(`${at}.containerEdits: required`);
    return;
  }
  if (!['env', 'deviceNodes', 'mounts', 'hooks'].some((k) => Array.isArray(edits[k]) && edits[k].length > 0))
    problems.push(`${at}: empty container edits`);
  editProblems(edits, `${at}.containerEdits`, problems);
}

function unknownKeys(o: Json, allowed: string[], at: string, problems: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) problems.push(`${at}${k}: not allowed`);
}

function annotationProblems(a: unknown, at: string, problems: string[]): void {
  if (a === undefined) return;
  if (!isObject(a)) {
    problems.push(`${at}: not a map of strings`);
    return;
  }
  let size = 0;
  for (const [key, value] of Object.entries(a)) {
    size += key.length + String(value).length;
    if (typeof value !== 'string') problems.push(`${at}.${key}: not a string`);
    const parts = key.toLowerCase().split('/');
    const name = parts.at(-1) ?? '';
    const prefixOk =
      parts.length === 1 || (parts.length === 2 && parts[0]!.length <= 253 && DNS_SUBDOMAIN.test(parts[0]!));
    if (!prefixOk || name.length > 63 || !QUALIFIED_NAME_PART.test(name))
      problems.push(`${at}: key ${JSON.stringify(key)} is not a qualified name`);
  }
  if (size > 256 * 1024) problems.push(`${at}: more than 256 KiB`);
}

function editProblems(e: unknown, at: string, problems: string[]): void {
  if (!isObject(e)) {
    problems.push(`${at}: not an object`);
    return;
  }
  unknownKeys(e, ['env', 'deviceNodes', 'mounts', 'hooks', 'intelRdt', 'additionalGids'], `${at}.`, problems);
  ((e.env as unknown[] | undefined) ?? []).forEach((v, i) => {
    if (typeof v !== 'string' || v.indexOf('=') <= 0)
      problems.push(`${at}.env[${i}]: ${JSON.stringify(v)} is not KEY=VALUE`);
  });
  ((e.deviceNodes as unknown[] | undefined) ?? []).forEach((n, i) => {
    nodeProblems(n, `${at}.deviceNodes[${i}]`, problems);
  });
  ((e.mounts as unknown[] | undefined) ?? []).forEach((m, i) => {
    mountProblems(m, `${at}.mounts[${i}]`, problems);
  });
}

function nodeProblems(n: unknown, at: string, problems: string[]): void {
  if (!isObject(n)) {
    problems.push(`${at}: not an object`);
    return;
  }
  const keys = ['path', 'hostPath', 'permissions', 'type', 'major', 'minor', 'fileMode', 'uid', 'gid'];
  unknownKeys(n, keys, `${at}.`, problems);
  if (typeof n.path !== 'string' || n.path === '') problems.push(`${at}.path: required`);
  if (n.hostPath !== undefined && typeof n.hostPath !== 'string')
    problems.push(`${at}.hostPath: not a string`);
  if (n.permissions !== undefined && !/^[rwm]*$/.test(String(n.permissions)))
    problems.push(`${at}.permissions: ${JSON.stringify(n.permissions)} is not any of r, w, m`);
  if (n.type !== undefined && !['b', 'c', 'u', 'p'].includes(String(n.type)))
    problems.push(`${at}.type: invalid`);
  for (const k of ['uid', 'gid'] as const)
    if (n[k] !== undefined && !isUint32(n[k])) problems.push(`${at}.${k}: not a uint32`);
}

function mountProblems(m: unknown, at: string, problems: string[]): void {
  if (!isObject(m)) {
    problems.push(`${at}: not an object`);
    return;
  }
  unknownKeys(m, ['hostPath', 'containerPath', 'options', 'type'], `${at}.`, problems);
  for (const k of ['hostPath', 'containerPath'] as const)
    if (typeof m[k] !== 'string' || m[k] === '') problems.push(`${at}.${k}: required`);
  if (m.options !== undefined && !(Array.isArray(m.options) && m.options.every((o) => typeof o === 'string')))
    problems.push(`${at}.options: not an array of strings`);
  if (m.type !== undefined && typeof m.type !== 'string') problems.push(`${at}.type: not a string`);
}

/** The lowest cdiVersion for the features a spec uses (specs-go/version.go requiresV040..V060). */
function neededVersion(spec: Json): string {
  const devices = (Array.isArray(spec.devices) ? spec.devices : []).filter(isObject);
  const edits = [spec.containerEdits, ...devices.map((d) => d.containerEdits)].filter(isObject);
  const nonEmpty = (a: unknown) => isObject(a) && Object.keys(a).length > 0;
  const kindClass = typeof spec.kind === 'string' ? (spec.kind.split('/')[1] ?? '') : '';
  if (nonEmpty(spec.annotations) || devices.some((d) => nonEmpty(d.annotations)) || kindClass.includes('.'))
    return '0.6.0';
  const nodes = edits.flatMap((e) => (Array.isArray(e.deviceNodes) ? e.deviceNodes : [])).filter(isObject);
  const names = devices.map((d) => String(d.name ?? ''));
  if (nodes.some((n) => n.hostPath) || names.some((n) => /^[^A-Za-z]/.test(n))) return '0.5.0';
  const mounts = edits.flatMap((e) => (Array.isArray(e.mounts) ? e.mounts : [])).filter(isObject);
  if (mounts.some((m) => m.type)) return '0.4.0';
  return '0.3.0';
}

function compareVersions(a: string, b: string): number {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if ((x![i] ?? 0) !== (y![i] ?? 0)) return (x![i] ?? 0) - (y![i] ?? 0);
  return 0;
}
