import { afterEach, describe, expect, it } from 'vitest';
import { SqlitePersistence } from '../../../src/broker/persistence.js';
import { openDb } from '../../../src/database/db.js';
import { tempDir } from '../../helpers/processes.js';

// A packet in flight when a persistent client's earlier connection ended keeps its message id; aedes numbers
// the new connection's packets from a random start, so a new packet can draw that id.
describe('edge persistence: message ids unique per client queue', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  async function persistence() {
    const dir = tempDir('lb-msgids-');
    const db = openDb(dir.path, { synchronous: 'normal' });
    cleanups.push(
      () => dir.remove(),
      () => db.close(),
    );
    const p = new SqlitePersistence(db);
    await p.setup({ id: 'broker-2', counter: 0 });
    return p;
  }
  const client = { id: 'pod-view' };
  const sub = { clientId: 'pod-view', topic: 'devices/#', qos: 1 };
  const publish = (brokerId: string, brokerCounter: number, n: number) => ({
    cmd: 'publish',
    topic: 'devices/d/telemetry/t',
    payload: Buffer.from(String(n)),
    qos: 1,
    retain: false,
    brokerId,
    brokerCounter,
  });
  const queued = async (p: SqlitePersistence) => {
    const out: { payload: Buffer; messageId?: number }[] = [];
    for await (const packet of p.outgoingStream(client)) out.push(packet);
    return out.map((q) => [q.payload.toString(), q.messageId]);
  };

  it('renumbers a new packet that draws an id still in flight, and each PUBACK clears its own packet', async () => {
    const p = await persistence();
    await p.outgoingEnqueueCombi([sub], publish('broker-1', 7, 1));
    await p.outgoingUpdate(client, { ...publish('broker-1', 7, 1), messageId: 42 }); // in flight, then the link broke
    await p.outgoingEnqueueCombi([sub], publish('broker-2', 1, 2));
    const fresh = { ...publish('broker-2', 1, 2), messageId: 42 }; // the new connection's counter hit 42
    await p.outgoingUpdate(client, fresh);

    expect(fresh.messageId).toBe(43); // the id aedes then writes
    expect(await queued(p)).toEqual([
      ['1', 42],
      ['2', 43],
    ]);
    expect((await p.outgoingClearMessageId(client, { messageId: 43 } as never))?.payload.toString()).toBe(
      '2',
    );
    expect(await queued(p)).toEqual([['1', 42]]);
  });

  it('a second copy of a new publication takes its id, not a packet of the dead broker with the same counter', async () => {
    // Broker counters start again at each start: the dead broker's undelivered packet and the new broker's
    // publication can share a counter, and only the broker id tells them apart.
    const p = await persistence();
    await p.outgoingEnqueueCombi([sub], publish('broker-1', 1, 1));
    await p.outgoingEnqueueCombi([sub, sub], publish('broker-2', 1, 2));
    await p.outgoingUpdate(client, { ...publish('broker-2', 1, 2), messageId: 5 });
    expect((await p.outgoingClearMessageId(client, { messageId: 5 } as never))?.payload.toString()).toBe('2');
    await p.outgoingUpdate(client, { ...publish('broker-2', 1, 2), messageId: 6 });
    expect(await queued(p)).toEqual([
      ['1', undefined],
      ['2', 6],
    ]);
  });

  it('clears an undelivered duplicate by its publication, not the first packet without an id', async () => {
    const p = await persistence();
    await p.outgoingEnqueueCombi([sub], publish('broker-2', 1, 1));
    await p.outgoingEnqueueCombi([sub], publish('broker-2', 2, 2));
    await p.outgoingClearMessageId(client, publish('broker-2', 2, 2) as never);
    expect(await queued(p)).toEqual([['1', undefined]]);
  });
});
