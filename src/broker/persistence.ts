import { Readable } from 'node:stream';
import MemoryPersistence, { Packet } from 'aedes-persistence/asyncPersistence.js';
import type { Db } from '../database/db.js';

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

interface QueuedPacket {
  rowId: number;
  packet: StoredPacket;
}

/** MQTT packet identifiers run from 1 to 65535. */
const MAX_MESSAGE_ID = 65535;

const identity = (p: StoredPacket) => `${p.brokerId}\0${p.brokerCounter}`;
const hasMessageId = (p: StoredPacket) => p.messageId !== undefined && p.messageId !== null;

/**
 * One client's outgoing queue: the queued and in-flight packets in order, each with its row, indexed by the
 * publication they carry (broker id and counter) and counting the message ids in use.
 */
class OutgoingQueue {
  readonly items: QueuedPacket[] = [];
  private readonly byIdentity = new Map<string, QueuedPacket>();
  private readonly idsInUse = new Map<number, number>();

  push(item: QueuedPacket): void {
    this.items.push(item);
    this.index(item);
  }

  /** The queued PUBLISH of this publication (the first, should a client hold two copies). */
  find(packet: StoredPacket): QueuedPacket | undefined {
    const item = this.byIdentity.get(identity(packet));
    if (item) return item;
    return this.items.find(
      (i) => i.packet.brokerId === packet.brokerId && i.packet.brokerCounter === packet.brokerCounter,
    );
  }

  indexOfMessageId(messageId: number): number {
    return this.items.findIndex((i) => i.packet.messageId === messageId);
  }

  setMessageId(item: QueuedPacket, messageId: number | undefined): void {
    this.countId(item.packet, -1);
    item.packet.messageId = messageId;
    this.countId(item.packet, 1);
  }

  replace(item: QueuedPacket, packet: StoredPacket): void {
    const i = this.items.indexOf(item);
    this.unindex(item);
    const replaced = { rowId: item.rowId, packet };
    this.items[i] = replaced;
    this.index(replaced);
  }

  remove(item: QueuedPacket): void {
    this.items.splice(this.items.indexOf(item), 1);
    this.unindex(item);
  }

  /** Whether another queued packet than `item` carries this message id. */
  takenByOther(messageId: number, item: QueuedPacket): boolean {
    const uses = this.idsInUse.get(messageId) ?? 0;
    return uses - (item.packet.messageId === messageId ? 1 : 0) > 0;
  }

  /** The first message id after `from` (wrapping after 65535) that no queued packet carries. */
  freeMessageIdAfter(from: number): number {
    let id = from;
    for (let tries = 0; tries < MAX_MESSAGE_ID; tries++) {
      id = id >= MAX_MESSAGE_ID ? 1 : id + 1;
      if (!this.idsInUse.has(id)) return id;
    }
    throw new Error('no free message id: 65535 packets in flight');
  }

  private index(item: QueuedPacket): void {
    if (item.packet.cmd !== 'pubrel' && !this.byIdentity.has(identity(item.packet)))
      this.byIdentity.set(identity(item.packet), item);
    this.countId(item.packet, 1);
  }

  private unindex(item: QueuedPacket): void {
    const key = identity(item.packet);
    if (this.byIdentity.get(key) === item) this.byIdentity.delete(key);
    this.countId(item.packet, -1);
  }

  private countId(packet: StoredPacket, delta: number): void {
    if (!hasMessageId(packet)) return;
    const id = packet.messageId as number;
    const uses = (this.idsInUse.get(id) ?? 0) + delta;
    if (uses > 0) this.idsInUse.set(id, uses);
    else this.idsInUse.delete(id);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Durable aedes persistence: aedes' in-memory persistence does the matching (retained, subscriptions,
 * wills), and every change is written through to SQLite, from which the state is loaded at start. The
 * outgoing queue and the incoming QoS 2 packets are kept here, each entry tied to its row, so memory and
 * SQLite cannot drift apart. Retained messages, persistent sessions' subscriptions, their queued and
 * in-flight QoS 1/2 messages (PUBREL state included), incoming QoS 2 packets and wills survive a restart.
 * The rules are aedes-persistence's (asyncPersistence.js); its abstract suite runs against this class.
 */
export class SqlitePersistence extends MemoryPersistence {
  private readonly q;
  /** Per client, the queued and in-flight packets in order, each with its row in broker_outgoing. */
  private readonly outgoing = new Map<string, OutgoingQueue>();
  /** Per client, the QoS 2 packets received and not yet released, by message id. */
  private readonly incoming = new Map<string, Map<number, StoredPacket>>();
  /**
   * The clients that may have rows in broker_subscriptions and broker_wills (a superset: an id leaves only with
   * its last row). Every clean-session connect and disconnect asks to delete both; most clients never had any,
   * and a DELETE that finds nothing still costs a statement and a write transaction, per connection.
   */
  private readonly withSubscriptions = new Set<string>();
  private readonly withWill = new Set<string>();

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
      setOutMessageId: db.prepare('UPDATE broker_outgoing SET message_id = ? WHERE id = ?'),
      replaceOut: db.prepare(
        `UPDATE broker_outgoing SET broker_id = ?, broker_counter = ?, message_id = ?, packet = ?, payload = ?
         WHERE id = ?`,
      ),
      delOut: db.prepare('DELETE FROM broker_outgoing WHERE id = ?'),
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

