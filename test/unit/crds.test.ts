import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdFiles, crdManifests } from '../../src/install/crds.js';
import { foldHandlerDetails } from '../../src/install/handlerDetails.js';
import { type JsonSchemaProps, StructuralSchemaError, toStructural } from '../../src/install/structural.js';
import { detailsProblems } from '../../src/model/discoveryConfigs.js';
import { externalHandlerSpecs, withExternal } from '../../src/model/externalHandlers.js';
import type { DiscoveryHandler } from '../../src/model/handler.js';
import { applyDefaults, prune, type Schema, structuralProblems, validate } from '../helpers/kubeSchema.js';
import { ROOT } from '../helpers/processes.js';

const [configCrd, deviceCrd] = crdManifests(builtinHandlers);
const schemaOf = (crd = configCrd!) => crd.spec.versions[0]!.schema.openAPIV3Schema as Schema;

/** What the API server does with a DiscoveryConfig written to it: prune, default, validate; the field errors. */
function admit(spec: unknown, crd = configCrd!): string[] {
  const obj = {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: crd.spec.names.kind,
    metadata: { name: 'cams' },
    spec,
  };
  prune(schemaOf(crd), obj);
  applyDefaults(schemaOf(crd), obj);
  return validate(schemaOf(crd), obj).map((e) => `${e.field}: ${e.message}`);
}
const handler = (name: string) => builtinHandlers.find((h) => h.name === name)!;
const spec = (name: string, details: unknown) => ({ handler: { name, details } });

describe('the CRD manifests', () => {
  it('are valid CustomResourceDefinitions (kubernetes-models) with structural schemas', () => {
    for (const crd of [configCrd!, deviceCrd!]) {
      expect(() => new CustomResourceDefinition(crd as never).validate()).not.toThrow();
      expect(structuralProblems(schemaOf(crd))).toEqual([]);
    }
  });

  it('deploy/crds/ holds exactly what the code generates (regenerate: npx vitest run test/unit/crds.test.ts -u)', async () => {
    const files = crdFiles(builtinHandlers);
    expect(files.map((f) => f.file)).toEqual([
      'leafbridge.io_discoveryconfigs.yaml',
      'leafbridge.io_devices.yaml',
    ]);
    for (const f of files) {
      await expect(f.text).toMatchFileSnapshot(join(ROOT, 'deploy/crds', f.file));
      expect(parse(f.text)).toEqual(
        JSON.parse(JSON.stringify(crdManifests(builtinHandlers)[files.indexOf(f)])),
      );
    }
    const kustomization = parse(readFileSync(join(ROOT, 'deploy/crds/kustomization.yaml'), 'utf8'));
    expect(kustomization.resources).toEqual(files.map((f) => f.file));
  });

  it('name the kinds, columns and subresource kubectl needs', () => {
    expect(configCrd!.spec.names).toMatchObject({
      kind: 'DiscoveryConfig',
      plural: 'discoveryconfigs',
      shortNames: ['lbdc'],
      categories: ['leafbridge'],
    });
    expect(deviceCrd!.spec.names).toMatchObject({
      kind: 'Device',
      plural: 'devices',
      shortNames: ['dev', 'lbdev'],
      categories: ['leafbridge'],
    });
    const columns = (crd = configCrd!) =>
      crd.spec.versions[0]!.additionalPrinterColumns.filter((c) => !c.priority).map((c) => c.name);
    expect(columns(configCrd)).toEqual(['Handler', 'Capacity', 'Devices', 'Valid', 'Age']);
    expect(columns(deviceCrd)).toEqual(['Config', 'Handler', 'Online', 'Nodes', 'Age']);
    for (const crd of [configCrd!, deviceCrd!]) {
      expect(crd.spec.versions[0]).toMatchObject({
        name: 'v1alpha1',
        served: true,
        storage: true,
        subresources: { status: {} },
      });
      expect(crd.spec.scope).toBe('Namespaced');
    }
  });
});

