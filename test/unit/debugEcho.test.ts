import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import {
  createDebugEchoHandler,
  DebugEchoDetailsSchema,
  debugEchoHandler,
  parsePresence,
  presentDevices,
  readPresence,
} from '../../discovery-handlers/debugEcho/index.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';

const devices: DiscoveredDevice[] = [
  { id: 'a', properties: { X: '1' } },
  { id: 'b', properties: {} },
];

describe('debug-echo presence file', () => {
  it('reads one id per line, trimmed, blank lines ignored', () => {
    const presence = parsePresence(' a \r\n\n\tb\n');
    expect(presence.kind === 'only' && [...presence.ids]).toEqual(['a', 'b']);
    expect(presentDevices(devices, parsePresence('b\nunknown\n'))).toEqual([devices[1]]);
  });

  it('an empty file means none present, a missing file all', async () => {
    expect(presentDevices(devices, parsePresence(''))).toEqual([]);
    expect(await readPresence('/nonexistent/lb-presence')).toEqual({ kind: 'all' });
    expect(presentDevices(devices, { kind: 'all' })).toEqual(devices);
  });
});

describe('debug-echo details', () => {
  it('validates the documented details and describes every field', () => {
    expect(Value.Check(DebugEchoDetailsSchema, { devices })).toBe(true);
    expect(
      Value.Check(DebugEchoDetailsSchema, {
        devices,
        presenceFile: '/tmp/p',
        shared: true,
        pollIntervalMs: 500,
      }),
    ).toBe(true);
    expect(Value.Check(DebugEchoDetailsSchema, { devices: [{ id: '' }] })).toBe(false);
    expect(Value.Check(DebugEchoDetailsSchema, { devices: [{ id: 'a', properties: { 'A-B': 'x' } }] })).toBe(
      false,
    );
    for (const [key, field] of Object.entries(DebugEchoDetailsSchema.properties)) {
      expect(field.description, key).toBeTruthy();
    }
  });

  it('is shared as its details say, not shared by default', () => {
    expect(debugEchoHandler).toMatchObject({ name: 'debug-echo', shared: false });
    expect(debugEchoHandler.sharedFor({ devices })).toBe(false);
    expect(debugEchoHandler.sharedFor({ devices, shared: true })).toBe(true);
    expect(createDebugEchoHandler({ shared: true }).sharedFor({ devices })).toBe(true);
  });

  it('lists each id once (the first wins) and ends when the signal aborts', async () => {
    const abort = new AbortController();
    const ctx = { logger: silentLogger(), clock: systemClock, signal: abort.signal };
    const lists = [];
    const twice = [...devices, { id: 'a', properties: { X: 'second' } }];
    for await (const list of debugEchoHandler.discover({ devices: twice }, ctx)) {
      lists.push(list);
      abort.abort();
    }
    expect(lists).toEqual([devices]);
  });
});
