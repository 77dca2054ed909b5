import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import type { UpstreamConfig } from '../config/load.js';
import type { Outbox, OutboxEntry } from '../database/outbox.js';
import { type EdgeTopic, fromUpstream, MESSAGE_ID_PROPERTY, upstreamRoot } from '../model/topics.js';
import { backoffDelay } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { DownstreamProps } from './engine.js';
import { PubackFilter, tapPushes } from './pubackTap.js';
import { encodeQos1Publishes, type PublishBatchOptions } from './publishPacket.js';

export interface BridgeOptions {
  config: UpstreamConfig;
  node: string;
  outbox: Outbox;
  logger: Logger;
  onDownstream: (topic: EdgeTopic, payload: Buffer, props: DownstreamProps) => void;
}

const noTrace = (): void => {};
/** At most this many of our PUBLISHes in flight: packet ids are left for mqtt.js's own packets. */
const MAX_INFLIGHT = 65_000;

/**
 * PUBACK reason codes that mean "not now": the message is kept, and the link is restarted (with backoff) so that
 * it goes again in order with those after it. Any other error code drops the message and counts it.
 */
const RETRY_LATER = new Set([
  0x97 /* quota exceeded */, 0x80 /* unspecified */, 0x83 /* implementation specific */,
]);
/** How long `stop()` waits for the upstream to acknowledge `offline` before it drops the link. */
const STOP_GRACE_MS = 1000;

/**
 * The upstream bridge: drains the outbox to the cloud broker in sequence order with a window of QoS 1
 * messages in flight, deletes each only after its PUBACK, and reconnects with exponential backoff and
 * jitter. Downstream it subscribes to this node's desired twins and commands.
 */
export class UpstreamBridge {
  private client?: MqttClient;
  private generation = 0;
  /** Our PUBLISHes awaiting their PUBACK, by packet id. */
  private readonly inflight = new Map<number, OutboxEntry>();
  private attempt = 0;
  private reconnectTimer?: NodeJS.Timeout;
  private stopped = true;
  private unsubscribeOutbox?: () => void;
  private readonly root: string;
  private readonly statusTopic: string;
  private readonly encoding: PublishBatchOptions;
  private readonly logger: Logger;
  /** Messages acknowledged upstream; duplicates (resends after a lost PUBACK) count again. */
  forwarded = 0;
  /** Messages the upstream refused for good (PUBACK reason code), dropped and counted. */
  rejected = 0;
  connects = 0;

