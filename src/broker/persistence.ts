import MemoryPersistence from 'aedes-persistence/asyncPersistence.js';
import type { Db } from '../store/db.js';

// The aedes packet and client shapes this store touches. aedes types these loosely; we keep ours narrow.
interface StoredPacket {
  topic: string;
  payload: Buffer;
  brokerId?: string;
  brokerCounter?: number;
  messageId?: number;
  [key: string]: unknown;
}
interface ClientLike {
  id: string;
}
interface SubscriptionLike {
  topic: string;
  qos: number;
  [key: string]: unknown;
}

/**
 * Durable aedes persistence: aedes' in-memory persistence does the matching, and every change is written
 * through to SQLite, from which the state is loaded at start. Retained messages, persistent sessions'
 * subscriptions, their queued QoS 1/2 messages, in-flight QoS 2 packets and wills survive a restart.
 */
export class SqlitePersistence extends MemoryPersistence {
  private readonly q;

  constructor(private readonly db: Db) {
    super();
    this.q = {
      putRetained: db.prepare(
        'INSERT OR REPLACE INTO broker_retained (topic, packet, payload) VALUES (?, ?, ?)',
      ),
      delRetained: db.prepare('DELETE FROM broker_retained WHERE topic = ?'),
      putSub: db.prepare(
        'INSERT OR REPLACE INTO broker_subscriptions (client_id, topic, sub) VALUES (?, ?, ?)',
      ),
      delSub: db.prepare('DELETE FROM broker_subscriptions WHERE client_id = ? AND topic = ?'),
      delSubs: db.prepare('DELETE FROM broker_subscriptions WHERE client_id = ?'),
      putOut: db.prepare(
        `INSERT INTO broker_outgoing (client_id, broker_id, broker_counter, message_id, packet, payload)
         VALUES (?, ?, ?, ?, ?, ?)`,
      ),
      updOutByCounter: db.prepare(
        'UPDATE broker_outgoing SET message_id = ? WHERE client_id = ? AND broker_id = ? AND broker_counter = ?',
      ),
      updOutByMessageId: db.prepare(
        `UPDATE broker_outgoing SET broker_id = ?, broker_counter = ?, packet = ?, payload = ?
         WHERE id = (SELECT id FROM broker_outgoing WHERE client_id = ? AND message_id = ? ORDER BY id LIMIT 1)`,
      ),
      delOut: db.prepare(
        `DELETE FROM broker_outgoing
         WHERE id = (SELECT id FROM broker_outgoing WHERE client_id = ? AND message_id = ? ORDER BY id LIMIT 1)`,
      ),
      delOutClient: db.prepare('DELETE FROM broker_outgoing WHERE client_id = ?'),
      putIn: db.prepare(
        'INSERT OR REPLACE INTO broker_incoming (client_id, message_id, packet, payload) VALUES (?, ?, ?, ?)',
      ),
      delIn: db.prepare('DELETE FROM broker_incoming WHERE client_id = ? AND message_id = ?'),
      delInClient: db.prepare('DELETE FROM broker_incoming WHERE client_id = ?'),
      putWill: db.prepare(
        'INSERT OR REPLACE INTO broker_wills (client_id, packet, payload) VALUES (?, ?, ?)',
      ),
      delWill: db.prepare('DELETE FROM broker_wills WHERE client_id = ?'),
    };
  }

  override async setup(broker: unknown): Promise<void> {
    await super.setup(broker);
    await this.load();
  }

  private async load(): Promise<void> {
    const rows = <T>(sql: string) => this.db.prepare(sql).all() as T[];
    type PacketRow = { packet: string; payload: Buffer };
    for (const r of rows<PacketRow>('SELECT packet, payload FROM broker_retained')) {
      await super.storeRetained(decode(r) as never);
    }
    const subs = new Map<string, SubscriptionLike[]>();
    for (const r of rows<{ client_id: string; sub: string }>(
      'SELECT client_id, sub FROM broker_subscriptions',
    )) {
      const list = subs.get(r.client_id) ?? [];
      list.push(JSON.parse(r.sub) as SubscriptionLike);
      subs.set(r.client_id, list);
    }
    for (const [id, list] of subs) await super.addSubscriptions({ id } as never, list as never);
    type OutRow = PacketRow & { client_id: string };
    for (const r of rows<OutRow>('SELECT client_id, packet, payload FROM broker_outgoing ORDER BY id')) {
      await super.outgoingEnqueueCombi([{ clientId: r.client_id }] as never, decode(r) as never);
    }
    type InRow = OutRow & { message_id: number };
    for (const r of rows<InRow>('SELECT client_id, message_id, packet, payload FROM broker_incoming')) {
      const packet = decode(r);
      packet.messageId = r.message_id;
      await super.incomingStorePacket({ id: r.client_id } as never, packet as never);
    }
    for (const r of rows<OutRow>('SELECT client_id, packet, payload FROM broker_wills')) {
      const will = decode(r);
      await super.putWill({ id: r.client_id } as never, will as never);
      // putWill stamps the current broker id; restore the dead broker's so aedes publishes the orphaned will.
      will.brokerId = JSON.parse(r.packet).brokerId as string;
    }
  }

