import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { type OpcuaDetails, opcuaDetailsSchema } from '../../discovery-handlers/opcua/detailsSchema.js';
import { toDevices, upperSnake } from '../../discovery-handlers/opcua/devices.js';
import {
  ApplicationType,
  passesFilter,
  selectEndpoint,
  UA_TCP_BINARY,
  wantedApplication,
} from '../../discovery-handlers/opcua/filter.js';
import {
  type OpcuaSettings,
  resolveSettings,
  settingsProblems,
} from '../../discovery-handlers/opcua/settings.js';
import type { EndpointInfo, FoundServer, ServerApplication } from '../../discovery-handlers/opcua/types.js';

const app = (over: Partial<ServerApplication> = {}): ServerApplication => ({
  applicationUri: 'urn:plc:1',
  applicationName: 'Line 1',
  applicationType: ApplicationType.Server,
  discoveryUrls: ['opc.tcp://127.0.0.1:4840'],
  ...over,
});

const endpoint = (over: Partial<EndpointInfo> = {}): EndpointInfo => ({
  endpointUrl: 'opc.tcp://127.0.0.1:4840',
  securityMode: 'None',
  securityPolicy: 'None',
  securityLevel: 0,
  transportProfileUri: UA_TCP_BINARY,
  ...over,
});

describe('application filters', () => {
  it('keeps everything without a filter, only the listed with include, all but the listed with exclude', () => {
    expect(passesFilter(undefined, 'a')).toBe(true);
    expect(passesFilter({ action: 'include', items: ['a', 'b'] }, 'a')).toBe(true);
    expect(passesFilter({ action: 'include', items: ['a', 'b'] }, 'c')).toBe(false);
    expect(passesFilter({ action: 'exclude', items: ['a'] }, 'a')).toBe(false);
    expect(passesFilter({ action: 'exclude', items: ['a'] }, 'c')).toBe(true);
    expect(passesFilter({ action: 'include', items: [] }, 'a')).toBe(false);
  });

  it('matches names and URIs exactly (case and all)', () => {
    expect(passesFilter({ action: 'include', items: ['Line 1'] }, 'line 1')).toBe(false);
  });

  it('wants servers that pass both filters, never discovery servers or clients', () => {
    const settings: Pick<OpcuaSettings, 'applicationNames' | 'applicationUris'> = {
      applicationNames: { action: 'include', items: ['Line 1'] },
      applicationUris: { action: 'exclude', items: ['urn:plc:old'] },
    };
    expect(wantedApplication(settings, app())).toBe(true);
    expect(wantedApplication(settings, app({ applicationType: ApplicationType.ClientAndServer }))).toBe(true);
    expect(wantedApplication(settings, app({ applicationType: ApplicationType.DiscoveryServer }))).toBe(
      false,
    );
    expect(wantedApplication(settings, app({ applicationType: ApplicationType.Client }))).toBe(false);
    expect(wantedApplication(settings, app({ applicationName: 'Line 2' }))).toBe(false);
    expect(wantedApplication(settings, app({ applicationUri: 'urn:plc:old' }))).toBe(false);
    expect(wantedApplication({}, app({ applicationUri: '' }))).toBe(false);
  });
});

