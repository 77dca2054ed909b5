/**
 * The camera stub's SOAP side over real HTTP (its WS-Discovery side is exercised by onvifDiscovery.test.ts,
 * and by onvif-util in test/interop). These stubs run with discovery off, so nothing here is multicast,
 * except the CLI test, whose Hellos stay on loopback (127.0.0.1, TTL 1).
 */
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { usernameTokenHeader } from '../../discovery-handlers/onvif/soapEnvelope.js';
import { simulateCamera } from '../../firmware-stubs/camera/cli.js';
import { type CameraStub, startCameraStub } from '../../firmware-stubs/camera/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { uuidOf, uuidPrefix } from '../helpers/onvifKit.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function stub(options: Partial<Parameters<typeof startCameraStub>[0]> = {}): Promise<CameraStub> {
  const camera = await startCameraStub({ multicastInterface: '127.0.0.1', discovery: false, ...options });
  cleanups.push(() => camera.stop());
  return camera;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function post(url: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { 'content-type': 'application/soap+xml', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const NS =
  'xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl"';
const envelope = (body: string, header = '') =>
  `<s:Envelope ${NS}><s:Header>${header}</s:Header><s:Body>${body}</s:Body></s:Envelope>`;

/** A token built by hand, straight from the WS-Security UsernameToken Profile 1.0 formula. */
function handToken(username: string, password: string, created = new Date().toISOString()): string {
  const nonce = randomBytes(20);
  const digest = createHash('sha1')
    .update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(password)]))
    .digest('base64');
  return (
    '<Security xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><UsernameToken>' +
    `<Username>${username}</Username><Password>${digest}</Password><Nonce>${nonce.toString('base64')}</Nonce>` +
    `<Created xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">${created}</Created>` +
    '</UsernameToken></Security>'
  );
}

