import { describe, expect, it } from 'vitest';
import { Authorizer, filterCovers } from '../../../src/broker/auth.js';
import { parseEdgeTopic, topicMatches } from '../../../src/model/topics.js';
import { hashPassword } from '../../../src/util/password.js';

describe('topic ACL', () => {
  it('filterCovers: a filter is allowed only when the allowed filter matches all it can match', () => {
    expect(filterCovers('devices/d1/#', 'devices/d1/commands/+')).toBe(true);
    // MQTT: 'a/#' also matches 'a' itself.
    expect(filterCovers('devices/d1/#', 'devices/d1')).toBe(true);
    expect(filterCovers('devices/d1/#', 'devices')).toBe(false);
    expect(filterCovers('devices/d1/#', 'devices/+/commands/x')).toBe(false);
    expect(filterCovers('devices/d1/#', 'devices/#')).toBe(false);
    expect(filterCovers('devices/+/telemetry/#', 'devices/d9/telemetry/t')).toBe(true);
    expect(filterCovers('devices/+/status', 'devices/#')).toBe(false);
    expect(filterCovers('#', 'anything/at/all')).toBe(true);
    // Without '#', the filter must match level for level; '+' covers one level, a '+' or '#' in the filter too.
    expect(filterCovers('devices/d1/status', 'devices/d1/status')).toBe(true);
    expect(filterCovers('devices/+/status', 'devices/d1/status')).toBe(true);
    expect(filterCovers('devices/+/status', 'devices/+/status')).toBe(true);
    expect(filterCovers('devices/+/status', 'devices/d1/status/x')).toBe(false);
    expect(filterCovers('devices/+/status', 'devices/d1')).toBe(false);
    expect(filterCovers('devices/d1/status', 'devices/+/status')).toBe(false);
    expect(filterCovers('devices/+', 'devices/#')).toBe(false);
    // '+' is one level of its own, even before a '#': 'devices/+/#' covers 'devices/d1' but not 'devices'.
    expect(filterCovers('devices/+/#', 'devices/d1')).toBe(true);
    expect(filterCovers('devices/+/#', 'devices')).toBe(false);
    expect(topicMatches('devices/+/#', 'devices')).toBe(false);
  });

  it('parses the DESIGN topics and nothing else', () => {
    expect(parseEdgeTopic('devices/d1/telemetry/a/b')).toEqual({
      kind: 'telemetry',
      device: 'd1',
      stream: 'a/b',
    });
    expect(parseEdgeTopic('devices/d1/commands/reboot/result')).toEqual({
      kind: 'commandResult',
      device: 'd1',
      name: 'reboot',
    });
    for (const bad of [
      'devices/d1',
      'devices//status',
      'devices/d1/telemetry',
      'devices/d1/twin/x',
      'other/d1/status',
    ]) {
      expect(parseEdgeTopic(bad)).toBeUndefined();
    }
    expect(topicMatches('a/+/c', 'a/b/c')).toBe(true);
    expect(topicMatches('a/#', 'a')).toBe(true);
    expect(topicMatches('a/+', 'a/b/c')).toBe(false);
  });

  it('devices publish only device topics under their own id; users get what the config grants', async () => {
    const hash = await hashPassword('pw');
    const auth = new Authorizer({
      allowAnonymous: false,
      devices: [{ id: 'cam-1', passwordHash: hash }],
      users: [
        { username: 'ops', passwordHash: hash, publish: ['devices/+/commands/#'], subscribe: ['devices/#'] },
      ],
    });
    const dev = await auth.authenticate('cam-1', Buffer.from('pw'));
    expect(dev).toEqual({ ok: true, identity: { kind: 'device', device: 'cam-1', username: 'cam-1' } });
    if (!dev.ok) return;
    expect(auth.canPublish(dev.identity, 'devices/cam-1/telemetry/fps')).toBe(true);
    expect(auth.canPublish(dev.identity, 'devices/cam-1/birth')).toBe(true);
    expect(auth.canPublish(dev.identity, 'devices/cam-2/telemetry/fps')).toBe(false);
    expect(auth.canPublish(dev.identity, 'devices/cam-1/twin/desired')).toBe(false);
    expect(auth.canSubscribe(dev.identity, 'devices/cam-1/#')).toBe(true);
    expect(auth.canSubscribe(dev.identity, 'devices/#')).toBe(false);
    expect(await auth.authenticate('cam-1', Buffer.from('wrong'))).toEqual({
      ok: false,
      reason: 'bad-credentials',
    });
    expect(await auth.authenticate('nobody', Buffer.from('pw'))).toEqual({
      ok: false,
      reason: 'bad-credentials',
    });
    expect(await auth.authenticate(undefined, undefined)).toEqual({ ok: false, reason: 'anonymous-refused' });
    const ops = await auth.authenticate('ops', Buffer.from('pw'));
    if (!ops.ok) throw new Error('ops refused');
    expect(auth.canPublish(ops.identity, 'devices/cam-1/commands/reboot')).toBe(true);
    expect(auth.canPublish(ops.identity, 'devices/cam-1/telemetry/x')).toBe(false);
  });
});

