import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { SqlitePersistence } from '../../../src/broker/persistence.js';
import { type Db, openDb } from '../../../src/database/db.js';
import { tempDir } from '../../helpers/processes.js';

// What the edge broker's persistence must hand a restarted broker, beyond what the abstract suite compares:
// incoming QoS 2 packets, PUBRELs, wills of the dead broker, and message ids kept unique across the wrap.
describe('edge persistence across a restart', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  async function open() {
    const dir = tempDir('lb-persist-');
    const db = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(
      () => dir.remove(),
      () => db.close(),
    );
    const p = new SqlitePersistence(db);
    await p.setup({ id: 'broker-1', counter: 0 });
    return { db, p };
  }
  async function restart(db: Db) {
    const p = new SqlitePersistence(db);
    await p.setup({ id: 'broker-2', counter: 0 });
    return p;
  }
  async function read(stream: Readable) {
    const out: Record<string, unknown>[] = [];
    for await (const item of stream) out.push(item as Record<string, unknown>);
    return out;
  }
  const client = { id: 'c1' };
  const sub = { clientId: 'c1', topic: 'devices/#', qos: 2 };
  const publish = (brokerCounter: number, n: number, extra: Record<string, unknown> = {}) => ({
    cmd: 'publish',
    topic: 'devices/d/telemetry/t',
    payload: Buffer.from(String(n)),
    qos: 2,
    retain: false,
    brokerId: 'broker-1',
    brokerCounter,
    ...extra,
  });

  it('keeps incoming QoS 2 packets until released, and only those', async () => {
    const { db, p } = await open();
    await p.incomingStorePacket(client, { ...publish(1, 1), messageId: 5 });
    await p.incomingStorePacket(client, { ...publish(2, 2), messageId: 6 });
    await p.incomingDelPacket(client, { messageId: 6 } as never);
    await expect(p.incomingDelPacket(client, { messageId: 6 } as never)).rejects.toThrow('no such packet');
    await expect(p.incomingDelPacket({ id: 'nobody' }, { messageId: 6 } as never)).rejects.toThrow(
      'no such packet',
    );
    await expect(p.incomingGetPacket({ id: 'nobody' }, { messageId: 6 } as never)).rejects.toThrow(
      'no such packet',
    );
    const again = await restart(db);
    const kept = await again.incomingGetPacket(client, { messageId: 5 } as never);
    expect(kept.payload.toString()).toBe('1');
    expect(kept.messageId).toBe(5);
    expect(kept.topic).toBe('devices/d/telemetry/t');
    await expect(again.incomingGetPacket(client, { messageId: 6 } as never)).rejects.toThrow(
      'no such packet',
    );
    await again.cleanIncoming(client);
    await expect(again.incomingGetPacket(client, { messageId: 5 } as never)).rejects.toThrow();
    const third = await restart(db);
    await expect(third.incomingGetPacket(client, { messageId: 5 } as never)).rejects.toThrow();
  });

  it('a PUBREL replaces its PUBLISH in the queue and stays a PUBREL, without payload, after a restart', async () => {
    const { db, p } = await open();
    await p.outgoingEnqueueCombi([sub], publish(1, 1));
    await p.outgoingEnqueueCombi([sub], publish(2, 2));
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 10 });
    await p.outgoingUpdate(client, { cmd: 'pubrel', messageId: 10 } as never);
    await expect(p.outgoingUpdate(client, { cmd: 'pubrel', messageId: 99 } as never)).rejects.toThrow(
      'no such packet',
    );
    await expect(p.outgoingUpdate(client, publish(9, 9))).rejects.toThrow('no such packet');
    const again = await restart(db);
    const queue = await read(again.outgoingStream(client));
    expect(queue.map((q) => [q.cmd, q.messageId, (q.payload as Buffer | undefined)?.toString()])).toEqual([
      ['pubrel', 10, undefined],
      ['publish', undefined, '2'],
    ]);
    expect((await again.outgoingClearMessageId(client, { messageId: 10 } as never))?.cmd).toBe('pubrel');
    // A cleared packet is gone from SQLite too.
    expect((await read((await restart(db)).outgoingStream(client))).map((q) => q.cmd)).toEqual(['publish']);
  });

  it('an in-flight PUBLISH keeps its message id through a restart; an id update to the same value writes nothing', async () => {
    const { db, p } = await open();
    await p.outgoingEnqueueCombi([sub], publish(1, 1));
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 300 });
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 300 });
    const again = await restart(db);
    expect((await read(again.outgoingStream(client))).map((q) => q.messageId)).toEqual([300]);
    // A streamed copy changed by its reader leaves the queue as it was.
    const [copy] = await read(again.outgoingStream(client));
    if (copy) copy.messageId = 1;
    expect((await read(again.outgoingStream(client))).map((q) => q.messageId)).toEqual([300]);
  });

  it('message ids wrap after 65535 to the first free one', async () => {
    const { p } = await open();
    for (let i = 1; i <= 4; i++) await p.outgoingEnqueueCombi([sub], publish(i, i));
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 65535 });
    await p.outgoingUpdate(client, { ...publish(2, 2), messageId: 1 });
    const third = { ...publish(3, 3), messageId: 65535 };
    await p.outgoingUpdate(client, third);
    expect(third.messageId).toBe(2);
    const fourth = { ...publish(4, 4), messageId: 65534 };
    await p.outgoingUpdate(client, fourth);
    expect(fourth.messageId).toBe(65534);
    expect((await read(p.outgoingStream(client))).map((q) => q.messageId)).toEqual([65535, 1, 2, 65534]);
  });

  it('after a restart, a new packet that draws the id of a loaded in-flight PUBLISH or PUBREL is renumbered', async () => {
    const { db, p } = await open();
    await p.outgoingEnqueueCombi([sub], publish(1, 1));
    await p.outgoingEnqueueCombi([sub], publish(2, 2));
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 42 });
    await p.outgoingUpdate(client, { ...publish(2, 2), messageId: 43 });
    await p.outgoingUpdate(client, { cmd: 'pubrel', messageId: 43 } as never);
    const again = await restart(db);
    // The restarted broker's first publication; its connection's counter draws 42, then 43.
    const fresh = (n: number, messageId: number) => ({ ...publish(n, n), brokerId: 'broker-2', messageId });
    await again.outgoingEnqueueCombi([sub], fresh(1, 42));
    await again.outgoingEnqueueCombi([sub], fresh(2, 43));
    const first = fresh(1, 42);
    await again.outgoingUpdate(client, first);
    const second = fresh(2, 43);
    await again.outgoingUpdate(client, second);
    expect([first.messageId, second.messageId]).toEqual([44, 45]);
    const queue = await read(again.outgoingStream(client));
    expect(queue.map((q) => [q.cmd, q.messageId])).toEqual([
      ['publish', 42],
      ['pubrel', 43],
      ['publish', 44],
      ['publish', 45],
    ]);
    // Each acknowledgement clears its own packet.
    expect((await again.outgoingClearMessageId(client, { messageId: 42 } as never))?.payload.toString()).toBe(
      '1',
    );
    expect((await again.outgoingClearMessageId(client, { messageId: 43 } as never))?.cmd).toBe('pubrel');
    expect((await read(again.outgoingStream(client))).map((q) => q.messageId)).toEqual([44, 45]);
  });

  it("hands the dead broker's will to the restarted one, with the dead broker's id; a deleted will stays deleted", async () => {
    const { db, p } = await open();
    const will = {
      cmd: 'publish',
      topic: 'devices/d/status',
      payload: Buffer.from('offline'),
      qos: 1,
      retain: true,
    };
    await p.putWill(client, { ...will });
    await p.putWill({ id: 'c2' }, { ...will, topic: 'devices/e/status' });
    await p.delWill({ id: 'c2' });
    const again = await restart(db);
    const got = (await again.getWill(client)) as unknown as Record<string, unknown>;
    expect(got.topic).toBe('devices/d/status');
    expect((got.payload as Buffer).toString()).toBe('offline');
    expect(got.brokerId).toBe('broker-1');
    expect(await again.getWill({ id: 'c2' })).toBeUndefined();
  });

  it('an empty retained message deletes the retained one, in SQLite too', async () => {
    const { db, p } = await open();
    const retained = (topic: string, payload: string) => ({
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload),
      qos: 0,
      retain: true,
    });
    await p.storeRetained(retained('devices/a/status', 'online'));
    await p.storeRetained(retained('devices/b/status', 'online'));
    await p.storeRetained(retained('devices/a/status', ''));
    const again = await restart(db);
    expect((await read(again.createRetainedStream('#'))).map((r) => r.topic)).toEqual(['devices/b/status']);
  });

  it('subscriptions removed or cleaned stay so after a restart', async () => {
    const { db, p } = await open();
    await p.addSubscriptions(client, [
      { topic: 'a/#', qos: 1 },
      { topic: 'b/#', qos: 1 },
    ]);
    await p.addSubscriptions({ id: 'c2' }, [{ topic: 'c/#', qos: 1 }]);
    await p.removeSubscriptions(client, ['a/#']);
    await p.cleanSubscriptions({ id: 'c2' });
    const again = await restart(db);
    const subs = (await again.subscriptionsByClient(client)) as { topic: string }[];
    expect(subs.map((s) => s.topic)).toEqual(['b/#']);
    expect(await again.subscriptionsByClient({ id: 'c2' })).toEqual([]);
  });
  it('subscriptions, wills and QoS 2 packets loaded at start are still deleted by the restarted broker', async () => {
    // The deletes are skipped for clients known to have no rows: what was loaded must count as rows.
    const { db, p } = await open();
    await p.addSubscriptions(client, [{ topic: 'a/#', qos: 1 }]);
    await p.putWill(client, { cmd: 'publish', topic: 'w', payload: Buffer.from('x'), qos: 1, retain: false });
    await p.incomingStorePacket(client, { ...publish(1, 1), messageId: 7 });
    const second = await restart(db);
    await second.cleanSubscriptions(client);
    await second.delWill(client);
    await second.cleanIncoming(client);
    const third = await restart(db);
    expect(await third.subscriptionsByClient(client)).toEqual([]);
    expect(await third.getWill(client)).toBeUndefined();
    await expect(third.incomingGetPacket(client, { ...publish(1, 1), messageId: 7 })).rejects.toThrow();
    const rows = (table: string) =>
      (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE client_id = ?`).get('c1') as { n: number }).n;
    expect([rows('broker_subscriptions'), rows('broker_wills'), rows('broker_incoming')]).toEqual([0, 0, 0]);
  });

  it('Buffers inside MQTT 5 properties come back as Buffers after a restart', async () => {
    const { db, p } = await open();
    const properties = { correlationData: Buffer.from([0, 1, 255]), userProperties: { type: 'Buffer' } };
    await p.outgoingEnqueueCombi([sub], publish(1, 1, { properties }));
    const again = await restart(db);
    const [packet] = await read(again.outgoingStream(client));
    expect(packet?.properties).toEqual(properties);
    const got = packet?.properties as { correlationData?: unknown } | undefined;
    expect(Buffer.isBuffer(got?.correlationData)).toBe(true);
  });

  it('a second copy of one publication for one client is found once the first is cleared', async () => {
    const { p } = await open();
    await p.outgoingEnqueueCombi([sub, sub], publish(1, 1));
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 7 });
    expect((await p.outgoingClearMessageId(client, { messageId: 7 } as never))?.payload.toString()).toBe('1');
    const copy = { ...publish(1, 1), messageId: 8 };
    await p.outgoingUpdate(client, copy);
    expect((await read(p.outgoingStream(client))).map((q) => q.messageId)).toEqual([8]);
  });

  it('keeps every incoming QoS 2 packet of a client, by message id, before and after a restart', async () => {
    const { db, p } = await open();
    await p.incomingStorePacket(client, { ...publish(1, 1), messageId: 5 });
    await p.incomingStorePacket(client, { ...publish(2, 2), messageId: 6 });
    await p.incomingStorePacket({ id: 'c2' }, { ...publish(3, 3), messageId: 5 });
    const payloads = async (q: SqlitePersistence) => [
      (await q.incomingGetPacket(client, { messageId: 5 } as never)).payload.toString(),
      (await q.incomingGetPacket(client, { messageId: 6 } as never)).payload.toString(),
      (await q.incomingGetPacket({ id: 'c2' }, { messageId: 5 } as never)).payload.toString(),
    ];
    expect(await payloads(p)).toEqual(['1', '2', '3']);
    expect(await payloads(await restart(db))).toEqual(['1', '2', '3']);
  });

  it("a will as aedes hands it over (the CONNECT's will, no cmd) keeps its payload and properties after a restart", async () => {
    const { db, p } = await open();
    const will = {
      topic: 'devices/d/status',
      payload: Buffer.from('offline'),
      qos: 1,
      retain: true,
      properties: { contentType: 'text/plain' },
    };
    await p.putWill(client, will);
    const got = (await (await restart(db)).getWill(client)) as unknown as Record<string, unknown>;
    expect(Buffer.isBuffer(got.payload)).toBe(true);
    expect((got.payload as Buffer).toString()).toBe('offline');
    expect(got.properties).toEqual({ contentType: 'text/plain' });
  });

  it('MQTT 5 user properties named like a serialized Buffer stay strings after a restart', async () => {
    const { db, p } = await open();
    // A user property that repeats its key is an array: {data: [...]} must not be taken for a Buffer.
    const shapes = [{ data: ['a', 'b'] }, { type: 'Buffer', data: ['1', '2'] }];
    for (const [i, userProperties] of shapes.entries())
      await p.outgoingEnqueueCombi([sub], publish(i + 1, i + 1, { properties: { userProperties } }));
    const queue = await read((await restart(db)).outgoingStream(client));
    expect(queue.map((q) => q.properties)).toEqual(shapes.map((userProperties) => ({ userProperties })));
  });

  it('a second copy of a publication gets its id after the first copy became a PUBREL', async () => {
    const { db, p } = await open();
    await p.outgoingEnqueueCombi([sub, sub], publish(1, 1));
    await p.outgoingUpdate(client, { ...publish(1, 1), messageId: 7 });
    await p.outgoingUpdate(client, { cmd: 'pubrel', messageId: 7 } as never);
    const copy = { ...publish(1, 1), messageId: 8 };
    await p.outgoingUpdate(client, copy);
    const expected = [
      ['pubrel', 7],
      ['publish', 8],
    ];
    expect((await read(p.outgoingStream(client))).map((q) => [q.cmd, q.messageId])).toEqual(expected);
    expect((await read((await restart(db)).outgoingStream(client))).map((q) => [q.cmd, q.messageId])).toEqual(
      expected,
    );
    // A clear that names neither a message id nor a publication clears nothing.
    expect(await p.outgoingClearMessageId(client, { cmd: 'publish' } as never)).toBeUndefined();
    expect(await read(p.outgoingStream(client))).toHaveLength(2);
  });
});