describe('camera stub: SOAP over HTTP', () => {
  it('answers the device and media services with Content-Length, never chunked', async () => {
    const camera = await stub({ manufacturer: 'Acme', macAddress: '02:00:00:00:00:07' });
    const media = camera.deviceServiceUrl.replace('device_service', 'media_service');
    const calls: [string, string, RegExp][] = [
      [camera.deviceServiceUrl, '<tds:GetDeviceInformation/>', /<tds:Manufacturer>Acme<\/tds:Manufacturer>/],
      [
        camera.deviceServiceUrl,
        '<tds:GetCapabilities/>',
        /<tt:Media><tt:XAddr>http:\/\/127\.0\.0\.1:\d+\/onvif\/media_service/,
      ],
      [
        camera.deviceServiceUrl,
        '<tds:GetServices/>',
        /<tds:Namespace>http:\/\/www\.onvif\.org\/ver10\/media\/wsdl/,
      ],
      [camera.deviceServiceUrl, '<tds:GetSystemDateAndTime/>', /<tt:UTCDateTime><tt:Time><tt:Hour>/],
      [
        camera.deviceServiceUrl,
        '<tds:GetNetworkInterfaces/>',
        /<tt:HwAddress>02:00:00:00:00:07<\/tt:HwAddress>/,
      ],
      [
        media,
        '<trt:GetProfiles/>',
        /<trt:Profiles token="profile_main" fixed="true"><tt:Name>main<\/tt:Name>/,
      ],
      [
        media,
        '<trt:GetStreamUri><trt:ProfileToken>profile_sub</trt:ProfileToken></trt:GetStreamUri>',
        /<tt:Uri>rtsp:\/\/127\.0\.0\.1:8554\/profile_sub<\/tt:Uri>/,
      ],
    ];
    for (const [url, body, expected] of calls) {
      const reply = await post(url, envelope(body));
      expect(reply.status, body).toBe(200);
      expect(reply.body).toMatch(expected);
      expect(reply.headers['content-length']).toBe(String(Buffer.byteLength(reply.body)));
      expect(reply.headers['transfer-encoding']).toBeUndefined();
      expect(reply.headers['content-type']).toMatch(/^application\/soap\+xml/);
    }
  }, 5_000);

  it('demands a valid PasswordDigest for everything but the PRE_AUTH operations', async () => {
    const camera = await stub({ credentials: { username: 'admin', password: 's3cret' } });
    const url = camera.deviceServiceUrl;
    const info = '<tds:GetDeviceInformation/>';
    const notAuthorized = /<s:Subcode><s:Value>ter:NotAuthorized<\/s:Value>/;

    // ONVIF Core's PRE_AUTH operations answer anyone.
    for (const op of ['GetSystemDateAndTime', 'GetCapabilities', 'GetServices', 'GetHostname'])
      expect((await post(url, envelope(`<tds:${op}/>`))).status).toBe(200);
    const bare = await post(url, envelope(info));
    expect(bare.status).toBe(400);
    expect(bare.body).toMatch(notAuthorized);
    expect((await post(url, envelope(info, handToken('admin', 'wrong')))).body).toMatch(notAuthorized);
    expect((await post(url, envelope(info, handToken('root', 's3cret')))).body).toMatch(notAuthorized);
    const stale = new Date(Date.now() - 3_600_000).toISOString();
    expect((await post(url, envelope(info, handToken('admin', 's3cret', stale)))).body).toMatch(
      notAuthorized,
    );

    expect((await post(url, envelope(info, handToken('admin', 's3cret')))).status).toBe(200);
    // The handler's own token builder agrees with the stub's checker.
    const handlerToken = usernameTokenHeader({ username: 'admin', password: 's3cret' }, Date.now());
    expect((await post(url, envelope(info, handlerToken))).status).toBe(200);
  }, 5_000);

  it('refuses bodies over the limit (413), DOCTYPEs, malformed XML, unknown operations and profiles', async () => {
    const camera = await stub({ maxRequestBytes: 4_096 });
    const url = camera.deviceServiceUrl;
    const big = await post(
      url,
      envelope(`<tds:GetDeviceInformation>${'x'.repeat(8_000)}</tds:GetDeviceInformation>`),
    );
    expect(big.status).toBe(413);
    const bomb = `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa">]>${envelope('<tds:GetDeviceInformation>&a;</tds:GetDeviceInformation>')}`;
    expect((await post(url, bomb)).status).toBe(400);
    expect((await post(url, '<s:Envelope><s:Body><tds:GetDeviceInfo')).status).toBe(400);
    const unknown = await post(url, envelope('<tds:SystemReboot/>'));
    expect(unknown.status).toBe(500);
    expect(unknown.body).toContain('ter:ActionNotSupported');
    const media = url.replace('device_service', 'media_service');
    const noProfile = await post(
      media,
      envelope('<trt:GetStreamUri><trt:ProfileToken>nope</trt:ProfileToken></trt:GetStreamUri>'),
    );
    expect(noProfile.body).toContain('ter:NoProfile');
    expect(
      (await post(url.replace('device_service', 'nothing'), envelope('<tds:GetDeviceInformation/>'))).status,
    ).toBe(404);
    // Still serving after all that.
    expect((await post(url, envelope('<tds:GetDeviceInformation/>'))).status).toBe(200);
  }, 5_000);
});

describe('leafbridge simulate camera', () => {
  it('starts N cameras from flags, with credentials and uuids from a prefix', async () => {
    const prefix = uuidPrefix();
    const sim = await simulateCamera(
      [
        '--count',
        '3',
        '--interface',
        '127.0.0.1',
        '--username',
        'u',
        '--password',
        'p',
        '--uuid-prefix',
        prefix,
        '--model',
        'Sim X',
      ],
      silentLogger(),
    );
    cleanups.push(() => sim.stop());
    expect(sim.cameras.map((c) => c.uuid)).toEqual([0, 1, 2].map((i) => `urn:uuid:${uuidOf(prefix, i)}`));
    for (const camera of sim.cameras) {
      const refused = await post(camera.deviceServiceUrl, envelope('<tds:GetDeviceInformation/>'));
      expect(refused.body).toContain('ter:NotAuthorized');
      const ok = await post(
        camera.deviceServiceUrl,
        envelope('<tds:GetDeviceInformation/>', handToken('u', 'p')),
      );
      expect(ok.body).toContain('<tds:Model>Sim X</tds:Model>');
    }
  }, 5_000);

  it('rejects bad flags with the usage text', async () => {
    await expect(simulateCamera(['--count', 'many'], silentLogger())).rejects.toThrow(
      /--count must be an integer.*\n.*leafbridge simulate camera/s,
    );
    await expect(simulateCamera(['--bogus'], silentLogger())).rejects.toThrow(/Unknown option '--bogus'/);
    await expect(simulateCamera(['--username', 'u'], silentLogger())).rejects.toThrow(/go together/);
  });
});