  /** Whether this client may have a session here: subscriptions, a will, queued or half-received packets. */
  holdsSession(clientId: string): boolean {
    return (
      this.withSubscriptions.has(clientId) ||
      this.withWill.has(clientId) ||
      (this.outgoing.get(clientId)?.items.length ?? 0) > 0 ||
      (this.incoming.get(clientId)?.size ?? 0) > 0
    );
  }

  /**
   * Whether any persistent session may have subscriptions (a client counts from before its subscriptions are stored
   * until they are cleaned): false means no PUBLISH can be queued for an offline client.
   */
  hasSubscriptions(): boolean {
    return this.withSubscriptions.size > 0;
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
      this.withSubscriptions.add(r.client_id);
    }
    for (const [id, list] of subs) await super.addSubscriptions({ id } as never, list as never);
    type OutRow = PacketRow & { client_id: string };
    type QueueRow = OutRow & { id: number; message_id: number | null };
    // Packets as they were, message ids included: an in-flight PUBLISH is resent with its id, a PUBREL stays one.
    for (const r of rows<QueueRow>(
      'SELECT id, client_id, message_id, packet, payload FROM broker_outgoing ORDER BY id',
    )) {
      const packet = decode(r);
      if (r.message_id !== null) packet.messageId = r.message_id;
      this.queue(r.client_id).push({ rowId: r.id, packet });
    }
    type InRow = OutRow & { message_id: number };
    for (const r of rows<InRow>('SELECT client_id, message_id, packet, payload FROM broker_incoming')) {
      const packet = decode(r);
      packet.messageId = r.message_id;
      this.incomingOf(r.client_id).set(r.message_id, packet);
    }
    for (const r of rows<OutRow>('SELECT client_id, packet, payload FROM broker_wills')) {
      this.withWill.add(r.client_id);
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
    if (subs.length > 0) this.withSubscriptions.add(client.id);
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
    // Like aedes' in-memory persistence, the outgoing queue stays: aedes clears it message by message.
    if (this.withSubscriptions.delete(client.id)) this.q.delSubs.run(client.id);
    await super.cleanSubscriptions(client as never);
  }

  override async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    if (subs.length === 0) return;
    this.db.transaction(() => {
      for (const s of subs) {
        // A queued copy, as aedes' in-memory persistence makes: same broker id and counter, no message id yet.
        const queued = new Packet(packet) as unknown as StoredPacket;
        const row = this.q.putOut.run(
          s.clientId,
          queued.brokerId ?? null,
          queued.brokerCounter ?? null,
          null,
          encode(queued),
          queued.payload,
        );
        this.queue(s.clientId).push({ rowId: Number(row.lastInsertRowid), packet: queued });
      }
    })();
  }

