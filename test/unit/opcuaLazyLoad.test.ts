import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { opcuaHandler } from '../../discovery-handlers/opcua/index.js';
import { simulatePlc, startDiscoveryServer, startPlcStub } from '../../firmware-stubs/plc/index.js';
import type { DiscoveryHandler } from '../../src/model/handler.js';

describe('node-opcua is loaded only when OPC UA is used', () => {
  it('is not loaded by importing the handler and the PLC stub', () => {
    // It also fits in the agent's one array of handlers (a type check as much as a test).
    const handlers: DiscoveryHandler[] = [opcuaHandler];
    expect(handlers[0]?.shared).toBe(true);
    expect([opcuaHandler.name, typeof simulatePlc, typeof startPlcStub, typeof startDiscoveryServer]).toEqual(
      ['opcua', 'function', 'function', 'function'],
    );
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((path) =>
      path.includes('node-opcua'),
    );
    expect(loaded).toEqual([]);
  });

  it('is loaded once discovery starts (so the check above would see it)', async () => {
    const stop = new AbortController();
    const { silentLogger } = await import('../../src/util/logger.js');
    const { systemClock } = await import('../../src/util/clock.js');
    const ctx = { logger: silentLogger(), clock: systemClock, signal: stop.signal };
    for await (const list of opcuaHandler.discover({ discoveryUrls: ['opc.tcp://127.0.0.1:1'] }, ctx)) {
      expect(list).toEqual([]);
      stop.abort();
    }
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((path) =>
      path.includes('node-opcua'),
    );
    expect(loaded.length).toBeGreaterThan(0);
  }, 20_000);
});
