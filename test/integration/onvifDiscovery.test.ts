/**
 * The ONVIF handler against real sockets: camera stubs and hostile peers on loopback. Every multicast here
 * is pinned to 127.0.0.1 with TTL 1. All multicast tests live in this one file so they never run at the
 * same time as each other (vitest runs one file's tests in order).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { discoverOnvif, OnvifCondition, OnvifProperty } from '../../discovery-handlers/onvif/index.js';
import type { OnvifDetails } from '../../discovery-handlers/onvif/schema.js';
import {
  type CameraStub,
  type CameraStubOptions,
  startCameraStub,
} from '../../firmware-stubs/camera/index.js';
import {
  billionLaughs,
  byeXml,
  closedPort,
  fakeResponder,
  HostileMode,
  helloXml,
  hostileSoapServer,
  loopbackSender,
  probeMatchXml,
} from '../helpers/onvifHostile.js';
import { ids, recordLists, testContext, uuidOf, uuidPrefix, withPrefix } from '../helpers/onvifKit.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function startHandler(details: Partial<OnvifDetails> = {}) {
  const ctx = testContext();
  const recorder = recordLists(
    discoverOnvif({ interface: '127.0.0.1', probeTimeoutMs: 200, ...details }, ctx),
  );
  cleanups.push(async () => {
    ctx.abort();
    await recorder.done;
  });
  return { ctx, recorder };
}

/** A stub announcing `urn:uuid:<uuid>`, or the address `announce` makes of it (the forms real cameras use). */
async function startStub(
  options: Partial<CameraStubOptions> & { uuid: string; announce?: (uuid: string) => string },
): Promise<CameraStub> {
  const { announce = (uuid: string) => `urn:uuid:${uuid}`, ...rest } = options;
  const stub = await startCameraStub({
    multicastInterface: '127.0.0.1',
    ...rest,
    uuid: announce(options.uuid),
  });
  let stopped = false;
  cleanups.push(() => (stopped ? undefined : stub.stop()));
  return {
    ...stub,
    stop: async () => {
      stopped = true;
      await stub.stop();
    },
    vanish: async () => {
      stopped = true;
      await stub.vanish();
    },
  };
}