  constructor(private readonly o: BridgeOptions) {
    this.root = upstreamRoot(o.config.prefix, o.node);
    this.statusTopic = `${this.root}agent/status`;
    this.encoding = {
      protocolVersion: o.config.protocolVersion,
      prefix: this.root,
      msgIdProperty: MESSAGE_ID_PROPERTY,
    };
    this.logger = o.logger;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  start(): void {
    this.stopped = false;
    this.unsubscribeOutbox = this.o.outbox.onAppended(() => this.pump());
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribeOutbox?.();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    this.generation++;
    if (!client) return;
    // What is in flight stays in the outbox for next time.
    if (client.connected) await this.sayOffline(client);
    await closeLink(client);
  }

  /**
   * Publishes `offline` on the agent's status topic (retained, QoS 1), then DISCONNECT once the upstream has
   * acknowledged it (mqtt.js's graceful end waits for its own PUBACKs). A DISCONNECT makes the broker discard the
   * will, so without this the retained status would stay `online`. Bounded: after STOP_GRACE_MS the caller drops
   * the link instead, and then the broker publishes the will, `offline` too.
   */
  private sayOffline(client: MqttClient): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => resolve(), STOP_GRACE_MS);
      client.publish(this.statusTopic, 'offline', { qos: 1, retain: true });
      client.end(false, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private connect(): void {
    const c = this.o.config;
    const generation = ++this.generation;
    const options: IClientOptions = {
      clientId: c.clientId,
      protocolVersion: c.protocolVersion,
      clean: false,
      keepalive: c.keepaliveSeconds,
      // A PINGREQ every keepalive whatever the traffic (the link is declared dead half a keepalive after one goes
      // unanswered), instead of mqtt.js moving its timer on every PUBACK received: a clearTimeout and a setTimeout
      // per forwarded message.
      reschedulePings: false,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      resubscribe: false,
      queueQoSZero: false,
      // mqtt.js traces every packet through `debug` unless given a logger: ~4% of the agent's CPU under load.
      log: noTrace,
      will: { topic: this.statusTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
      ...(c.protocolVersion === 5 ? { properties: { sessionExpiryInterval: c.sessionExpirySeconds } } : {}),
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(c.password !== undefined ? { password: c.password } : {}),
      ...(c.tls
        ? {
            rejectUnauthorized: c.tls.rejectUnauthorized,
            ...(c.tls.ca ? { ca: c.tls.ca } : {}),
            ...(c.tls.cert ? { cert: c.tls.cert } : {}),
            ...(c.tls.key ? { key: c.tls.key } : {}),
          }
        : {}),
    };
    const client = mqtt.connect(c.url, options);
    this.client = client;
    // Our PUBACKs are taken from the socket's reads before mqtt.js parses them; it gets every other packet.
    tapPushes(
      client.stream,
      new PubackFilter(c.protocolVersion === 5, (id, code) => this.onPuback(id, code, generation)),
    );
    client.on('connect', () => {
      if (generation !== this.generation) return;
      this.attempt = 0;
      this.connects++;
      this.inflight.clear();
      this.o.outbox.rewind();
      this.logger.info({ url: c.url, connects: this.connects }, 'upstream connected');
      client.publish(this.statusTopic, 'online', { qos: 1, retain: true });
      client.subscribe(
        [`${this.root}devices/+/twin/desired`, `${this.root}devices/+/commands/+`],
        { qos: 1 },
        (err) => err && this.logger.warn({ err: err.message }, 'upstream subscribe failed'),
      );
      this.pump();
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('packetreceive', (packet) => this.onPacket(packet, generation));
    client.on('error', (err) => this.logger.warn({ err: err.message }, 'upstream error'));
    client.on('close', () => this.onClose(client, generation));
  }

  private onClose(client: MqttClient, generation: number): void {
    if (generation !== this.generation) return;
    this.generation++; // from here on, callbacks of this connection's publishes are void
    client.removeAllListeners('connect');
    client.end(true);
    this.inflight.clear();
    if (this.stopped) return;
    const delay = backoffDelay(
      this.attempt++,
      this.o.config.reconnect.minDelayMs,
      this.o.config.reconnect.maxDelayMs,
    );
    this.logger.warn(
      { retryInMs: delay, attempt: this.attempt, backlog: this.o.outbox.messages },
      'upstream down',
    );
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private pumpScheduled = false;
  /** Refill once per event-loop turn: every PUBACK of the turn frees its slot, then one batch goes out. */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * Fill the in-flight window from the outbox: each batch taken is encoded into one buffer and written at once
   * (QoS 1 PUBLISHes of our own; mqtt.js keeps the connection, the session and the downstream side).
   */
  private pump(): void {
    const client = this.client;
    if (!client?.connected || !client.stream.writable) return;
    const window = Math.min(this.o.config.inflight, MAX_INFLIGHT);
    while (this.inflight.size < window) {
      const batch = this.o.outbox.take(Math.min(512, window - this.inflight.size));
      if (batch.length === 0) return;
      this.send(client, batch);
    }
  }

  private send(client: MqttClient, batch: OutboxEntry[]): void {
    const ids: number[] = [];
    for (const entry of batch) {
      const packetId = this.nextPacketId(client);
      this.inflight.set(packetId, entry);
      ids.push(packetId);
    }
    let bytes: Buffer;
    try {
      bytes = encodeQos1Publishes(batch, ids, this.encoding);
    } catch {
      bytes = this.encodeEach(batch, ids);
    }
    client.stream.write(bytes);
  }

  /** A batch with a packet MQTT cannot carry: the others go, that one is dropped and counted. */
  private encodeEach(batch: OutboxEntry[], ids: number[]): Buffer {
    const parts: Buffer[] = [];
    batch.forEach((entry, i) => {
      const packetId = ids[i] as number;
      try {
        parts.push(encodeQos1Publishes([entry], [packetId], this.encoding));
      } catch (err) {
        this.inflight.delete(packetId);
        this.rejected++;
        this.logger.warn(
          { topic: entry.topic, msgId: entry.msgId, err: errorMessage(err) },
          'message cannot be sent upstream; dropped',
        );
        this.o.outbox.ack(entry.seq);
      }
    });
    return Buffer.concat(parts);
  }

  /**
   * mqtt.js numbers its own packets (the status PUBLISH, SUBSCRIBE) from the same sequence; an id still in flight is
   * skipped. The window stays below the 65,535 ids, so one is always free.
   */
  private nextPacketId(client: MqttClient): number {
    for (;;) {
      const id = client.messageIdProvider.allocate() as number;
      if (!this.inflight.has(id) && !client.outgoing[id]) return id;
    }
  }

  /** A PUBACK that reached mqtt.js (one with properties, say): ours are handled as the tap's (mqtt.js ignores them). */
  private onPacket(packet: Packet, generation: number): void {
    if (packet.cmd === 'puback') this.onPuback(packet.messageId ?? -1, packet.reasonCode ?? 0, generation);
  }

  /** A PUBACK from the upstream: true when it was for one of our PUBLISHes in flight on this connection. */
  private onPuback(id: number, code: number, generation: number): boolean {
    if (generation !== this.generation) return false;
    const entry = this.inflight.get(id);
    if (!entry) return false;
    this.inflight.delete(id);
    if (code < 0x80) {
      this.forwarded++;
      this.o.outbox.ack(entry.seq);
    } else if (RETRY_LATER.has(code)) {
      // Not taken now: keep it, and restart the link so that the outbox is replayed from the oldest unacknowledged
      // message, preserving order.
      this.logger.warn(
        { topic: entry.topic, msgId: entry.msgId, reasonCode: code },
        'upstream did not take a message',
      );
      this.client?.end(true);
      return true;
    } else {
      this.rejected++;
      this.logger.warn(
        { topic: entry.topic, msgId: entry.msgId, reasonCode: code },
        'upstream refused a message',
      );
      this.o.outbox.ack(entry.seq);
    }
    this.schedulePump();
    return true;
  }

  private onMessage(topic: string, payload: Buffer, packet: Packet): void {
    const parsed = fromUpstream(this.root, topic);
    if (!parsed || (parsed.kind !== 'desired' && parsed.kind !== 'command')) return;
    const p = (packet as { properties?: DownstreamProps }).properties ?? {};
    try {
      this.o.onDownstream(parsed, payload, p);
    } catch (err) {
      this.logger.warn({ topic, err: errorMessage(err) }, 'downstream message refused');
    }
  }
}

/** Closes the client's socket, if it is not closed yet, and waits for it to close. */
function closeLink(client: MqttClient): Promise<void> {
  const stream = client.stream;
  if (stream.closed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    stream.once('close', () => resolve());
    stream.destroy();
  });
}
