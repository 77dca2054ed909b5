import { describe, expect, it } from 'vitest';
import { OnvifError } from '../../discovery-handlers/onvif/errors.js';
import {
  cidrContains,
  normalizeUuid,
  parseCidr,
  passesAnnouncementFilters,
  passesDeviceFilters,
} from '../../discovery-handlers/onvif/filters.js';
import { buildDevice, buildProperties, upperSnake } from '../../discovery-handlers/onvif/properties.js';
import { passwordDigest } from '../../discovery-handlers/onvif/soapEnvelope.js';
import { buildProbe, parseDiscoveryMessage } from '../../discovery-handlers/onvif/wsDiscoveryMessages.js';
import { at, parseXml, textAt } from '../../discovery-handlers/onvif/xml.js';
import { billionLaughs, byeXml, helloXml, probeMatchXml } from '../helpers/onvifHostile.js';

describe('onvif xml', () => {
  it('refuses DOCTYPE and ENTITY declarations before parsing', () => {
    expect(() => parseXml(billionLaughs())).toThrow(/DOCTYPE or ENTITY/);
    expect(() => parseXml('<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>')).toThrow(OnvifError);
    expect(() => parseXml('<a><!ENTITY e "x"></a>')).toThrow(/refused/);
  });

  it('refuses malformed XML and absurd nesting', () => {
    expect(() => parseXml('<a><b></a>')).toThrow(/malformed/);
    expect(() => parseXml(`${'<a>'.repeat(200)}${'</a>'.repeat(200)}`)).toThrow(OnvifError);
  });

  it('drops prefixes, decodes only predefined entities and character references', () => {
    const doc = parseXml('<s:E xmlns:s="u"><s:T a="1&amp;2">x &lt; y &#65;&#x42; &foo;</s:T></s:E>');
    expect(textAt(doc, 'E', 'T')).toBe('x < y AB &foo;');
    expect(at(doc, 'E', 'T')?.['@_a']).toBe('1&2');
  });
});

describe('ws-discovery messages', () => {
  it('builds a Probe for NetworkVideoTransmitter with a MessageID', () => {
    const probe = buildProbe('urn:uuid:1');
    expect(probe).toContain('<a:MessageID>urn:uuid:1</a:MessageID>');
    expect(probe).toContain('<d:Types>dn:NetworkVideoTransmitter</d:Types>');
    expect(parseXml(probe)).toBeTruthy();
  });

  it('reads ProbeMatches, Hello and Bye', () => {
    const match = parseDiscoveryMessage(
      probeMatchXml('urn:uuid:p', 'abc', 'http://10.0.0.5/onvif/device_service http://[fe80::1]/x'),
    );
    expect(match).toEqual({
      kind: 'probeMatches',
      relatesTo: 'urn:uuid:p',
      endpoints: [
        {
          address: 'urn:uuid:abc',
          types: ['dn:NetworkVideoTransmitter'],
          scopes: ['onvif://www.onvif.org/name/hostile'],
          xaddrs: ['http://10.0.0.5/onvif/device_service', 'http://[fe80::1]/x'],
          metadataVersion: 1,
        },
      ],
    });
    expect(parseDiscoveryMessage(helloXml('abc', 'http://h/')).kind).toBe('hello');
    expect(parseDiscoveryMessage(byeXml('abc'))).toEqual({ kind: 'bye', address: 'urn:uuid:abc' });
    expect(parseDiscoveryMessage(buildProbe('urn:uuid:1')).kind).toBe('other');
  });

  it('bounds what one datagram can claim', () => {
    const many = Array.from(
      { length: 40 },
      (_, i) => probeMatchXml('r', `u${i}`, 'http://h/').match(/<d:ProbeMatch>.*<\/d:ProbeMatch>/)?.[0],
    ).join('');
    const xml = probeMatchXml('r', 'x', 'http://h/').replace(/<d:ProbeMatch>.*<\/d:ProbeMatch>/, many);
    const parsed = parseDiscoveryMessage(xml);
    expect(parsed.kind === 'probeMatches' && parsed.endpoints.length).toBe(16);
    const longAddress = helloXml('a'.repeat(5_000), 'http://h/');
    expect(parseDiscoveryMessage(longAddress).kind).toBe('other');
  });
});

describe('ws-security digest', () => {
  it('is Base64(SHA1(nonce bytes + created + password))', () => {
    // Computed independently: printf '\x00\x01\x02\x03%s%s' 2024-01-01T00:00:00Z pw | openssl sha1 -binary | base64
    const nonce = Buffer.from([0, 1, 2, 3]);
    const expected = '/Nqr01vPXPBccA647IOfWFi8fwg=';
    expect(passwordDigest(nonce, '2024-01-01T00:00:00Z', 'pw')).toBe(expected);
  });
});