  override async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet);
  }

  /**
   * A PUBLISH going out to the client gets its message id: the queued packet of the same publication (broker id
   * and counter) takes it. A PUBREL replaces the PUBLISH with its message id.
   *
   * Message ids stay unique among a client's queued packets. aedes numbers a connection's packets from a random
   * start, while packets in flight when an earlier connection ended keep their ids (MQTT-4.4.0-1); a new packet
   * can draw an id already in use. aedes' in-memory rule would then let the new packet replace the old one in the
   * queue, or one PUBACK clear the wrong packet, and a message stayed queued undelivered until the next
   * reconnect. So a packet whose id is taken gets the next free one here; aedes writes the very packet object
   * it hands over, so the id changed here is the one on the wire.
   */
  override async outgoingUpdate(client: ClientLike, packet: StoredPacket): Promise<void> {
    const queue = this.queue(client.id);
    if (packet.cmd === 'pubrel') {
      const item = queue.items[queue.indexOfMessageId(packet.messageId as number)];
      if (!item) throw new Error('no such packet');
      queue.replace(item, packet);
      this.q.replaceOut.run(null, null, packet.messageId ?? null, encode(packet), EMPTY, item.rowId);
      return;
    }
    const item = queue.find(packet);
    if (!item) throw new Error('no such packet');
    if (hasMessageId(packet) && queue.takenByOther(packet.messageId as number, item))
      packet.messageId = queue.freeMessageIdAfter(packet.messageId as number);
    if (item.packet.messageId === packet.messageId) return;
    queue.setMessageId(item, packet.messageId);
    this.q.setOutMessageId.run(packet.messageId ?? null, item.rowId);
  }

  /**
   * The client acknowledged (or aedes dropped) a packet: remove it by its message id, or, for a packet that
   * never got one (aedes clears undelivered duplicates too), by its publication.
   */
  override async outgoingClearMessageId(
    client: ClientLike,
    packet: StoredPacket,
  ): Promise<StoredPacket | undefined> {
    const queue = this.queue(client.id);
    const item = hasMessageId(packet)
      ? queue.items[queue.indexOfMessageId(packet.messageId as number)]
      : packet.brokerId !== undefined
        ? queue.find(packet)
        : undefined;
    if (!item) return undefined;
    queue.remove(item);
    this.q.delOut.run(item.rowId);
    return item.packet;
  }

  override outgoingStream(client: ClientLike): Readable {
    // A snapshot of copies: aedes updates and clears the queue while it streams it, and what a reader does
    // to a streamed packet must not change the queue behind SQLite's back.
    return Readable.from(this.queue(client.id).items.map((item) => ({ ...item.packet })));
  }

  override async incomingStorePacket(client: ClientLike, packet: StoredPacket): Promise<void> {
    const stored = new Packet(packet) as unknown as StoredPacket;
    stored.messageId = packet.messageId;
    this.q.putIn.run(client.id, packet.messageId ?? 0, encode(stored), stored.payload);
    this.incomingOf(client.id).set(packet.messageId ?? 0, stored);
  }

  override async incomingGetPacket(client: ClientLike, packet: StoredPacket): Promise<StoredPacket> {
    const stored = this.incoming.get(client.id)?.get(packet.messageId ?? 0);
    if (!stored) throw new Error('no such packet');
    return stored;
  }

  override async incomingDelPacket(client: ClientLike, packet: StoredPacket): Promise<void> {
    const store = this.incoming.get(client.id);
    if (!store?.delete(packet.messageId ?? 0)) throw new Error('no such packet');
    this.q.delIn.run(client.id, packet.messageId ?? 0);
  }

  override async cleanIncoming(client: ClientLike): Promise<void> {
    // Rows exist only for a client with an entry here: both are written and deleted together.
    if (this.incoming.delete(client.id)) this.q.delInClient.run(client.id);
  }

  private queue(clientId: string): OutgoingQueue {
    let queue = this.outgoing.get(clientId);
    if (!queue) {
      queue = new OutgoingQueue();
      this.outgoing.set(clientId, queue);
    }
    return queue;
  }

  private incomingOf(clientId: string): Map<number, StoredPacket> {
    let store = this.incoming.get(clientId);
    if (!store) {
      store = new Map();
      this.incoming.set(clientId, store);
    }
    return store;
  }

  override async putWill(client: ClientLike, packet: StoredPacket): Promise<void> {
    await super.putWill(client as never, packet as never);
    this.withWill.add(client.id);
    this.q.putWill.run(client.id, encode(packet), packet.payload);
  }

  override async delWill(client: ClientLike): Promise<StoredPacket | undefined> {
    if (this.withWill.delete(client.id)) this.q.delWill.run(client.id);
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
  // A PUBREL has no payload; the column holds an empty one.
  if (packet.cmd === undefined || packet.cmd === 'publish') packet.payload = row.payload;
  return packet;
}

function isSerializedBuffer(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as { type?: unknown }).type === 'Buffer' &&
    Array.isArray((v as { data?: unknown }).data) &&
    // A user property that repeats its key is an array of strings: {type: 'Buffer', data: ['a']} stays as it is.
    (v as { data: unknown[] }).data.every((byte) => typeof byte === 'number')
  );
}