describe('DiscoveryConfig schema: handler details checked by the API server', () => {
  const good: [string, unknown][] = [
    [
      'onvif',
      {
        interface: 'eth1',
        probeIntervalMs: 5000,
        filters: { ipAddresses: { action: 'include', items: ['10.0.0.0/8'] } },
      },
    ],
    [
      'onvif',
      {
        interface: 'lo',
        maxDevices: 10_000,
        credentials: {
          devices: { 'urn:uuid:1': { username: 'admin', passwordSecretRef: { name: 'cams', key: 'pw' } } },
        },
      },
    ],
    [
      'opcua',
      {
        discoveryUrls: ['opc.tcp://plc:4840'],
        securityMode: 'Sign',
        browsePaths: [{ name: 'Serial', path: '/Objects/1:Serial' }],
      },
    ],
    ['serial', {}],
    [
      'serial',
      {
        paths: ['/dev/ttyUSB*'],
        probe: { write: 'ID?\\r\\n', expect: '^ACME' },
        vendorIds: { include: ['0403'] },
      },
    ],
    ['mqtt', { brokerUrl: 'mqtt://127.0.0.1:1883', maxDevices: 100_000, ids: { exclude: ['test-*'] } }],
    ['mqtt', { passwordSecretRef: { name: 'broker.creds', key: '.password' } }],
    ['mqtt', { passwordSecretRef: { name: 'broker', key: 'tls.key..old' } }],
    ['debug-echo', { devices: [{ id: 'a', properties: { A: '1' } }], shared: true }],
  ];
  it.each(good)('accepts good %s details, as the handler does', (name, details) => {
    expect(detailsProblems(handler(name), details)).toEqual([]);
    expect(admit(spec(name, details))).toEqual([]);
  });

  const bad: [string, string, unknown, string][] = [
    ['a missing required field', 'onvif', {}, 'spec.handler.details.interface: Required value'],
    ['a wrong type', 'onvif', { interface: 5 }, 'spec.handler.details.interface: Invalid value: "number"'],
    [
      'a bound',
      'onvif',
      { interface: 'eth1', probeIntervalMs: 10 },
      'should be greater than or equal to 1000',
    ],
    [
      'a pattern in a list',
      'onvif',
      { interface: 'eth1', filters: { ipAddresses: { action: 'include', items: ['300.1.1.1'] } } },
      "should match '^(25[0-5]",
    ],
    [
      'an enum',
      'onvif',
      { interface: 'eth1', filters: { uuids: { action: 'keep', items: ['x'] } } },
      'Unsupported value: "keep"',
    ],
    [
      'a map value',
      'onvif',
      { interface: 'eth1', credentials: { devices: { cam: { username: '', password: 'x' } } } },
      'spec.handler.details.credentials.devices[cam].username',
    ],
    [
      'the handler’s own bound of a shared field',
      'onvif',
      { interface: 'eth1', maxDevices: 20_000 },
      'should be less than or equal to 10000',
    ],
    [
      'the other handler’s bound of that field',
      'mqtt',
      { maxDevices: 200_000 },
      'should be less than or equal to 100000',
    ],
    ['minItems', 'opcua', { discoveryUrls: [] }, 'should have at least 1 items'],
    ['a URL pattern', 'opcua', { discoveryUrls: ['http://plc'] }, "should match '^opc\\.tcp://"],
    [
      'a nested required field',
      'serial',
      { probe: { write: 'x' } },
      'spec.handler.details.probe.expect: Required value',
    ],
    [
      'a field of another handler',
      'mqtt',
      { interface: 'eth1' },
      'spec.handler.details.interface: Invalid value: "eth1": must not validate the schema (not)',
    ],
    ['list items', 'debug-echo', { devices: [{ id: '' }] }, 'spec.handler.details.devices[0].id'],
    ...['.', '..', '..data', 'a/b'].map((key): [string, string, unknown, string] => [
      `a secret key that could leave secrets.dir: ${key}`,
      'mqtt',
      { passwordSecretRef: { name: 'broker', key } },
      'spec.handler.details.passwordSecretRef.key',
    ]),
  ];
  it.each(bad)('rejects %s (%s), as the handler does', (_what, name, details, message) => {
    expect(detailsProblems(handler(name), details)).not.toEqual([]);
    const errors = admit(spec(name, details));
    expect(errors.join('\n')).toContain(message);
  });

  it('rejects an unknown handler and bad spec fields', () => {
    expect(admit(spec('zigbee', {})).join('\n')).toContain('spec.handler.name: Unsupported value: "zigbee"');
    expect(admit({ ...spec('serial', {}), capacity: 0 }).join('\n')).toContain('spec.capacity');
    expect(admit({ ...spec('serial', {}), properties: { A: 1 } }).join('\n')).toContain('spec.properties[A]');
    expect(admit({})).toContain('spec.handler: Required value');
  });

  it('defaults capacity, properties and details; leaves handler defaults to the agent', () => {
    const obj = {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name: 'c' },
      spec: { handler: { name: 'serial' } },
    };
    applyDefaults(schemaOf(), obj);
    expect(obj.spec).toEqual({ handler: { name: 'serial', details: {} }, capacity: 1, properties: {} });
  });

  it('does not check (the agent does, as the Valid condition): map key patterns; unknown fields are pruned, not refused', () => {
    const keys = { properties: { 'not-an-env-name': 'x' } };
    expect(detailsProblems(handler('mqtt'), keys)).not.toEqual([]);
    expect(admit(spec('mqtt', keys))).toEqual([]);

    const obj = {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name: 'c' },
      spec: spec('serial', { pathz: ['/dev/x'] }),
    };
    expect(prune(schemaOf(), obj)).toEqual(['spec.handler.details.pathz']);
  });

  it('refuses, at generation time, handlers whose details cannot be folded structurally', () => {
    const fake = (name: string, detailsSchema: object) =>
      ({ name, detailsSchema, shared: true, discover: async function* () {} }) as unknown as DiscoveryHandler;
    const base = toStructural({
      type: 'object',
      properties: { name: { type: 'string' }, details: { type: 'object' } },
    } as never) as JsonSchemaProps;
    const a = fake('a', { type: 'object', properties: { port: { type: 'integer' } } });
    const b = fake('b', { type: 'object', properties: { port: { type: 'string' } } });
    expect(() => foldHandlerDetails(base, [a, b])).toThrow(
      /details\.port: handlers a, b give it different types/,
    );
    const mixed = fake('c', {
      type: 'object',
      properties: { x: { anyOf: [{ type: 'string' }, { type: 'object' }] } },
    });
    expect(() => foldHandlerDetails(base, [mixed])).toThrow(StructuralSchemaError);
  });
});