describe('ONVIF discovery: announcements', () => {
  it('finds a camera on its Hello, reads every property, and drops it at its Bye', async () => {
    const prefix = uuidPrefix();
    const uuid = uuidOf(prefix, 1);
    const { recorder } = startHandler();
    await recorder.waitFor(() => true, 2_000, 'the first (empty) list');

    const started = performance.now();
    const stub = await startStub({
      uuid,
      httpAddress: '127.0.0.2',
      manufacturer: 'Acme',
      model: 'Eye 9',
      serialNumber: 'SN-0001',
      firmwareVersion: '4.2.1',
      macAddress: '02:AA:BB:CC:DD:01',
      profiles: [
        { name: 'main', token: 'mainStream' },
        { name: 'sub', token: 'sub-stream.2' },
      ],
    });
    const found = await recorder.waitFor((d) => withPrefix(d, prefix).length === 1, 1_000, 'the camera');
    const helloToFoundMs = found.at - started;
    console.info(`ONVIF Hello → found: ${helloToFoundMs.toFixed(1)} ms`);
    expect(helloToFoundMs).toBeLessThan(1_000);

    const device = withPrefix(found.devices, prefix)[0];
    expect(device?.id).toBe(uuid);
    expect(device?.conditions).toBeUndefined();
    expect(device?.properties).toMatchObject({
      [OnvifProperty.deviceServiceUrl]: stub.deviceServiceUrl,
      [OnvifProperty.uuid]: uuid,
      [OnvifProperty.ipAddress]: '127.0.0.2',
      [OnvifProperty.macAddress]: '02:aa:bb:cc:dd:01',
      [OnvifProperty.manufacturer]: 'Acme',
      [OnvifProperty.model]: 'Eye 9',
      [OnvifProperty.serialNumber]: 'SN-0001',
      [OnvifProperty.firmwareVersion]: '4.2.1',
      [OnvifProperty.mediaServiceUrl]: `http://127.0.0.2:${stub.port}/onvif/media_service`,
      [OnvifProperty.profiles]: 'mainStream,sub-stream.2',
      ONVIF_STREAM_URI_MAIN_STREAM: 'rtsp://127.0.0.2:8554/mainStream',
      ONVIF_STREAM_URI_SUB_STREAM_2: 'rtsp://127.0.0.2:8554/sub-stream.2',
    });
    expect(device?.properties[OnvifProperty.scopes]).toContain('onvif://www.onvif.org/name/Eye%209');

    const listsBeforeBye = recorder.lists.length;
    const byeAt = performance.now();
    await stub.stop();
    const gone = await recorder.waitFor(
      (d) => withPrefix(d, prefix).length === 0,
      1_000,
      'the camera to go',
      listsBeforeBye,
    );
    console.info(`ONVIF Bye → gone: ${(gone.at - byeAt).toFixed(1)} ms`);
    // Gone from the very next list the handler yielded after the Bye.
    expect(recorder.lists.indexOf(gone)).toBe(listsBeforeBye);
  }, 10_000);

  it('finds 20 cameras announced at once', async () => {
    const prefix = uuidPrefix();
    const { recorder } = startHandler();
    await recorder.waitFor(() => true, 2_000, 'the first list');
    const started = performance.now();
    const stubs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => startStub({ uuid: uuidOf(prefix, i) })),
    );
    const all = await recorder.waitFor((d) => withPrefix(d, prefix).length === 20, 3_000, '20 cameras');
    console.info(`ONVIF 20 cameras found in ${(all.at - started).toFixed(1)} ms`);
    expect(ids(withPrefix(all.devices, prefix))).toEqual(
      stubs.map((s) => s.uuid.slice('urn:uuid:'.length)).sort(),
    );
    for (const device of withPrefix(all.devices, prefix)) {
      expect(device.properties[`${OnvifProperty.streamUriPrefix}PROFILE_MAIN`]).toBe(
        'rtsp://127.0.0.1:8554/profile_main',
      );
    }
  }, 10_000);

  it('finds cameras already running through its own Probe', async () => {
    const prefix = uuidPrefix();
    await startStub({ uuid: uuidOf(prefix, 1) });
    const { recorder } = startHandler();
    await recorder.waitFor((d) => withPrefix(d, prefix).length === 1, 1_000, 'the probed camera');
  }, 5_000);
});

describe('ONVIF discovery: cameras that vanish', () => {
  it('drops a camera gone without a Bye once it has missed three probe rounds, not sooner', async () => {
    const prefix = uuidPrefix();
    const camera = await startStub({ uuid: uuidOf(prefix, 1) });
    const probeIntervalMs = 1_000;
    const { recorder } = startHandler({ probeIntervalMs });
    await recorder.waitFor((d) => withPrefix(d, prefix).length === 1, 5_000, 'the camera');
    const seen = recorder.lists.length;
    const vanishedAt = performance.now();
    await camera.vanish();
    const gone = await recorder.waitFor(
      (d) => withPrefix(d, prefix).length === 0,
      20_000,
      'the camera dropped',
      seen,
    );
    // Last heard at most one round (interval + 200 ms probe window) before it vanished, dropped once unheard
    // for 2.5 rounds at a round's end: never sooner than 1.5 rounds after it went.
    expect(gone.at - vanishedAt).toBeGreaterThanOrEqual(1.5 * (probeIntervalMs + 200));
  }, 30_000);
});

describe('ONVIF discovery: retries', () => {
  it('reads a camera again when it announces itself after a failed read', async () => {
    const prefix = uuidPrefix();
    const uuid = uuidOf(prefix, 1);
    const port = await closedPort();
    const { recorder } = startHandler();
    await recorder.waitFor(() => true, 2_000, 'the first list');
    // A Hello whose device service is not up yet: the camera shows, with the reason.
    const sender = await loopbackSender();
    cleanups.push(() => sender.close());
    await sender.send(helloXml(uuid, `http://127.0.0.1:${port}/onvif/device_service`));
    const down = await recorder.waitFor(
      (d) => withPrefix(d, prefix).length === 1,
      1_000,
      'the unreachable camera',
    );
    expect(withPrefix(down.devices, prefix)[0]?.conditions?.[0]?.reason).toBe('ConnectionFailed');
    // Then it comes up on that very URL and says Hello (same XAddrs, same metadata version).
    await new Promise((resolve) => setTimeout(resolve, 250));
    await startStub({ uuid, httpPort: port, model: 'Late' });
    const up = await recorder.waitFor(
      (d) => withPrefix(d, prefix)[0]?.properties[OnvifProperty.model] === 'Late',
      1_000,
      'the camera, read',
    );
    expect(withPrefix(up.devices, prefix)[0]?.conditions).toBeUndefined();
  }, 5_000);
});