describe('filters', () => {
  it('matches CIDR blocks', () => {
    const block = parseCidr('192.168.1.0/24');
    expect(block && cidrContains(block, '192.168.1.77')).toBe(true);
    expect(block && cidrContains(block, '192.168.2.1')).toBe(false);
    expect(parseCidr('10.0.0.1')).toEqual({ network: 0x0a000001, mask: 0xffffffff });
    expect(parseCidr('0.0.0.0/0')).toEqual({ network: 0, mask: 0 });
    expect(parseCidr('300.1.1.1/8')).toBeUndefined();
  });

  it('normalises every form of a uuid to the bare lower-case one', () => {
    const bare = '5a1e0c3e-0b7d-4c8e-9a8f-0123456789ab';
    const forms = [
      bare,
      bare.toUpperCase(),
      `urn:uuid:${bare}`,
      `URN:UUID:${bare.toUpperCase()}`,
      `uuid:${bare}`,
      `UUID:${bare}`,
      `{${bare}}`,
      `urn:uuid:{${bare.toUpperCase()}}`,
      ` urn:uuid:${bare}\n`,
    ];
    expect(forms.map(normalizeUuid)).toEqual(forms.map(() => bare));
  });

  it('applies announcement filters: uuid (any form), CIDR, scope prefixes', () => {
    const camera = { uuid: 'abcd', ipAddress: '10.1.2.3', scopes: ['onvif://www.onvif.org/location/hall/1'] };
    const f = (filters: Parameters<typeof passesAnnouncementFilters>[0]) =>
      passesAnnouncementFilters(filters, camera);
    expect(f(undefined)).toBe(true);
    expect(f({ uuids: { action: 'include', items: ['urn:uuid:ABCD'] } })).toBe(true);
    expect(f({ uuids: { action: 'exclude', items: ['abcd'] } })).toBe(false);
    expect(f({ ipAddresses: { action: 'include', items: ['10.1.0.0/16'] } })).toBe(true);
    expect(f({ ipAddresses: { action: 'exclude', items: ['10.1.0.0/16'] } })).toBe(false);
    expect(f({ scopes: { action: 'include', items: ['onvif://www.onvif.org/location/hall'] } })).toBe(true);
    expect(f({ scopes: { action: 'include', items: ['onvif://www.onvif.org/location/hal'] } })).toBe(false);
    const noIp = passesAnnouncementFilters(
      { ipAddresses: { action: 'include', items: ['0.0.0.0/0'] } },
      { ...camera, ipAddress: undefined },
    );
    expect(noIp).toBe(false);
  });

  it('applies device filters case-insensitively; unknown values pass', () => {
    const filters = {
      macAddresses: { action: 'include' as const, items: ['AA-BB-CC-DD-EE-FF'] },
      manufacturers: { action: 'exclude' as const, items: ['acme'] },
    };
    expect(passesDeviceFilters(filters, { macAddress: 'aa:bb:cc:dd:ee:ff', manufacturer: 'Other' })).toBe(
      true,
    );
    expect(passesDeviceFilters(filters, { macAddress: 'aa:bb:cc:dd:ee:00' })).toBe(false);
    expect(passesDeviceFilters(filters, { macAddress: 'aabbccddeeff', manufacturer: 'ACME' })).toBe(false);
    expect(passesDeviceFilters(filters, {})).toBe(true);
  });
});

describe('properties', () => {
  const target = {
    id: 'u1',
    deviceServiceUrl: 'http://10.0.0.2/onvif/device_service',
    ipAddress: '10.0.0.2',
    scopes: ['a', 'b'],
  };

  it('names stream URIs after profile tokens in upper snake case, without collisions', () => {
    expect(upperSnake('mainStream')).toBe('MAIN_STREAM');
    expect(upperSnake('Profile_1')).toBe('PROFILE_1');
    expect(upperSnake('sub-stream.2')).toBe('SUB_STREAM_2');
    const props = buildProperties(target, {
      profiles: [
        { token: 'a-b', name: '' },
        { token: 'a_b', name: '' },
      ],
      streamUris: new Map([
        ['a-b', 'rtsp://x/1'],
        ['a_b', 'rtsp://x/2'],
      ]),
      macAddress: 'AABBCCDDEEFF',
    });
    expect(props).toMatchObject({
      ONVIF_STREAM_URI_A_B: 'rtsp://x/1',
      ONVIF_STREAM_URI_A_B_2: 'rtsp://x/2',
      ONVIF_PROFILES: 'a-b,a_b',
      ONVIF_DEVICE_MAC_ADDRESS: 'aa:bb:cc:dd:ee:ff',
      ONVIF_SCOPES: 'a b',
    });
  });

  it('caps property values and turns failures into conditions', () => {
    const device = buildDevice(
      target,
      { profiles: [], streamUris: new Map(), model: 'm'.repeat(10_000) },
      { code: 'Timeout', message: 'GetProfiles: no complete reply within 5000 ms' },
    );
    expect(device.properties.ONVIF_MODEL).toHaveLength(2_048);
    expect(device.conditions).toEqual([
      {
        type: 'Queried',
        status: 'False',
        reason: 'Timeout',
        message: 'GetProfiles: no complete reply within 5000 ms',
      },
    ]);
  });
});