describe('endpoint selection', () => {
  const offered = [
    endpoint(),
    endpoint({ securityMode: 'SignAndEncrypt', securityPolicy: 'Basic256Sha256', securityLevel: 3 }),
    endpoint({
      endpointUrl: 'opc.tcp://other:4840',
      securityMode: 'SignAndEncrypt',
      securityPolicy: 'Basic256Sha256',
      securityLevel: 5,
    }),
    endpoint({
      endpointUrl: 'https://127.0.0.1:443',
      transportProfileUri: 'http://opcfoundation.org/UA-Profile/Transport/https-uabinary',
      securityMode: 'Sign',
      securityPolicy: 'Basic256Sha256',
      securityLevel: 9,
    }),
  ];

  it('picks the opc.tcp endpoint with the wanted mode and policy and the highest security level', () => {
    expect(selectEndpoint(offered, { securityMode: 'None', securityPolicy: 'None' })).toEqual({
      endpoint: offered[0],
    });
    expect(
      selectEndpoint(offered, { securityMode: 'SignAndEncrypt', securityPolicy: 'Basic256Sha256' }),
    ).toEqual({
      endpoint: offered[2],
    });
  });

  it('explains a miss with an EndpointSelected condition naming what the server offers', () => {
    expect(selectEndpoint(offered, { securityMode: 'Sign', securityPolicy: 'Basic256Sha256' })).toEqual({
      condition: {
        type: 'EndpointSelected',
        status: 'False',
        reason: 'NoMatchingEndpoint',
        message: 'wanted Sign/Basic256Sha256; the server offers None/None, SignAndEncrypt/Basic256Sha256',
      },
    });
    expect(selectEndpoint([], { securityMode: 'None', securityPolicy: 'None' })).toMatchObject({
      condition: { reason: 'NoEndpoints' },
    });
  });
});

describe('devices', () => {
  const found = (over: Partial<FoundServer> = {}): FoundServer => ({
    discoveryUrl: 'opc.tcp://lds:4840',
    serverUrl: 'opc.tcp://127.0.0.1:4840',
    application: app(),
    endpoint: endpoint(),
    values: {},
    conditions: [],
    ...over,
  });

  it('names browse-path properties in upper snake case', () => {
    expect(upperSnake('serialNumber')).toBe('SERIAL_NUMBER');
    expect(upperSnake('serial-number')).toBe('SERIAL_NUMBER');
    expect(upperSnake('Model')).toBe('MODEL');
    expect(upperSnake('firmwareV2Build')).toBe('FIRMWARE_V2_BUILD');
    const [device] = toDevices([found({ values: { serialNumber: 'SN-1' } })]);
    expect(device?.properties.OPCUA_SERIAL_NUMBER).toBe('SN-1');
  });

  it('lists a server found twice (discovery server and directly) once, as the first discovery URL found it', () => {
    const devices = toDevices([found(), found({ discoveryUrl: 'opc.tcp://127.0.0.1:4840' })]);
    expect(devices).toHaveLength(1);
    expect(devices[0]?.id).toBe('urn:plc:1|opc.tcp://127.0.0.1:4840');
    expect(devices[0]?.properties.OPCUA_DISCOVERY_URL).toBe('opc.tcp://lds:4840');
  });

  it('gives each server an id of its own, the same whether or not another server shares its applicationUri', () => {
    const other = 'opc.tcp://127.0.0.2:4840';
    const sibling = found({ serverUrl: other, endpoint: endpoint({ endpointUrl: other }) });
    const together = toDevices([
      found(),
      sibling,
      found({ application: app({ applicationUri: 'urn:plc:2' }) }),
    ]);
    expect(together.map((d) => d.id)).toEqual([
      'urn:plc:1|opc.tcp://127.0.0.1:4840',
      'urn:plc:1|opc.tcp://127.0.0.2:4840',
      'urn:plc:2|opc.tcp://127.0.0.1:4840',
    ]);
    expect(toDevices([found()]).map((d) => d.id)).toEqual(['urn:plc:1|opc.tcp://127.0.0.1:4840']);
    expect(toDevices([sibling]).map((d) => d.id)).toEqual(['urn:plc:1|opc.tcp://127.0.0.2:4840']);
  });

  it('leaves out endpoint and security properties when no endpoint was selected', () => {
    const condition = {
      type: 'EndpointSelected',
      status: 'False',
      reason: 'NoMatchingEndpoint',
      message: 'm',
    } as const;
    const { endpoint: _unused, ...withoutEndpoint } = found({ conditions: [condition] });
    const [device] = toDevices([withoutEndpoint]);
    expect(Object.keys(device?.properties ?? {}).sort()).toEqual([
      'OPCUA_APPLICATION_NAME',
      'OPCUA_APPLICATION_URI',
      'OPCUA_DISCOVERY_URL',
    ]);
    expect(device?.conditions).toEqual([condition]);
  });
});

