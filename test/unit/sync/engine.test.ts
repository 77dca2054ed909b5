import { Writable } from 'node:stream';
import type { PublishPacket } from 'aedes';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Identity } from '../../../src/broker/auth.js';
import type { OutgoingMessage } from '../../../src/broker/edgeBroker.js';
import { openDb } from '../../../src/database/db.js';
import { Outbox, type OutboxEntry } from '../../../src/database/outbox.js';
import { CommandStore } from '../../../src/sync/commands.js';
import { SyncEngine } from '../../../src/sync/engine.js';
import { TwinStore } from '../../../src/sync/twins.js';
import { createLogger, silentLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/wait.js';

const device: Identity = { kind: 'device', device: 'd1', username: 'd1' };

/** A PUBLISH as the edge broker hands it to `ingest` (aedes' packet). */
function publish(topic: string, payload: string, extra: Partial<PublishPacket> = {}): PublishPacket {
  return {
    cmd: 'publish',
    topic,
    payload: Buffer.from(payload),
    qos: 1,
    retain: false,
    dup: false,
    ...extra,
  } as PublishPacket;
}

describe('SyncEngine and its edge publisher', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  /** An engine over a real SQLite store; with `outbox`, a real outbox in it (drop-oldest, 16 MiB). */
  function engine(o: { outbox?: boolean; commandTtlMs?: number } = {}) {
    const dir = tempDir();
    const db = openDb(dir.path, { synchronous: 'normal' });
    const lines: { msg: string; topic?: string; [k: string]: unknown }[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: new Writable({
        write(chunk, _enc, cb) {
          for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
          cb();
        },
      }),
    });
    const outbox = o.outbox
      ? new Outbox(db, { maxBytes: 1 << 24, overflow: 'drop-oldest' }, silentLogger())
      : undefined;
    const commands = new CommandStore(db);
    const twins = new TwinStore(db);
    const e = new SyncEngine({
      logger,
      outbox,
      twins,
      commands,
      commandTtlMs: o.commandTtlMs ?? 60_000,
    });
    cleanups.push(() => {
      e.stop();
      outbox?.close();
      db.close();
      dir.remove();
    });
    const sent: OutgoingMessage[] = [];
    /** Ingests a packet; resolves with what `done` was told (undefined: durable) and whether it was told at once. */
    const ingest = (packet: PublishPacket) =>
      new Promise<{ err: Error | undefined; sync: boolean; inOutbox: number }>((resolve) => {
        let returned = false;
        e.ingest(device, 'd1-client', packet, (err) =>
          resolve({ err, sync: !returned, inOutbox: outbox?.messages ?? 0 }),
        );
        returned = true;
      });
    /** Everything in the outbox, in order (read from the start). */
    const queued = (): OutboxEntry[] => {
      outbox?.rewind();
      return outbox?.take(1000) ?? [];
    };
    return { engine: e, lines, outbox, commands, twins, sent, ingest, queued };
  }

  it('publishes through the edge given at start; before it, a command is kept and the skipped publish logged', async () => {
    const { engine: e, lines } = engine();
    const payload = Buffer.from('{"delay":1}');
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, payload, {});
    expect(lines.map((l) => [l.msg, l.topic])).toContainEqual([
      'edge publish before the engine started: not sent',
      'devices/d1/commands/reboot',
    ]);
    const sent: OutgoingMessage[] = [];
    e.start({ publish: async (m) => void sent.push(m) });
    // The device subscribes: the command kept before the start reaches it through the edge.
    e.onSubscribed({ kind: 'device', device: 'd1', username: 'd1' }, ['devices/d1/commands/+']);
    await until(() => sent.length === 1, 10_000, 'the kept command');
    expect(sent[0]).toMatchObject({ topic: 'devices/d1/commands/reboot', payload, qos: 1 });
    e.downstream({ kind: 'desired', device: 'd1' }, Buffer.from('{"rate":5,"$version":1}'), {});
    expect(sent.slice(1).map((m) => [m.topic, m.retain])).toEqual([
      ['devices/d1/twin/desired', true],
      ['devices/d1/twin/delta', true],
    ]);
  });

  it('telemetry goes into the outbox with its properties; QoS 1 is told after the commit, QoS 0 at once', async () => {
    const { engine: e, ingest, queued } = engine({ outbox: true });
    const q1 = await ingest(
      publish('devices/d1/telemetry/t', '21.5', {
        properties: {
          correlationData: Buffer.from('c1'),
          contentType: 'text/plain',
          userProperties: { a: '1', b: ['x', 'y'] },
        },
      } as Partial<PublishPacket>),
    );
    expect(q1).toEqual({ err: undefined, sync: false, inOutbox: 1 });
    const q0 = await ingest(publish('devices/d1/telemetry/t', '22', { qos: 0 }));
    // Told before the commit: nothing to wait for at QoS 0.
    expect(q0).toEqual({ err: undefined, sync: true, inOutbox: 1 });
    // Properties the upstream cannot use (payload format) make no props at all.
    await ingest(
      publish('devices/d1/telemetry/t', '23', {
        properties: { payloadFormatIndicator: true },
      } as Partial<PublishPacket>),
    );
    await until(() => queued().length === 3, 5_000, 'three entries');
    const entries = queued();
    expect(entries.map((m) => [m.device, m.topic, m.payload.toString()])).toEqual([
      ['d1', 'devices/d1/telemetry/t', '21.5'],
      ['d1', 'devices/d1/telemetry/t', '22'],
      ['d1', 'devices/d1/telemetry/t', '23'],
    ]);
    expect(entries[0]?.props).toEqual({
      correlationData: Buffer.from('c1'),
      contentType: 'text/plain',
      userProperties: { a: '1', b: 'x,y' },
    });
    expect(entries[1]?.props).toBeUndefined();
    expect(entries[2]?.props).toBeUndefined();
    expect(e.received.telemetry).toBe(3);
    expect(e.received.other).toBe(0);
  });

  it('a status must be online or offline; a birth must be a JSON object or empty; refused ones are not counted', async () => {
    const { engine: e, ingest, queued } = engine({ outbox: true });
    const bad = await ingest(publish('devices/d1/status', 'maybe'));
    expect(bad.err?.message).toBe('status must be online or offline');
    expect((bad.err as { code?: string }).code).toBe('STATUS_INVALID');
    // The refusal names what was wrong, so the device's owner can tell which message it was.
    expect((await ingest(publish('devices/d1/birth', '[1]'))).err?.message).toBe(
      'birth message must be a JSON object',
    );
    expect((await ingest(publish('devices/d1/birth', '{"properties":{"a":1}}'))).err).toBeUndefined();
    expect((await ingest(publish('devices/d1/birth', ''))).err).toBeUndefined();
    expect((await ingest(publish('devices/d1/status', 'offline'))).err).toBeUndefined();
    expect((await ingest(publish('devices/d1/status', 'online'))).err).toBeUndefined();
    expect(queued().map((m) => [m.topic, m.payload.toString()])).toEqual([
      ['devices/d1/birth', '{"properties":{"a":1}}'],
      ['devices/d1/birth', ''],
      ['devices/d1/status', 'offline'],
      ['devices/d1/status', 'online'],
    ]);
    expect(e.received).toMatchObject({ status: 2, birth: 2, other: 0 });
  });

  it('topics that do not go upstream are counted as other, told done and not queued', async () => {
    const { engine: e, ingest, queued } = engine({ outbox: true });
    for (const topic of ['sensors/x', 'devices/d1/twin/desired', 'devices/d1/commands/reboot']) {
      const r = await ingest(publish(topic, '{}'));
      expect(r).toMatchObject({ err: undefined, sync: true });
    }
    expect(e.received.other).toBe(3);
    expect(e.received.desired).toBe(0);
    expect(e.received.command).toBe(0);
    await ingest(publish('devices/d1/telemetry/t', 'after'));
    expect(queued().map((m) => m.payload.toString())).toEqual(['after']);
  });

  it('without an upstream, device messages are accepted and counted, and nothing is queued', async () => {
    const { engine: e, ingest, twins } = engine();
    expect(await ingest(publish('devices/d1/telemetry/t', '1'))).toMatchObject({
      err: undefined,
      sync: true,
    });
    expect(await ingest(publish('devices/d1/twin/reported', '{"fw":"1.0"}'))).toMatchObject({
      err: undefined,
      sync: true,
    });
    expect(e.received).toMatchObject({ telemetry: 1, reported: 1 });
    expect(twins.get('d1').reported).toEqual({ fw: '1.0' });
  });

  it('a reported patch goes upstream as the whole merged twin with its version; a delta follows once a desired twin exists', async () => {
    const { engine: e, ingest, queued, sent, lines } = engine({ outbox: true });
    e.start({ publish: async (m) => void sent.push(m) });
    await ingest(publish('devices/d1/twin/reported', '{"fw":"1.0","rate":1}'));
    // No desired twin yet: no delta.
    expect(sent).toEqual([]);
    e.downstream({ kind: 'desired', device: 'd1' }, Buffer.from('{"rate":5,"$version":3}'), {});
    expect(sent.map((m) => [m.topic, JSON.parse(m.payload.toString())])).toEqual([
      ['devices/d1/twin/desired', { rate: 5, $version: 3 }],
      ['devices/d1/twin/delta', { rate: 5, $version: 3 }],
    ]);
    sent.length = 0;
    await ingest(publish('devices/d1/twin/reported', '{"rate":5}'));
    expect(sent.map((m) => [m.topic, JSON.parse(m.payload.toString()), m.retain, m.qos])).toEqual([
      ['devices/d1/twin/delta', { $version: 3 }, true, 1],
    ]);
    expect(queued().map((m) => JSON.parse(m.payload.toString()))).toEqual([
      { fw: '1.0', rate: 1, $version: 1 },
      { fw: '1.0', rate: 5, $version: 2 },
    ]);
    // A stale desired twin (same version) is ignored and logged at debug.
    sent.length = 0;
    e.downstream({ kind: 'desired', device: 'd1' }, Buffer.from('{"rate":9,"$version":3}'), {});
    expect(sent).toEqual([]);
    expect(lines).toContainEqual(
      expect.objectContaining({ msg: 'stale desired twin ignored', device: 'd1' }),
    );
  });

  it('commands: delivered with correlation and response topic, stored once per id, kept for a device that subscribes later', async () => {
    const { engine: e, sent, commands } = engine({ outbox: true });
    e.start({ publish: async (m) => void sent.push(m) });
    const cmd = { kind: 'command', device: 'd1', name: 'reboot' } as const;
    e.downstream(cmd, Buffer.from('a'), {
      userProperties: { 'lb-msg-id': 'm-1' },
      correlationData: Buffer.from('corr'),
    });
    expect(sent).toHaveLength(1);
    expect(sent[0]).toEqual({
      topic: 'devices/d1/commands/reboot',
      payload: Buffer.from('a'),
      qos: 1,
      retain: false,
      properties: {
        correlationData: Buffer.from('corr'),
        responseTopic: 'devices/d1/commands/reboot/result',
      },
    });
    // The same message id again (a redelivery from upstream): not stored or delivered twice.
    e.downstream(cmd, Buffer.from('a'), { userProperties: { 'lb-msg-id': ['m-1'] } });
    expect(sent).toHaveLength(1);
    // Without correlation data the message id is the correlation; without a message id, a fresh one.
    e.downstream(cmd, Buffer.from('b'), { userProperties: { 'lb-msg-id': ['m-2', 'ignored'] } });
    e.downstream(cmd, Buffer.from('c'), {});
    e.downstream(cmd, Buffer.from('d'), {});
    expect(sent.map((m) => m.payload.toString())).toEqual(['a', 'b', 'c', 'd']);
    expect(sent[1]?.properties?.correlationData).toEqual(Buffer.from('m-2'));
    const fresh = [sent[2], sent[3]].map((m) => m?.properties?.correlationData?.toString());
    expect(fresh[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(fresh[1]).toMatch(/^[0-9a-f-]{36}$/);
    expect(fresh[0]).not.toBe(fresh[1]);
    expect(commands.pendingFor('d1').map((c) => c.id)).toEqual(['m-1', 'm-2', fresh[0], fresh[1]]);
  });

  it('pending commands go to a subscriber whose filter covers them (one command named too), for the device the identity or the filter names', async () => {
    const { engine: e, sent } = engine({ outbox: true });
    e.start({ publish: async (m) => void sent.push(m) });
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {});
    e.downstream({ kind: 'command', device: 'd2', name: 'reboot' }, Buffer.from('y'), {});
    sent.length = 0;
    const user: Identity = { kind: 'user', username: 'ops', publish: ['#'], subscribe: ['#'] };
    // Filters that do not cover commands, or name no single device: nothing.
    e.onSubscribed(device, ['devices/d1/twin/desired', 'devices/d1/commands/update']);
    e.onSubscribed(user, ['devices/+/commands/+', 'devices/#', '#']);
    // The filter's device for a user, the identity's for a device.
    e.onSubscribed(user, ['devices/d2/commands/#']);
    await until(() => sent.length >= 1, 10_000, 'the command of d2');
    e.onSubscribed(device, ['devices/d1/commands/reboot']);
    await until(() => sent.length >= 2, 10_000, 'the command of d1');
    // One more turn: anything wrongly scheduled by the subscriptions above would have arrived.
    await new Promise((r) => setImmediate(r));
    expect(sent.map((m) => [m.topic, m.payload.toString()])).toEqual([
      ['devices/d2/commands/reboot', 'y'],
      ['devices/d1/commands/reboot', 'x'],
    ]);
  });

  it('a command result goes upstream with the correlation of the command it answers; the command is then done', async () => {
    const { engine: e, ingest, queued, commands, sent } = engine({ outbox: true });
    e.start({ publish: async (m) => void sent.push(m) });
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {
      userProperties: { 'lb-msg-id': 'm-1' },
      correlationData: Buffer.from('corr-1'),
    });
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {
      userProperties: { 'lb-msg-id': 'm-2' },
      correlationData: Buffer.from('corr-2'),
    });
    // The device answers the second with its correlation data, the first without any.
    await ingest(
      publish('devices/d1/commands/reboot/result', '{"ok":true}', {
        properties: { correlationData: Buffer.from('corr-2') },
      } as Partial<PublishPacket>),
    );
    await ingest(publish('devices/d1/commands/reboot/result', '{"ok":1}'));
    // A result nobody waits for goes up as it came.
    await ingest(publish('devices/d1/commands/other/result', '{}'));
    expect(queued().map((m) => [m.topic, m.props?.correlationData?.toString()])).toEqual([
      ['devices/d1/commands/reboot/result', 'corr-2'],
      ['devices/d1/commands/reboot/result', 'corr-1'],
      ['devices/d1/commands/other/result', undefined],
    ]);
    expect(commands.pendingFor('d1')).toEqual([]);
    expect(e.received.commandResult).toBe(3);
  });

  it('a command nobody answers in time goes upstream as a COMMAND_EXPIRED result; its message expiry overrides the default', async () => {
    const { engine: e, queued, commands, lines, sent } = engine({ outbox: true, commandTtlMs: 300 });
    e.start({ publish: async (m) => void sent.push(m) });
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {
      correlationData: Buffer.from('late'),
    });
    e.downstream({ kind: 'command', device: 'd1', name: 'update' }, Buffer.from('y'), {
      messageExpiryInterval: 3600,
    });
    await until(() => queued().length === 1, 10_000, 'the expiry result');
    const [result] = queued();
    expect(result?.topic).toBe('devices/d1/commands/reboot/result');
    expect(result?.props?.correlationData).toEqual(Buffer.from('late'));
    expect(JSON.parse(result?.payload.toString() ?? '')).toEqual({
      status: 'error',
      error: { code: 'COMMAND_EXPIRED', message: 'the device did not answer in time' },
    });
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: 'command expired before its device answered',
        device: 'd1',
        command: 'reboot',
      }),
    );
    expect(commands.pendingFor('d1').map((c) => c.name)).toEqual(['update']);
  });

  it('an expired command without an upstream is dropped quietly; a failed edge publish is logged', async () => {
    const { engine: e, commands, lines } = engine({ commandTtlMs: 300 });
    e.start({ publish: () => Promise.reject(new Error('broker closed')) });
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {});
    await until(() => lines.some((l) => l.msg === 'edge publish failed'), 5_000, 'the failed publish logged');
    expect(lines.find((l) => l.msg === 'edge publish failed')).toMatchObject({
      topic: 'devices/d1/commands/reboot',
      err: 'broker closed',
    });
    await until(
      () => lines.some((l) => l.msg === 'command expired before its device answered'),
      10_000,
      'the expiry',
    );
    expect(commands.takeExpired(Date.now() + 1e9)).toEqual([]);
    expect(lines.some((l) => l.msg === 'expiry result not queued')).toBe(false);
  });

  it('an expiry result the outbox refuses (closed) is logged with the reason', async () => {
    const { engine: e, outbox, lines } = engine({ outbox: true, commandTtlMs: 300 });
    e.start({ publish: async () => {} });
    outbox?.close();
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {});
    await until(() => lines.some((l) => l.msg === 'expiry result not queued'), 10_000, 'the refusal logged');
    expect(lines.find((l) => l.msg === 'expiry result not queued')).toMatchObject({ err: 'outbox closed' });
  });

  it('an expired command is reported within a quarter of its TTL after it expires, never before; stop() ends the sweep', async () => {
    // Only the sweep's interval and the clock are faked; the outbox still commits on real turns.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'], now: 1_000_000 });
    try {
      const { engine: e, commands, lines } = engine({ outbox: true, commandTtlMs: 10_000 });
      const expired = () => lines.filter((l) => l.msg === 'command expired before its device answered');
      e.start({ publish: async () => {} });
      vi.advanceTimersByTime(1_000);
      e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, Buffer.from('x'), {});
      vi.advanceTimersByTime(9_999); // 1 ms before it expires
      expect(expired()).toEqual([]);
      vi.advanceTimersByTime(2_500); // a quarter of the TTL after it expired
      expect(expired().map((l) => l.command)).toEqual(['reboot']);
      // After stop() a command that expires stays stored: nothing sweeps it.
      e.stop();
      e.downstream({ kind: 'command', device: 'd1', name: 'update' }, Buffer.from('y'), {});
      vi.advanceTimersByTime(60_000);
      expect(expired()).toHaveLength(1);
      expect(commands.pendingFor('d1', 0).map((c) => c.name)).toEqual(['update']);
    } finally {
      vi.useRealTimers();
    }
  });
});
