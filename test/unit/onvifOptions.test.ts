import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { ChangeFeed } from '../../discovery-handlers/onvif/changeFeed.js';
import { onvifHandler } from '../../discovery-handlers/onvif/index.js';
import { resolveInterface } from '../../discovery-handlers/onvif/networkInterface.js';
import { resolveOptions } from '../../discovery-handlers/onvif/options.js';
import { OnvifDetailsSchema } from '../../discovery-handlers/onvif/schema.js';
import type { Clock } from '../../src/util/clock.js';
import { ConfigError } from '../../src/util/errors.js';
import { LogThrottle } from '../../src/util/logThrottle.js';

describe('onvif handler registration', () => {
  it('is the shared handler named onvif, with every detail documented', () => {
    expect(onvifHandler).toMatchObject({ name: 'onvif', shared: true });
    const properties = OnvifDetailsSchema.properties as Record<string, { description?: string }>;
    for (const [name, schema] of Object.entries(properties)) expect(schema.description, name).toBeTruthy();
    expect(OnvifDetailsSchema.required).toEqual(['interface']);
  });
});

describe('onvif options', () => {
  it('fills in defaults and resolves loopback by name and by address', () => {
    const byName = resolveOptions({ interface: 'lo' });
    expect(byName.bound.address).toBe('127.0.0.1');
    expect(byName).toMatchObject({
      probeIntervalMs: 60_000,
      probeTimeoutMs: 2_000,
      soapTimeoutMs: 5_000,
      maxResponseBytes: 1_048_576,
      maxDevices: 256,
    });
    expect(resolveOptions({ interface: '127.0.0.1' }).bound.subnet).toEqual({
      network: 0x7f000000,
      mask: 0xff000000,
    });
  });

  it('reports every bad detail with its path, at once', () => {
    const bad = {
      interface: '',
      probeTimeoutMs: 5,
      filters: { ipAddresses: { action: 'maybe', items: ['10.0.0.0/33'] } },
      extra: true,
    } as unknown as Parameters<typeof resolveOptions>[0];
    let error: unknown;
    try {
      resolveOptions(bad);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/details\.interface:/);
    expect(problems).toMatch(/details\.probeTimeoutMs:/);
    expect(problems).toMatch(/details\.filters\.ipAddresses\.action:/);
    expect(problems).toMatch(/details\.filters\.ipAddresses\.items\.0:/);
    expect(
      Value.Check(OnvifDetailsSchema, {
        interface: 'eth1',
        filters: { macAddresses: { action: 'include', items: ['aa:bb:cc:dd:ee:ff'] } },
      }),
    ).toBe(true);
  });

  it('refuses an interface that does not exist', () => {
    expect(() => resolveInterface('nosuch0', { lo: [] })).toThrow(/no such interface/);
    expect(() => resolveInterface('192.0.2.99', {})).toThrow(/no such interface/);
  });

  it('looks credentials up by uuid (any form), then IP, then the default', () => {
    const { credentialsFor } = resolveOptions({
      interface: '127.0.0.1',
      credentials: {
        default: { username: 'd', password: 'x' },
        devices: {
          'urn:uuid:ABC': { username: 'u', password: 'x' },
          '10.0.0.9': { username: 'ip', password: 'x' },
        },
      },
    });
    expect(credentialsFor({ uuid: 'abc', ipAddress: '10.0.0.9' })?.username).toBe('u');
    expect(credentialsFor({ uuid: 'other', ipAddress: '10.0.0.9' })?.username).toBe('ip');
    expect(credentialsFor({ uuid: 'other', ipAddress: undefined })?.username).toBe('d');
    expect(resolveOptions({ interface: 'lo' }).credentialsFor({ uuid: 'a', ipAddress: 'b' })).toBeUndefined();
  });
});

describe('change feed', () => {
  it('coalesces changes and skips unchanged snapshots', async () => {
    const feed = new ChangeFeed<number[]>();
    const controller = new AbortController();
    let state = [1];
    const seen: number[][] = [];
    const consumer = (async () => {
      for await (const snapshot of feed.snapshots(() => [...state], controller.signal)) seen.push(snapshot);
    })();
    feed.notify();
    await new Promise((r) => setImmediate(r));
    feed.notify(); // same state: skipped
    state = [1, 2];
    feed.notify();
    state = [1, 2, 3];
    feed.notify(); // coalesced with the one before
    await new Promise((r) => setImmediate(r));
    controller.abort();
    await consumer;
    expect(seen).toEqual([[1], [1, 2, 3]]);
  });
});

describe('log throttle', () => {
  it('lets a few lines through per window and counts the rest', () => {
    let now = 0;
    const clock: Clock = {
      now: () => now,
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(h),
    };
    const throttle = new LogThrottle(clock, 2, 1_000);
    expect([throttle.allow(), throttle.allow(), throttle.allow(), throttle.allow()]).toEqual([
      { suppressed: 0 },
      { suppressed: 0 },
      false,
      false,
    ]);
    now = 1_000;
    expect(throttle.allow()).toEqual({ suppressed: 2 });
  });
});