describe('details schema', () => {
  const errors = (details: unknown) => [...Value.Errors(opcuaDetailsSchema, details)].map((e) => e.path);

  it('accepts the smallest and a full configuration', () => {
    expect(errors({ discoveryUrls: ['opc.tcp://127.0.0.1:4840'] })).toEqual([]);
    const full: OpcuaDetails = {
      discoveryUrls: ['opc.tcp://lds.plant:4840', 'opc.tcp://10.0.0.7:48010/UA/Server'],
      applicationNames: { action: 'exclude', items: ['test bench'] },
      applicationUris: { action: 'include', items: ['urn:plc:1'] },
      securityMode: 'SignAndEncrypt',
      securityPolicy: 'Aes128_Sha256_RsaOaep',
      pkiDir: '/var/lib/leafbridge/pki/opcua',
      trustedCertificates: ['-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'],
      automaticallyAcceptUnknownCertificates: false,
      browsePaths: [{ name: 'serialNumber', path: '/Objects/1:Plant/1:SerialNumber' }],
      pollIntervalMs: 10_000,
      watchConnections: true,
      keepAliveIntervalMs: 5_000,
      connectTimeoutMs: 3_000,
      maxDevices: 10,
    };
    expect(errors(full)).toEqual([]);
  });

  it('reports every bad field by its path', () => {
    expect(
      errors({
        discoveryUrls: ['http://127.0.0.1:4840'],
        applicationNames: { action: 'only', items: [] },
        securityMode: 'Encrypt',
        browsePaths: [{ name: '1st', path: '' }],
        pollIntervalMs: 5,
        extra: true,
      }),
    ).toEqual(
      expect.arrayContaining([
        '/discoveryUrls/0',
        '/applicationNames/action',
        '/securityMode',
        '/browsePaths/0/name',
        '/browsePaths/0/path',
        '/pollIntervalMs',
        '/extra',
      ]),
    );
    expect(errors({ discoveryUrls: [] })).toEqual(['/discoveryUrls']);
    expect(errors({})).toContain('/discoveryUrls');
  });

  it('describes every field, for the CRD schema', () => {
    const undescribed = Object.entries(opcuaDetailsSchema.properties)
      .filter(([, schema]) => typeof (schema as { description?: unknown }).description !== 'string')
      .map(([name]) => name);
    expect(undescribed).toEqual([]);
  });
});

describe('settings', () => {
  it('fills the defaults; unknown certificates are accepted only without security', () => {
    const plain = resolveSettings({ discoveryUrls: ['opc.tcp://a:1', 'opc.tcp://a:1'] });
    expect(plain).toMatchObject({
      discoveryUrls: ['opc.tcp://a:1'],
      securityMode: 'None',
      securityPolicy: 'None',
      automaticallyAcceptUnknownCertificates: true,
      pollIntervalMs: 1_000,
      connectTimeoutMs: 3_000,
      watchConnections: true,
    });
    const secure = resolveSettings({
      discoveryUrls: ['opc.tcp://a:1'],
      securityMode: 'SignAndEncrypt',
      securityPolicy: 'Basic256Sha256',
    });
    expect(secure.automaticallyAcceptUnknownCertificates).toBe(false);
  });

  it('catches what the schema cannot: mode/policy mismatch and browse-path names that collide', () => {
    const problems = settingsProblems(
      resolveSettings({
        discoveryUrls: ['opc.tcp://a:1'],
        securityMode: 'SignAndEncrypt',
        browsePaths: [
          { name: 'serialNumber', path: '/a' },
          { name: 'serial_number', path: '/b' },
          { name: 'endpointUrl', path: '/c' },
        ],
      }),
    );
    expect(problems).toEqual([
      'securityPolicy: securityMode SignAndEncrypt needs a securityPolicy other than None',
      'browsePaths[1].name: serial_number gives OPCUA_SERIAL_NUMBER, as serialNumber does',
      'browsePaths[2].name: endpointUrl would overwrite OPCUA_ENDPOINT_URL',
    ]);
  });
});