  override async storeRetained(packet: StoredPacket): Promise<void> {
    if (packet.payload.length === 0) this.q.delRetained.run(packet.topic);
    else this.q.putRetained.run(packet.topic, encode(packet), packet.payload);
    await super.storeRetained(packet as never);
  }

  override async addSubscriptions(client: ClientLike, subs: SubscriptionLike[]): Promise<void> {
    this.db.transaction(() => {
      for (const s of subs) this.q.putSub.run(client.id, s.topic, JSON.stringify(s));
    })();
    await super.addSubscriptions(client as never, subs as never);
  }

  override async removeSubscriptions(client: ClientLike, topics: string[]): Promise<void> {
    this.db.transaction(() => {
      for (const t of topics) this.q.delSub.run(client.id, t);
    })();
    await super.removeSubscriptions(client as never, topics as never);
  }

  override async cleanSubscriptions(client: ClientLike): Promise<void> {
    this.db.transaction(() => {
      this.q.delSubs.run(client.id);
      this.q.delOutClient.run(client.id);
    })();
    await super.cleanSubscriptions(client as never);
  }

  override async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    if (subs.length === 0) return;
    const json = encode(packet);
    this.db.transaction(() => {
      for (const s of subs) {
        this.q.putOut.run(
          s.clientId,
          packet.brokerId ?? null,
          packet.brokerCounter ?? null,
          null,
          json,
          packet.payload,
        );
      }
    })();
    await super.outgoingEnqueueCombi(subs as never, packet as never);
  }

  override async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet);
  }

  override async outgoingUpdate(client: ClientLike, packet: StoredPacket): Promise<void> {
    const updated = this.q.updOutByCounter.run(
      packet.messageId ?? null,
      client.id,
      packet.brokerId ?? null,
      packet.brokerCounter ?? null,
    );
    if (updated.changes === 0) {
      this.q.updOutByMessageId.run(
        packet.brokerId ?? null,
        packet.brokerCounter ?? null,
        encode(packet),
        packet.payload,
        client.id,
        packet.messageId ?? null,
      );
    }
    await super.outgoingUpdate(client as never, packet as never);
  }

  override async outgoingClearMessageId(client: ClientLike, packet: StoredPacket): Promise<StoredPacket> {
    this.q.delOut.run(client.id, packet.messageId ?? null);
    return (await super.outgoingClearMessageId(client as never, packet as never)) as unknown as StoredPacket;
  }

  override async incomingStorePacket(client: ClientLike, packet: StoredPacket): Promise<void> {
    this.q.putIn.run(client.id, packet.messageId ?? 0, encode(packet), packet.payload);
    await super.incomingStorePacket(client as never, packet as never);
  }

  override async incomingDelPacket(client: ClientLike, packet: StoredPacket): Promise<void> {
    this.q.delIn.run(client.id, packet.messageId ?? 0);
    await super.incomingDelPacket(client as never, packet as never);
  }

  override async cleanIncoming(client: ClientLike): Promise<void> {
    this.q.delInClient.run(client.id);
    await super.cleanIncoming(client as never);
  }

  override async putWill(client: ClientLike, packet: StoredPacket): Promise<void> {
    await super.putWill(client as never, packet as never);
    this.q.putWill.run(client.id, encode(packet), packet.payload);
  }

  override async delWill(client: ClientLike): Promise<StoredPacket | undefined> {
    this.q.delWill.run(client.id);
    return (await super.delWill(client as never)) as unknown as StoredPacket | undefined;
  }
}

/** A packet without its payload as JSON; Buffers inside MQTT 5 properties survive the round trip. */
function encode(packet: StoredPacket): string {
  const { payload: _payload, ...rest } = packet;
  return JSON.stringify(rest);
}

function decode(row: { packet: string; payload: Buffer }): StoredPacket {
  const packet = JSON.parse(row.packet, (_key, value: unknown) =>
    isSerializedBuffer(value) ? Buffer.from(value.data) : value,
  ) as StoredPacket;
  packet.payload = row.payload;
  return packet;
}

function isSerializedBuffer(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as { type?: unknown }).type === 'Buffer' &&
    Array.isArray((v as { data?: unknown }).data)
  );
}