describe('client certificates and the credentials file', () => {
  it('a certificate name is a configured device or user, else the device of that id; a CONNECT username must match', async () => {
    const hash = await hashPassword('pw');
    const auth = new Authorizer({
      allowAnonymous: false,
      devices: [{ id: 'cam-1', username: 'camera-one', passwordHash: hash }],
      users: [{ username: 'ops', passwordHash: hash, publish: ['devices/+/commands/#'], subscribe: [] }],
    });
    expect(auth.authenticateCertificate('camera-one', undefined)).toEqual({
      ok: true,
      identity: { kind: 'device', device: 'cam-1', username: 'camera-one' },
    });
    const ops = auth.authenticateCertificate('ops', 'ops');
    expect(ops.ok && ops.identity.kind).toBe('user');
    expect(auth.authenticateCertificate('plc-9', '')).toEqual({
      ok: true,
      identity: { kind: 'device', device: 'plc-9', username: 'plc-9' },
    });
    expect(auth.authenticateCertificate('plc-9', 'ops')).toEqual({ ok: false, reason: 'bad-credentials' });
    // No name, or one that cannot be a device id (a topic level): refused.
    expect(auth.authenticateCertificate(undefined, undefined)).toEqual({
      ok: false,
      reason: 'bad-certificate',
    });
    expect(auth.authenticateCertificate('a/#', undefined)).toEqual({ ok: false, reason: 'bad-certificate' });
  });

  it('the credentials file: read again when it changes, a bad version keeps the last good set', async () => {
    const { CredentialsFile, parseCredentialsFile } = await import('../../../src/broker/credentialsFile.js');
    const { mkdtempSync, writeFileSync, utimesSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { silentLogger } = await import('../../../src/util/logger.js');
    const hash = await hashPassword('pw');
    const inConfig = { devices: [{ id: 'cam-1', passwordHash: hash }], users: [] };
    expect(() => parseCredentialsFile('devices: [{id: cam-1, passwordHash: x}]', 'f.yaml', inConfig)).toThrow(
      /f.yaml: \/devices\/0\/passwordHash/,
    );
    expect(() =>
      parseCredentialsFile(`devices: [{id: cam-1, passwordHash: '${hash}'}]`, 'f.yaml', inConfig),
    ).toThrow(/duplicate device id cam-1/);
    const dir = mkdtempSync(join(tmpdir(), 'lb-creds-'));
    const file = join(dir, 'credentials.yaml');
    let now = 0;
    const write = (text: string, mtime: number) => {
      writeFileSync(file, text);
      utimesSync(file, mtime, mtime);
    };
    write(`devices: [{id: dev-2, passwordHash: '${hash}'}]`, 1000);
    const creds = new CredentialsFile(file, inConfig, silentLogger(), () => now);
    creds.load();
    const auth = new Authorizer({ allowAnonymous: false, ...inConfig }, creds);
    expect((await auth.authenticate('dev-2', Buffer.from('pw'))).ok).toBe(true);
    expect((await auth.authenticate('cam-1', Buffer.from('pw'))).ok).toBe(true);
    write('devices: [oops', 2000);
    now += 2000;
    expect((await auth.authenticate('dev-2', Buffer.from('pw'))).ok).toBe(true);
    write(`users: [{username: dev-3, passwordHash: '${hash}'}]`, 3000);
    expect((await auth.authenticate('dev-3', Buffer.from('pw'))).ok).toBe(false); // within a second: not looked at
    now += 2000;
    expect((await auth.authenticate('dev-3', Buffer.from('pw'))).ok).toBe(true);
    expect((await auth.authenticate('dev-2', Buffer.from('pw'))).ok).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('Authorizer', () => {
  it('anonymous clients, when allowed, publish what devices send and subscribe under devices/ only', async () => {
    const auth = new Authorizer({ allowAnonymous: true, devices: [], users: [] });
    for (const username of [undefined, '']) {
      expect(await auth.authenticate(username, undefined)).toEqual({
        ok: true,
        identity: { kind: 'anonymous' },
      });
    }
    const anon = { kind: 'anonymous' } as const;
    expect(auth.canPublish(anon, 'devices/any/telemetry/t')).toBe(true);
    expect(auth.canPublish(anon, 'devices/any/commands/reboot')).toBe(false);
    expect(auth.canPublish(anon, 'elsewhere/x')).toBe(false);
    expect(auth.canSubscribe(anon, 'devices/any/#')).toBe(true);
    expect(auth.canSubscribe(anon, '#')).toBe(false);
    // A configured username still needs its password when anonymous clients are allowed.
    expect(await auth.authenticate('someone', Buffer.from('x'))).toEqual({
      ok: false,
      reason: 'bad-credentials',
    });
  });

  it('a device may log in under its own username; no password is an empty one', async () => {
    const hash = await hashPassword('pw');
    const empty = await hashPassword('');
    const auth = new Authorizer({
      allowAnonymous: false,
      devices: [
        { id: 'cam-1', username: 'camera-one', passwordHash: hash },
        { id: 'cam-2', passwordHash: empty },
      ],
      users: [
        {
          username: 'viewer',
          passwordHash: hash,
          publish: [],
          subscribe: ['devices/+/telemetry/#', 'devices/+/birth'],
        },
      ],
    });
    expect(await auth.authenticate('cam-1', Buffer.from('pw'))).toEqual({
      ok: false,
      reason: 'bad-credentials',
    });
    expect(await auth.authenticate('camera-one', Buffer.from('pw'))).toEqual({
      ok: true,
      identity: { kind: 'device', device: 'cam-1', username: 'camera-one' },
    });
    expect(await auth.authenticate('cam-2', undefined)).toEqual({
      ok: true,
      identity: { kind: 'device', device: 'cam-2', username: 'cam-2' },
    });
    const viewer = await auth.authenticate('viewer', Buffer.from('pw'));
    expect(viewer).toEqual({
      ok: true,
      identity: {
        kind: 'user',
        username: 'viewer',
        publish: [],
        subscribe: ['devices/+/telemetry/#', 'devices/+/birth'],
      },
    });
    if (!viewer.ok) return;
    expect(auth.canSubscribe(viewer.identity, 'devices/cam-1/telemetry/fps')).toBe(true);
    expect(auth.canSubscribe(viewer.identity, 'devices/cam-1/status')).toBe(false);
    // Allowed by one of its filters is enough.
    expect(auth.canSubscribe(viewer.identity, 'devices/cam-1/birth')).toBe(true);
    expect(auth.canPublish(viewer.identity, 'devices/cam-1/telemetry/fps')).toBe(false);
  });

  it('a remembered password admits only itself: another password is checked again and refused', async () => {
    const auth = new Authorizer({
      allowAnonymous: false,
      devices: [{ id: 'cam-1', passwordHash: await hashPassword('pw') }],
      users: [],
    });
    const ok = { ok: true, identity: { kind: 'device', device: 'cam-1', username: 'cam-1' } };
    expect(await auth.authenticate('cam-1', Buffer.from('pw'))).toEqual(ok);
    expect(await auth.authenticate('cam-1', Buffer.from('pw'))).toEqual(ok);
    // A refused password is not remembered: refused again.
    for (let i = 0; i < 2; i++) {
      expect(await auth.authenticate('cam-1', Buffer.from('pw2'))).toEqual({
        ok: false,
        reason: 'bad-credentials',
      });
    }
    expect(await auth.authenticate('cam-1', Buffer.from('pw'))).toEqual(ok);
  });
});
