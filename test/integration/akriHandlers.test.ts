import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ExternalHandlerOptions } from '../../src/discovery/external/externalHandler.js';
import type { DiscoverResponse } from '../../src/discovery/external/protocol.js';
import { RegistrationServer } from '../../src/discovery/external/registrationServer.js';
import { HandlerRegistrations } from '../../src/discovery/external/registrations.js';
import { silentLogger } from '../../src/util/logger.js';
import { akriDevice, handlerServer, register, runExternal } from '../helpers/akriHandlers.js';
import { tempDir } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/** Hostile and broken handlers against the registration socket and the agent's Discover calls. */
describe('external (Akri) discovery handlers are contained', () => {
  let dir: ReturnType<typeof tempDir>;
  let registrations: HandlerRegistrations;
  let server: RegistrationServer;
  const cleanups: (() => unknown)[] = [];
  const limits = {
    firstListTimeoutMs: 400,
    minListIntervalMs: 100,
    maxDevices: 50,
    maxMessageBytes: 64 * 1024,
  };
  const options = (): ExternalHandlerOptions => ({ ...limits, registrations, socketPath: server.socketPath });
  const sock = (name: string) => join(dir.path, `${name}.sock`);

  beforeEach(async () => {
    dir = tempDir('lb-akri-');
    registrations = new HandlerRegistrations(['cams', 'other']);
    server = new RegistrationServer({ dir: dir.path, registrations, logger: silentLogger() });
    await server.start();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await server.stop();
    dir.remove();
  });

  it('refuses bad registrations with INVALID_ARGUMENT or NOT_FOUND, and keeps serving good ones', {
    timeout: 10_000,
  }, async () => {
    const good = { name: 'cams', endpoint: sock('cams'), endpoint_type: 'UDS', shared: true };
    const cases: [string, Parameters<typeof register>[1], number][] = [
      ['empty name', { ...good, name: '' }, grpc.status.INVALID_ARGUMENT],
      ['name with a slash', { ...good, name: 'a/b' }, grpc.status.INVALID_ARGUMENT],
      ['relative socket', { ...good, endpoint: 'cams.sock' }, grpc.status.INVALID_ARGUMENT],
      [
        'socket outside the directory',
        { ...good, endpoint: '/var/lib/kubelet/device-plugins/kubelet.sock' },
        grpc.status.INVALID_ARGUMENT,
      ],
      [
        'socket climbing out of it',
        { ...good, endpoint: `${dir.path}/../x.sock` },
        grpc.status.INVALID_ARGUMENT,
      ],
      [
        'network endpoint without a port',
        { ...good, endpoint: 'http://x', endpoint_type: 'NETWORK' },
        grpc.status.INVALID_ARGUMENT,
      ],
      // field 3 (endpoint_type) = 7, an enum value the proto does not have
      [
        'unknown endpoint type',
        Buffer.from([0x0a, 0x04, 0x63, 0x61, 0x6d, 0x73, 0x12, 0x02, 0x2f, 0x78, 0x18, 0x07]),
        grpc.status.INVALID_ARGUMENT,
      ],
      ['not protobuf', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), grpc.status.INTERNAL],
      ['16 KiB and more', { ...good, endpoint: `/${'x'.repeat(20_000)}` }, grpc.status.RESOURCE_EXHAUSTED],
      ['a name the config does not list', { ...good, name: 'stranger' }, grpc.status.NOT_FOUND],
    ];
    const got: string[] = [];
    for (const [what, request] of cases) got.push(`${what}: ${(await register(dir.path, request)).code}`);
    expect(got).toEqual(cases.map(([what, , code]) => `${what}: ${code}`));
    expect(registrations.get('cams')).toBeUndefined();
    expect((await register(dir.path, good)).code).toBe(grpc.status.OK);
    expect(registrations.get('cams')).toMatchObject({ endpoint: sock('cams'), shared: true });
  });

  it('two handlers under one name: the last registration wins, the first is no longer called', {
    timeout: 10_000,
  }, async () => {
    const a = await handlerServer(sock('a'), (call) => call.write({ devices: [akriDevice('from-a')] }));
    const b = await handlerServer(sock('b'), (call) => call.write({ devices: [akriDevice('from-b')] }));
    cleanups.push(a.stop, b.stop);
    const run = runExternal('cams', options());
    cleanups.push(run.stop);
    await register(dir.path, { name: 'cams', endpoint: sock('a'), endpoint_type: 'UDS', shared: false });
    await until(() => run.last()?.[0]?.id === 'from-a', 3000, 'a listed');
    expect(run.handler.shared).toBe(false);
    await register(dir.path, { name: 'cams', endpoint: sock('b'), endpoint_type: 'UDS', shared: true });
    await until(() => run.last()?.[0]?.id === 'from-b', 3000, 'b listed');
    expect(run.handler.shared).toBe(true);
    await until(() => a.calls[0]?.cancelled === true, 3000, "a's call cancelled");
    expect(a.calls).toHaveLength(1);
    // a's devices were not reported gone in between: b's list replaced them directly
    expect(run.lists.map((l) => l.devices.map((d) => d.id).join())).toEqual(['from-a', 'from-b']);
  });

  it('a flood of lists is coalesced to one per interval, the latest; an over-long list is refused whole', {
    timeout: 20_000,
  }, async () => {
    let sent = 0;
    const h = await handlerServer(sock('cams'), (call) => {
      const flood = () => {
        if (call.cancelled) return;
        for (let i = 0; i < 200; i++) call.write({ devices: [akriDevice(`d-${sent++}`)] });
        if (sent < 5000) setImmediate(flood);
        else call.write({ devices: [akriDevice('final')] });
      };
      flood();
    });
    cleanups.push(h.stop);
    const run = runExternal('cams', options());
    cleanups.push(run.stop);
    const started = Date.now();
    await register(dir.path, { name: 'cams', endpoint: sock('cams'), endpoint_type: 'UDS', shared: false });
    await until(() => run.last()?.[0]?.id === 'final', 10_000, 'the final list');
    const elapsed = Date.now() - started;
    console.info(`akri flood: ${sent} lists sent, ${run.lists.length} applied in ${elapsed} ms`);
    expect(sent).toBeGreaterThan(1000);
    expect(run.lists.length).toBeLessThanOrEqual(Math.ceil(elapsed / limits.minListIntervalMs) + 1);
    const call = h.calls[0];
    call?.write({
      devices: Array.from({ length: limits.maxDevices + 1 }, (_, i) => akriDevice(`many-${i}`)),
    });
    await new Promise((r) => setTimeout(r, 4 * limits.minListIntervalMs));
    call?.write({ devices: [akriDevice('after')] });
    await until(() => run.last()?.[0]?.id === 'after', 3000, 'the list after the long one');
    expect(run.lists.map((l) => l.devices.length).filter((n) => n > 1)).toEqual([]);
    expect(run.reports.filter((r) => r.status === 'False' && r.reason === 'HandlerFailed')).toEqual([]);
  });

  it('garbage: unusable devices are dropped and the rest kept; undecodable or oversized messages fail the call, which is retried', {
    timeout: 15_000,
  }, async () => {
    let calls = 0;
    const h = await handlerServer(sock('cams'), (call) => {
      calls++;
      call.write({
        devices: [
          akriDevice(''),
          akriDevice('x'.repeat(300)),
          akriDevice('bad-mount', { mounts: [{ container_path: 'rel', host_path: '/h', read_only: false }] }),
          akriDevice('bad-perms', {
            device_specs: [{ container_path: '/d', host_path: '/dev/x', permissions: 'rwx!' }],
          }),
          akriDevice('many-props', {
            properties: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`P${i}`, 'v'])),
          }),
          akriDevice('ok'),
          akriDevice('ok'),
        ],
      });
      // then, on the first call a message too large, on the second one not protobuf at all
      if (calls === 1)
        setTimeout(
          () => call.write({ devices: [akriDevice('big', { properties: { B: 'x'.repeat(100_000) } })] }),
          50,
        );
    });
    const raw = await handlerServer(
      sock('raw'),
      (call) =>
        call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]) as unknown as DiscoverResponse),
      { raw: true },
    );
    cleanups.push(h.stop, raw.stop);
    const run = runExternal('cams', options());
    cleanups.push(run.stop);
    await register(dir.path, { name: 'cams', endpoint: sock('cams'), endpoint_type: 'UDS', shared: false });
    await until(
      () =>
        run
          .last()
          ?.map((d) => d.id)
          .join() === 'ok',
      3000,
      'the usable device',
    );
    await until(
      () => run.reports.some((r) => /Discover failed/.test(r.message)),
      3000,
      'the oversized message failing the call',
    );
    expect(run.lists.some((l) => l.devices.length === 0)).toBe(true); // its devices went offline meanwhile
    await until(
      () =>
        calls >= 2 &&
        run
          .last()
          ?.map((d) => d.id)
          .join() === 'ok',
      5000,
      'retried, ok again',
    );
    const before = run.reports.length;
    await register(dir.path, { name: 'cams', endpoint: sock('raw'), endpoint_type: 'UDS', shared: false });
    await until(
      () => run.reports.slice(before).some((r) => r.reason === 'HandlerFailed'),
      5000,
      'undecodable failing',
    );
    await until(() => raw.calls.length >= 2, 5000, 'the undecodable handler called again');
  });

  it('a Discover that never answers is cancelled after the first-list timeout and retried with backoff', {
    timeout: 10_000,
  }, async () => {
    const h = await handlerServer(sock('cams'), () => {}); // accepts the call, sends nothing, ever
    cleanups.push(h.stop);
    const run = runExternal('cams', options());
    cleanups.push(run.stop);
    await until(
      () => run.reports.some((r) => r.reason === 'NotRegistered'),
      2000,
      'waiting for registration',
    );
    await register(dir.path, { name: 'cams', endpoint: sock('cams'), endpoint_type: 'UDS', shared: false });
    await until(() => h.calls.length >= 3, 8000, 'three calls');
    expect(h.calls.slice(0, 2).every((c) => c.cancelled)).toBe(true);
    expect(run.reports).toContainEqual(
      expect.objectContaining({
        status: 'False',
        reason: 'HandlerFailed',
        message: `no device list within ${limits.firstListTimeoutMs} ms`,
      }),
    );
    expect(run.lists).toEqual([]);
  });

  it('a registered socket nobody serves fails the call and is retried; the handler appearing there is then used', {
    timeout: 10_000,
  }, async () => {
    const run = runExternal('cams', options());
    cleanups.push(run.stop);
    await register(dir.path, { name: 'cams', endpoint: sock('late'), endpoint_type: 'UDS', shared: false });
    await until(() => run.reports.some((r) => r.reason === 'HandlerFailed'), 3000, 'the call failing');
    const h = await handlerServer(sock('late'), (call) => call.write({ devices: [akriDevice('late')] }));
    cleanups.push(h.stop);
    await until(() => run.last()?.[0]?.id === 'late', 6000, 'the late handler used');
  });
});
