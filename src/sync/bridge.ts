import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt';
import type { UpstreamConfig } from '../config/load.js';
import { type EdgeTopic, fromUpstream, MESSAGE_ID_PROPERTY, upstreamRoot } from '../model/topics.js';
import type { Outbox, OutboxEntry } from '../store/outbox.js';
import { backoffDelay } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { DownstreamProps } from './engine.js';

export interface BridgeOptions {
  config: UpstreamConfig;
  node: string;
  outbox: Outbox;
  logger: Logger;
  onDownstream: (topic: EdgeTopic, payload: Buffer, props: DownstreamProps) => void;
}

const noTrace = (): void => {};

/**
 * PUBACK reason codes that mean "not now": the message is kept, and the link is restarted (with backoff) so that
 * it goes again in order with those after it. Any other error code drops the message and counts it.
 */
const RETRY_LATER = new Set([
  0x97 /* quota exceeded */, 0x80 /* unspecified */, 0x83 /* implementation specific */,
]);

/**
 * The upstream bridge: drains the outbox to the cloud broker in sequence order with a window of QoS 1
 * messages in flight, deletes each only after its PUBACK, and reconnects with exponential backoff and
 * jitter. Downstream it subscribes to this node's desired twins and commands.
 */
export class UpstreamBridge {
  private client?: MqttClient;
  private generation = 0;
  private inflight = 0;
  private attempt = 0;
  private reconnectTimer?: NodeJS.Timeout;
  private stopped = true;
  private unsubscribeOutbox?: () => void;
  private readonly root: string;
  private readonly logger: Logger;
  /** Messages acknowledged upstream; duplicates (resends after a lost PUBACK) count again. */
  forwarded = 0;
  /** Messages the upstream refused for good (PUBACK reason code), dropped and counted. */
  rejected = 0;
  connects = 0;

  constructor(private readonly o: BridgeOptions) {
    this.root = upstreamRoot(o.config.prefix, o.node);
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
    // Publish our own offline status, then close; what is in flight stays in the outbox for next time.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => resolve(), 1000);
      client.end(false, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    client.end(true);
  }

  private connect(): void {
    const c = this.o.config;
    const generation = ++this.generation;
    const agentStatus = `${this.root}agent/status`;
    const options: IClientOptions = {
      clientId: c.clientId,
      protocolVersion: c.protocolVersion,
      clean: false,
      keepalive: c.keepaliveSeconds,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      resubscribe: false,
      queueQoSZero: false,
      // mqtt.js traces every packet through `debug` unless given a logger: ~4% of the agent's CPU under load.
      log: noTrace,
      will: { topic: agentStatus, payload: Buffer.from('offline'), qos: 1, retain: true },
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
    client.on('connect', () => {
      if (generation !== this.generation) return;
      this.attempt = 0;
      this.connects++;
      this.inflight = 0;
      this.o.outbox.rewind();
      this.logger.info({ url: c.url, connects: this.connects }, 'upstream connected');
      client.publish(agentStatus, 'online', { qos: 1, retain: true });
      client.subscribe(
        [`${this.root}devices/+/twin/desired`, `${this.root}devices/+/commands/+`],
        { qos: 1 },
        (err) => err && this.logger.warn({ err: err.message }, 'upstream subscribe failed'),
      );
      this.pump();
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('error', (err) => this.logger.warn({ err: err.message }, 'upstream error'));
    client.on('close', () => this.onClose(client, generation));
  }

  private onClose(client: MqttClient, generation: number): void {
    if (generation !== this.generation) return;
    this.generation++; // from here on, callbacks of this connection's publishes are void
    client.removeAllListeners('connect');
    client.end(true);
    this.inflight = 0;
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
   * Fill the in-flight window from the outbox. The socket is corked meanwhile, so the batch leaves in one write
   * rather than one (or, with mqtt-packet, several) per PUBLISH.
   */
  private pump(): void {
    const client = this.client;
    if (!client?.connected) return;
    const generation = this.generation;
    const window = this.o.config.inflight;
    const stream = client.stream;
    stream.cork();
    try {
      while (this.inflight < window) {
        const batch = this.o.outbox.take(Math.min(512, window - this.inflight));
        if (batch.length === 0) return;
        for (const entry of batch) this.send(client, generation, entry);
      }
    } finally {
      stream.uncork();
    }
  }

  private send(client: MqttClient, generation: number, entry: OutboxEntry): void {
    this.inflight++;
    client.publish(`${this.root}${entry.topic}`, entry.payload, this.publishOptions(entry), (err) => {
      if (generation !== this.generation) return; // that connection is gone; the entry is resent from the outbox
      this.inflight--;
      const code = (err as { code?: unknown } | undefined)?.code;
      if (err && typeof code === 'number' && !RETRY_LATER.has(code)) {
        this.rejected++;
        this.logger.warn(
          { topic: entry.topic, msgId: entry.msgId, reasonCode: code },
          'upstream refused a message',
        );
        this.o.outbox.ack(entry.seq);
      } else if (err) {
        // Not acknowledged (a "retry later" code, or the link failing): keep it, and restart the link so that the
        // outbox is replayed from the oldest unacknowledged message, preserving order.
        this.logger.warn(
          { topic: entry.topic, msgId: entry.msgId, err: err.message },
          'upstream did not take a message',
        );
        client.end(true);
        return;
      } else {
        this.forwarded++;
        this.o.outbox.ack(entry.seq);
      }
      this.schedulePump();
    });
  }

  private publishOptions(entry: OutboxEntry): IClientPublishOptions {
    if (this.o.config.protocolVersion !== 5) return { qos: 1 };
    const p = entry.props;
    return {
      qos: 1,
      properties: {
        userProperties: { ...(p?.userProperties ?? {}), [MESSAGE_ID_PROPERTY]: entry.msgId },
        ...(p?.correlationData ? { correlationData: p.correlationData } : {}),
        ...(p?.contentType ? { contentType: p.contentType } : {}),
      },
    };
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