describe('DiscoveryConfig schema with external handlers (leafbridge manifests --external-handlers)', () => {
  const [externalCrd] = crdManifests(
    withExternal(builtinHandlers, externalHandlerSpecs(['onvif', 'my-sensors'])),
  );

  it('names them: refused without, accepted with', () => {
    const errors = admit(spec('my-sensors', {}));
    expect(errors.join('\n')).toContain('spec.handler.name: Unsupported value: "my-sensors"');
    expect(admit(spec('my-sensors', {}), externalCrd)).toEqual([]);
    expect(
      externalCrd!.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!.properties!.handler!.properties!
        .name!.enum,
    ).toEqual(['opcua', 'serial', 'mqtt', 'modbus', 'debug-echo', 'onvif', 'my-sensors']);
  });

  it('keeps their free-form details whole, fields of built-in handlers too', () => {
    const details = { subnet: '10.0.0.0/24', nested: { a: [1, 'two'], b: { c: true } }, paths: ['/dev/x'] };
    const sent = spec('my-sensors', structuredClone(details));
    expect(admit(sent, externalCrd)).toEqual([]);
    expect(sent.handler.details).toEqual(details);
    const akri = spec('onvif', { discoveryDetails: 'ipAddresses:\n  action: Exclude\n  items: []\n' });
    expect(admit(akri, externalCrd)).toEqual([]);
    expect(akri.handler.details).toEqual({
      discoveryDetails: 'ipAddresses:\n  action: Exclude\n  items: []\n',
    });
  });

  it('still checks the built-in handlers, and the types of the fields they declare', () => {
    expect(admit(spec('opcua', { discoveryDetails: 'x' }), externalCrd).join('\n')).toContain(
      'spec.handler.details.discoveryDetails',
    );
    expect(admit(spec('opcua', {}), externalCrd).join('\n')).toContain('discoveryUrls');
    // Unknown fields of a built-in handler's details are kept, not pruned: the agent refuses them (Valid=False).
    const stray = spec('serial', { pathz: ['/dev/x'] });
    expect(admit(stray, externalCrd)).toEqual([]);
    expect(stray.handler.details).toEqual({ pathz: ['/dev/x'] });
    expect(detailsProblems(handler('serial'), { pathz: ['/dev/x'] })).not.toEqual([]);
    // The limit docs/akri-handlers.md states: a field a built-in handler declares keeps its type.
    expect(admit(spec('my-sensors', { maxDevices: 'many' }), externalCrd).join('\n')).toContain(
      'spec.handler.details.maxDevices',
    );
  });
});

describe('Device schema', () => {
  const device = {
    id: 'urn:uuid:1',
    configName: 'cams',
    handler: 'onvif',
    shared: true,
    nodes: ['edge-1', 'edge-2'],
    capacity: 2,
    properties: { ONVIF_IP: '10.0.0.1' },
    deviceNodes: [{ hostPath: '/dev/video0', permissions: 'rw' }],
    desired: { $version: 3, fps: 10 },
  };
  it('accepts a device and defaults its lists', () => {
    const obj = {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'Device',
      metadata: { name: 'cams-0a1b2c' },
      spec: structuredClone(device),
    };
    applyDefaults(schemaOf(deviceCrd), obj);
    expect(obj.spec).toMatchObject({ mounts: [] });
    expect(admit(device, deviceCrd)).toEqual([]);
  });

  it('rejects duplicate nodes, bad permissions, a zero capacity and a bad condition', () => {
    expect(admit({ ...device, nodes: ['edge-1', 'edge-1'] }, deviceCrd).join('\n')).toContain(
      'spec.nodes[1]: Duplicate value',
    );
    expect(
      admit({ ...device, deviceNodes: [{ hostPath: '/dev/x', permissions: 'rwx' }] }, deviceCrd).join('\n'),
    ).toContain('permissions');
    expect(admit({ ...device, capacity: 0 }, deviceCrd).join('\n')).toContain('spec.capacity');
    const status = {
      online: true,
      conditions: [{ type: 'Online', status: 'Maybe', reason: 'X', message: '', lastTransitionTime: 'now' }],
    };
    const obj = {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'Device',
      metadata: { name: 'd' },
      spec: device,
      status,
    };
    const errors = validate(schemaOf(deviceCrd), obj).map((e) => e.field);
    expect(errors).toEqual(['status.conditions[0].status', 'status.conditions[0].lastTransitionTime']);
  });
});
