import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { applyAnnouncement } from '../../discovery-handlers/mqtt/announcements.js';
import { parseBirth, parseStatus } from '../../discovery-handlers/mqtt/birth.js';
import { compileIdFilter, compilePropertyFilter } from '../../discovery-handlers/mqtt/filter.js';
import { MqttDetailsSchema, mqttHandler } from '../../discovery-handlers/mqtt/index.js';
import { resolveSettings, withoutCredentials } from '../../discovery-handlers/mqtt/settings.js';
import { announceTopics, parseAnnounceTopic } from '../../discovery-handlers/mqtt/topics.js';
import { DeviceTracker } from '../../discovery-handlers/mqtt/tracker.js';
import type { Clock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';
import { LogThrottle } from '../../src/util/logThrottle.js';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

function tracker(maxDevices = 10, required: Record<string, string> = {}) {
  return new DeviceTracker({
    maxDevices,
    propertyFilter: compilePropertyFilter(required),
    toDevice: (id, properties) => ({ id, properties: { ...properties } }),
  });
}

describe('mqtt birth payloads', () => {
  it('reads string properties, and an empty payload as a deletion', () => {
    expect(parseBirth(json({ properties: { A: 'x', _B1: '' } }), 1024)).toEqual({
      kind: 'announced',
      properties: { A: 'x', _B1: '' },
    });
    expect(parseBirth(json({}), 1024)).toEqual({ kind: 'announced', properties: {} });
    expect(parseBirth(Buffer.alloc(0), 1024)).toEqual({ kind: 'deleted' });
  });

  it.each([
    ['not JSON', Buffer.from('{nope'), 'not JSON'],
    ['too big', json({ properties: { A: 'x'.repeat(2000) } }), 'exceeds 1024'],
    ['an array', json([1]), 'not a JSON object'],
    ['a number', json(5), 'not a JSON object'],
    ['properties not an object', json({ properties: ['A'] }), '"properties" is not an object'],
    ['a number value', json({ properties: { A: 1 } }), 'A is a number'],
    ['a null value', json({ properties: { A: null } }), 'A is null'],
    ['a nested value', json({ properties: { A: { b: 'c' } } }), 'A is an object'],
    ['a key that is no env name', json({ properties: { 'A-B': 'x' } }), 'not an env name'],
  ])('refuses a birth that is %s as a whole', (_what, payload, reason) => {
    const birth = parseBirth(payload, 1024);
    expect(birth.kind === 'invalid' && birth.reason).toContain(reason);
  });

  it('refuses a birth with too many properties', () => {
    const birth = parseBirth(json({ properties: manyProperties(300) }), 65_536);
    expect(birth.kind === 'invalid' && birth.reason).toContain('more than 256');
  });

  it('keeps __proto__ a plain key', () => {
    const birth = parseBirth(Buffer.from('{"properties":{"__proto__":"x","A":"1"}}'), 1024);
    expect(birth.kind === 'announced' && Object.getPrototypeOf(birth.properties)).toBe(Object.prototype);
  });

  it('reads online, offline and a cleared status; refuses the rest', () => {
    expect(parseStatus(Buffer.from('online'))).toBe('online');
    expect(parseStatus(Buffer.from('offline\n'))).toBe('offline');
    expect(parseStatus(Buffer.alloc(0))).toBe('cleared');
    expect(parseStatus(Buffer.from('ONLINE'))).toBe('invalid');
    expect(parseStatus(Buffer.alloc(10_000, 'a'))).toBe('invalid');
  });
});

describe('mqtt topics and filters', () => {
  const topics = announceTopics('site/a');

  it('parses birth and status topics under the prefix only', () => {
    expect(topics.filters).toEqual(['site/a/+/status', 'site/a/+/birth']);
    expect(parseAnnounceTopic(topics, 'site/a/dev-1/birth')).toEqual({ kind: 'birth', id: 'dev-1' });
    expect(parseAnnounceTopic(topics, 'site/a/dev-1/status')).toEqual({ kind: 'status', id: 'dev-1' });
    expect(parseAnnounceTopic(topics, 'site/a//status')).toEqual({ kind: 'status', id: '' });
    expect(parseAnnounceTopic(topics, 'site/a/dev-1/telemetry/x')).toBeUndefined();
    expect(parseAnnounceTopic(topics, 'site/b/dev-1/birth')).toBeUndefined();
  });

  it('filters ids with include and exclude globs', () => {
    const keep = compileIdFilter({ include: ['cam-*', 'sensor-?'], exclude: ['cam-test*'] });
    expect(['cam-1', 'cam-test-2', 'sensor-7', 'sensor-17', 'plc'].filter(keep)).toEqual([
      'cam-1',
      'sensor-7',
    ]);
    expect(compileIdFilter(undefined)('anything')).toBe(true);
    expect(compileIdFilter({ include: ['a.b'] })('aXb')).toBe(false);
  });

  it('requires every key=value pair of the properties filter', () => {
    const keep = compilePropertyFilter({ ROOM: 'lab', KIND: 'temp' });
    expect(keep({ ROOM: 'lab', KIND: 'temp', X: '1' })).toBe(true);
    expect(keep({ ROOM: 'lab' })).toBe(false);
    expect(compilePropertyFilter({ constructor: 'x' })({})).toBe(false);
  });
});

describe('mqtt device tracker', () => {
  it('lists a device with a birth unless it is offline; deletion and cleared status behave', () => {
    const t = tracker();
    t.setStatus('b', 'offline');
    t.setBirth('b', { X: '1' });
    t.setBirth('a', { X: '2' });
    expect(t.list().map((d) => d.id)).toEqual(['a']);
    t.setStatus('b', 'online');
    expect(t.list().map((d) => d.id)).toEqual(['a', 'b']);
    t.setBirth('a', undefined);
    expect(t.list().map((d) => d.id)).toEqual(['b']);
    expect(t.size).toBe(1);
    t.setStatus('b', undefined);
    expect(t.list().map((d) => d.id)).toEqual(['b']);
  });

  it('tracks at most maxDevices ids, and makes room when one is deleted', () => {
    const t = tracker(2);
    expect(t.setBirth('a', {})).toBe('tracked');
    expect(t.setStatus('b', 'offline')).toBe('tracked');
    expect(t.setBirth('c', {})).toBe('full');
    expect(t.setBirth('c', undefined)).toBe('tracked');
    expect(t.setBirth('b', { X: '1' })).toBe('tracked');
    t.setStatus('b', undefined);
    t.setBirth('b', undefined);
    expect(t.setBirth('c', {})).toBe('tracked');
    expect(t.list().map((d) => d.id)).toEqual(['a', 'c']);
  });

  it('applies the properties filter at listing time', () => {
    const t = tracker(10, { ROOM: 'lab' });
    t.setBirth('a', { ROOM: 'lab' });
    t.setBirth('b', { ROOM: 'hall' });
    expect(t.list().map((d) => d.id)).toEqual(['a']);
  });

  it('turns hostile messages into rejections, not exceptions', () => {
    const t = tracker();
    const rules = { topics: announceTopics('devices'), idFilter: compileIdFilter({}), maxBirthBytes: 100 };
    const apply = (topic: string, payload: Buffer) => applyAnnouncement(t, rules, topic, payload);
    expect(apply(`devices/${'x'.repeat(129)}/birth`, json({})).result).toBe('rejected');
    expect(apply('devices//birth', json({})).result).toBe('rejected');
    expect(apply('devices/a/birth', Buffer.alloc(101, 0x20)).result).toBe('rejected');
    expect(apply('devices/a/status', Buffer.from('up')).result).toBe('rejected');
    expect(apply('devices/a/birth', json({ properties: { A: '1' } })).result).toBe('applied');
    expect(t.list()).toEqual([{ id: 'a', properties: { A: '1' } }]);
  });
});

describe('mqtt details and settings', () => {
  it('accepts the documented details and gives every schema field a description', () => {
    expect(Value.Check(MqttDetailsSchema, {})).toBe(true);
    const details = {
      brokerUrl: 'mqtt://edge:1883',
      username: 'disc',
      password: 's3cret',
      topicPrefix: 'devices',
      ids: { include: ['cam-*'], exclude: ['cam-test'] },
      properties: { ROOM: 'lab' },
      maxDevices: 10,
      maxBirthBytes: 1024,
    };
    expect(Value.Check(MqttDetailsSchema, details)).toBe(true);
    expect(Value.Check(MqttDetailsSchema, { brokerUrl: 'http://edge' })).toBe(false);
    expect(Value.Check(MqttDetailsSchema, { topicPrefix: 'a/#' })).toBe(false);
    expect(Value.Check(MqttDetailsSchema, { unknown: 1 })).toBe(false);
    expect(Value.Check(MqttDetailsSchema, { properties: { 'NOT-ENV': 'x' } })).toBe(false);
    for (const [key, field] of Object.entries(MqttDetailsSchema.properties)) {
      expect(field.description, key).toBeTruthy();
    }
    expect(mqttHandler).toMatchObject({ name: 'mqtt', shared: false });
  });

  it('never hands broker credentials to pods', () => {
    expect(withoutCredentials('mqtt://user:pw@edge:1883')).toBe('mqtt://edge:1883');
    const settings = resolveSettings({ brokerUrl: 'mqtts://u:p@edge:8883' });
    expect(settings.publicUrl).toBe('mqtts://edge:8883');
    expect(resolveSettings({ advertisedBrokerUrl: 'mqtt://lb-broker.edge:1883' }).publicUrl).toBe(
      'mqtt://lb-broker.edge:1883',
    );
    expect(() => resolveSettings({ brokerUrl: 'mqtt://' })).toThrow(/brokerUrl/);
  });

  it('ends quietly for details that cannot work', async () => {
    const ctx = { logger: silentLogger(), clock: fakeClock(), signal: new AbortController().signal };
    const lists = [];
    for await (const list of mqttHandler.discover({ brokerUrl: 'mqtt://' }, ctx)) lists.push(list);
    expect(lists).toEqual([]);
  });

  it('lets at most the limit of log lines through per window', () => {
    const clock = fakeClock();
    const throttle = new LogThrottle(clock, 2, 1_000);
    expect([throttle.allow(), throttle.allow(), throttle.allow(), throttle.allow()]).toEqual([
      { suppressed: 0 },
      { suppressed: 0 },
      false,
      false,
    ]);
    clock.advance(1_000);
    expect(throttle.allow()).toEqual({ suppressed: 2 });
  });
});

function manyProperties(n: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`P${i}`, 'x']));
}

function fakeClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (handle) => clearTimeout(handle),
    advance: (ms) => {
      now += ms;
    },
  };
}