describe('ONVIF discovery: logs', () => {
  it('logs a camera that cannot be read once at error, not on every retry, and its recovery once', async () => {
    const prefix = uuidPrefix();
    const uuid = uuidOf(prefix, 1);
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/onvif/device_service`;
    const { recorder, ctx } = startHandler();
    await recorder.waitFor(() => true, 2_000, 'the first list');
    const sender = await loopbackSender();
    cleanups.push(() => sender.close());
    const about = (level?: number) =>
      ctx.logs.filter((l) => l.id === uuid && (level === undefined || l.level === level));
    const failures = () =>
      about().filter((l) => /(cannot|could not) be read: [^(]*$/.test(String(l.msg)) && !l.stack);
    // Announced again and again (as each probe round would), it is read (and fails) each time.
    for (let i = 0; i < 4 && failures().length < 3; i++) {
      await sender.send(helloXml(uuid, url));
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await waitUntil(() => failures().length >= 3, 5_000, 'three failed reads');
    expect(about(50)).toHaveLength(1);
    expect(about(50)[0]).toMatchObject({ reason: 'ConnectionFailed', url });
    // It comes up: one line says so, and the failure is not logged again.
    await startStub({ uuid, httpPort: port, model: 'Late' });
    await sender.send(helloXml(uuid, url));
    await recorder.waitFor(
      (d) => withPrefix(d, prefix)[0]?.properties[OnvifProperty.model] === 'Late',
      1_000,
      'the camera, read',
    );
    expect(about(30).filter((l) => l.msg === 'camera can be read again')).toHaveLength(1);
    expect(about(50)).toHaveLength(1);
  }, 30_000);
});

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('ONVIF discovery: filters', () => {
  it('includes and excludes by uuid and by CIDR', async () => {
    const prefix = uuidPrefix();
    const [a, b, c] = [uuidOf(prefix, 0xa), uuidOf(prefix, 0xb), uuidOf(prefix, 0xc)];
    await startStub({ uuid: a, httpAddress: '127.0.0.2' });
    await startStub({ uuid: b, httpAddress: '127.0.0.3' });
    await startStub({ uuid: c, httpAddress: '127.0.0.3' });

    const byUuid = startHandler({
      filters: { uuids: { action: 'include', items: [`urn:uuid:${a}`, b.toUpperCase()] } },
    });
    const byCidr = startHandler({
      filters: {
        uuids: { action: 'exclude', items: [a] },
        ipAddresses: { action: 'include', items: ['127.0.0.3/32', '10.0.0.0/8'] },
      },
    });
    const exclusive = startHandler({
      filters: { ipAddresses: { action: 'exclude', items: ['127.0.0.2/32'] } },
    });

    await byUuid.recorder.waitFor(
      (d) => ids(withPrefix(d, prefix)).join() === [a, b].join(),
      2_000,
      'a and b',
    );
    await byCidr.recorder.waitFor(
      (d) => ids(withPrefix(d, prefix)).join() === [b, c].join(),
      2_000,
      'b and c',
    );
    await exclusive.recorder.waitFor(
      (d) => ids(withPrefix(d, prefix)).join() === [b, c].join(),
      2_000,
      'b and c',
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const everSeen = (r: typeof byUuid) =>
      new Set(r.recorder.lists.flatMap((l) => ids(withPrefix(l.devices, prefix))));
    expect([...everSeen(byUuid)].sort()).toEqual([a, b]);
    expect([...everSeen(byCidr)].sort()).toEqual([b, c]);
    expect([...everSeen(exclusive)].sort()).toEqual([b, c]);
  }, 10_000);

  it('filters on manufacturer and model once the camera has been read', async () => {
    const prefix = uuidPrefix();
    await startStub({ uuid: uuidOf(prefix, 1), manufacturer: 'Acme', model: 'Eye 9' });
    await startStub({ uuid: uuidOf(prefix, 2), manufacturer: 'Other', model: 'Eye 9' });
    await startStub({ uuid: uuidOf(prefix, 3), manufacturer: 'acme', model: 'Eye 1' });
    const { recorder } = startHandler({
      filters: {
        manufacturers: { action: 'include', items: ['ACME'] },
        models: { action: 'exclude', items: ['eye 1'] },
      },
    });
    const hit = await recorder.waitFor((d) => withPrefix(d, prefix).length > 0, 2_000, 'a camera');
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(ids(withPrefix(hit.devices, prefix))).toEqual([uuidOf(prefix, 1)]);
    expect(ids(withPrefix(recorder.latest() ?? [], prefix))).toEqual([uuidOf(prefix, 1)]);
  }, 5_000);
});

describe('ONVIF discovery: credentials', () => {
  it('reads a camera with the right credentials and flags one whose credentials are wrong', async () => {
    const prefix = uuidPrefix();
    const [good, bad, none] = [uuidOf(prefix, 1), uuidOf(prefix, 2), uuidOf(prefix, 3)];
    const goodStub = await startStub({
      uuid: good,
      credentials: { username: 'admin', password: 'right' },
      model: 'Locked',
    });
    const badStub = await startStub({
      uuid: bad,
      credentials: { username: 'admin', password: 'other' },
      model: 'Locked',
    });
    await startStub({ uuid: none, model: 'Open' });
    const { recorder, ctx } = startHandler({
      credentials: {
        default: { username: 'admin', password: 'not-the-password' },
        devices: { [`urn:uuid:${good}`]: { username: 'admin', password: 'right' } },
      },
    });
    const found = await recorder.waitFor((d) => withPrefix(d, prefix).length === 3, 2_000, 'three cameras');
    const byId = new Map(found.devices.map((d) => [d.id, d]));

    expect(byId.get(good)?.conditions).toBeUndefined();
    expect(byId.get(good)?.properties[OnvifProperty.model]).toBe('Locked');
    expect(byId.get(good)?.properties[`${OnvifProperty.streamUriPrefix}PROFILE_SUB`]).toBe(
      'rtsp://127.0.0.1:8554/profile_sub',
    );
    // A camera without auth ignores the (default) token it does not need.
    expect(byId.get(none)?.properties[OnvifProperty.model]).toBe('Open');

    const refused = byId.get(bad);
    expect(refused?.conditions).toEqual([
      expect.objectContaining({
        type: OnvifCondition.authenticated,
        status: 'False',
        reason: 'NotAuthorized',
      }),
    ]);
    expect(Object.keys(refused?.properties ?? {}).sort()).toEqual(
      [
        OnvifProperty.deviceServiceUrl,
        OnvifProperty.uuid,
        OnvifProperty.ipAddress,
        OnvifProperty.scopes,
      ].sort(),
    );
    expect(refused?.properties[OnvifProperty.deviceServiceUrl]).toBe(badStub.deviceServiceUrl);
    expect(goodStub.uuid).toBe(`urn:uuid:${good}`);
    // The password never reaches the log.
    expect(JSON.stringify(ctx.logs)).not.toMatch(/right|not-the-password/);
  }, 5_000);

  it('reports a camera that wants credentials when none are configured', async () => {
    const prefix = uuidPrefix();
    await startStub({ uuid: uuidOf(prefix, 1), credentials: { username: 'admin', password: 'pw' } });
    const { recorder } = startHandler();
    const found = await recorder.waitFor((d) => withPrefix(d, prefix).length === 1, 2_000, 'the camera');
    const condition = withPrefix(found.devices, prefix)[0]?.conditions?.[0];
    expect(condition).toMatchObject({ type: 'Authenticated', status: 'False', reason: 'NotAuthorized' });
    expect(condition?.message).toMatch(/no credentials are configured/);
  }, 5_000);
});

describe('ONVIF discovery: uuid forms', () => {
  it('gives one id to every form of a uuid a camera announces, and matches filters and credentials in any form', async () => {
    const prefix = uuidPrefix();
    const forms: [string, (uuid: string) => string][] = [
      ['urn:uuid:', (u) => `urn:uuid:${u}`],
      ['URN:UUID: upper case', (u) => `URN:UUID:${u.toUpperCase()}`],
      ['uuid: without urn:', (u) => `uuid:${u}`],
      ['bare upper case', (u) => u.toUpperCase()],
      ['braces', (u) => `urn:uuid:{${u}}`],
    ];
    const uuids = forms.map((_, i) => uuidOf(prefix, i + 1));
    await Promise.all(
      forms.map(([, announce], i) =>
        startStub({
          uuid: uuids[i]!,
          announce,
          credentials: { username: 'admin', password: `pw-${i}` },
        }),
      ),
    );
    // The config names each camera in yet another form than the one it announces.
    const configForms = [(u: string) => u, (u: string) => `uuid:${u}`, (u: string) => u.toUpperCase()];
    const named = (i: number) => configForms[i % configForms.length]!(uuids[i]!);
    const { recorder } = startHandler({
      filters: { uuids: { action: 'include', items: uuids.map((_, i) => named(i)) } },
      credentials: {
        devices: Object.fromEntries(
          uuids.map((_, i) => [named(i), { username: 'admin', password: `pw-${i}` }]),
        ),
      },
    });
    const found = await recorder.waitFor(
      (d) => withPrefix(d, prefix).length === forms.length,
      2_000,
      'a camera in every form',
    );
    const devices = withPrefix(found.devices, prefix);
    expect(ids(devices)).toEqual([...uuids].sort());
    // Devices stored under the id older versions gave (`uuid:…` kept its prefix) are adopted by the new one.
    const byId = new Map(devices.map((d) => [d.id, d]));
    expect(byId.get(uuids[0]!)?.formerIds).toBeUndefined();
    expect(byId.get(uuids[2]!)?.formerIds).toEqual([`uuid:${uuids[2]}`]);
    expect(byId.get(uuids[4]!)?.formerIds).toEqual([`{${uuids[4]}}`]);
    for (const device of devices) {
      expect(device.conditions).toBeUndefined();
      expect(device.properties[OnvifProperty.uuid]).toBe(device.id);
      expect(device.properties[OnvifProperty.model]).toBeDefined();
    }
  }, 25_000);
});

const mib = 1024 * 1024;

describe('ONVIF discovery: hostile input', () => {
  it('contains oversized, malformed, entity-bomb and hanging SOAP replies, and still finds real cameras', async () => {
    const prefix = uuidPrefix();
    const heapBefore = process.memoryUsage().heapUsed;
    const modes = [HostileMode.oversized, HostileMode.malformed, HostileMode.billionLaughs, HostileMode.hang];
    const servers = await Promise.all(modes.map((mode) => hostileSoapServer(mode)));
    for (const server of servers) cleanups.push(() => server.stop());
    const hostileIds = modes.map((_, i) => uuidOf(prefix, 0xb0 + i));
    const responder = await fakeResponder((probeId) =>
      servers.map((server, i) => probeMatchXml(probeId, hostileIds[i] ?? '', server.url)),
    );
    cleanups.push(() => responder.stop());
    await startStub({ uuid: uuidOf(prefix, 1), model: 'Honest' });

    const { recorder, ctx } = startHandler({ soapTimeoutMs: 500, maxResponseBytes: 65_536 });
    const all = await recorder.waitFor((d) => withPrefix(d, prefix).length === 5, 3_000, 'five cameras');
    const byId = new Map(all.devices.map((d) => [d.id, d]));
    expect(byId.get(uuidOf(prefix, 1))?.properties[OnvifProperty.model]).toBe('Honest');
    expect(byId.get(uuidOf(prefix, 1))?.conditions).toBeUndefined();
    const reasons = hostileIds.map((id) => byId.get(id)?.conditions?.[0]);
    expect(reasons.map((c) => c?.reason)).toEqual([
      'ResponseTooLarge',
      'MalformedResponse',
      'RejectedXml',
      'Timeout',
    ]);
    for (const condition of reasons)
      expect(condition).toMatchObject({ type: OnvifCondition.queried, status: 'False' });
    for (const id of hostileIds) {
      // Only what WS-Discovery said: nothing from the hostile replies made it into the properties.
      expect(Object.keys(byId.get(id)?.properties ?? {})).toHaveLength(4);
    }
    // The endless reply was cut off near the cap: the server got rid of a few MiB (socket buffers) of 256.
    expect(servers[0]?.bytesWritten()).toBeLessThan(16 * mib);

    // Hostile datagrams: dropped and logged, and the handler still hears the next real camera.
    const sender = await loopbackSender();
    cleanups.push(() => sender.close());
    await sender.send(billionLaughs());
    await sender.send(
      helloXml(uuidOf(prefix, 0xe1), 'http://127.0.0.1:1/').replace('<s:Body>', '<s:Body><d:Hello>'),
    );
    await sender.send(
      `<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${helloXml(uuidOf(prefix, 0xe2), 'http://127.0.0.1:1/')}`,
    );
    await sender.send(Buffer.alloc(40_000, '<Hello>'));
    await sender.send(probeMatchXml('urn:uuid:not-our-probe', uuidOf(prefix, 0xe3), 'http://127.0.0.1:1/'));
    const before = recorder.lists.length;
    await startStub({ uuid: uuidOf(prefix, 2) });
    await recorder.waitFor((d) => withPrefix(d, prefix).length === 6, 1_000, 'the next real camera', before);
    expect(ids(withPrefix(recorder.latest() ?? [], prefix))).not.toContain(uuidOf(prefix, 0xe2));
    const dropped = ctx.logs.filter((l) => String(l.msg).startsWith('WS-Discovery datagram dropped'));
    expect(dropped.length).toBeGreaterThanOrEqual(4);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * mib);
  }, 10_000);

  it('keeps at most maxDevices through a flood of 10,000 bogus ProbeMatches, and keeps working', async () => {
    const prefix = uuidPrefix();
    const port = await closedPort();
    const bogus = (i: number) => uuidOf(prefix, 0x10000 + i);
    const xaddr = `http://127.0.0.1:${port}/onvif/device_service`;
    const heapBefore = process.memoryUsage().heapUsed;
    const responder = await fakeResponder((probeId) =>
      Array.from({ length: 10_000 }, (_, i) => probeMatchXml(probeId, bogus(i), xaddr)),
    );
    cleanups.push(() => responder.stop());
    const maxDevices = 50;
    const { recorder, ctx } = startHandler({ maxDevices });
    await recorder.waitFor((d) => d.length === maxDevices, 3_000, `${maxDevices} tracked devices`);
    // Then 1,000 unsolicited ProbeMatches (answering no probe of ours) to the group: all dropped.
    const sender = await loopbackSender();
    cleanups.push(() => sender.close());
    for (let i = 0; i < 1_000; i++)
      await sender.send(probeMatchXml('urn:uuid:nobody', bogus(20_000 + i), xaddr));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(Math.max(...recorder.lists.map((l) => l.devices.length))).toBe(maxDevices);
    expect(responder.probes).toBe(1);
    const flooded = withPrefix(recorder.latest() ?? [], prefix);
    for (const device of flooded) expect(device.conditions?.[0]?.reason).toBe('ConnectionFailed');
    expect(ids(flooded).every((id) => id < bogus(20_000))).toBe(true);
    const limitWarnings = ctx.logs.filter((l) => String(l.msg).includes('tracked-camera limit'));
    expect(limitWarnings).toHaveLength(1);
    const unsolicited = ctx.logs.filter((l) => String(l.msg).includes('answer none of our probes'));
    expect(unsolicited.length).toBeGreaterThan(0);
    expect(unsolicited.length).toBeLessThanOrEqual(10); // throttled
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * mib);

    // A Bye frees a slot, and the next real camera takes it.
    const victim = flooded[0]?.id ?? '';
    await sender.send(byeXml(victim));
    const afterBye = await recorder.waitFor(
      (d) => !ids(d).includes(victim),
      1_000,
      'the Bye',
      recorder.lists.length,
    );
    expect(afterBye.devices).toHaveLength(maxDevices - 1);
    await startStub({ uuid: uuidOf(prefix, 1) });
    await recorder.waitFor((d) => ids(d).includes(uuidOf(prefix, 1)), 1_000, 'the real camera');
  }, 15_000);
});
