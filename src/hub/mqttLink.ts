import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from '../util/logger.js';
import type { HubOptions } from './types.js';

/** SUBACK reason code: "Shared Subscriptions not supported" (MQTT 5). */
const SHARED_NOT_SUPPORTED = 0x9e;
/** Messages handled in a row before the hub yields to the event loop (timers, API responses, the watch). */
const YIELD_EVERY = 100;

export interface LinkOptions {
  hub: Pick<HubOptions, 'brokerUrl' | 'username' | 'password' | 'tls' | 'clientId' | 'reconnectMs'>;
  logger: Logger;
  /** The topic filters to subscribe to, shared or (when the broker has no shared subscriptions) not. */
  filters: (shared: boolean) => string[];
  onMessage: (topic: string, payload: Buffer, packet: IPublishPacket) => void;
  /** After each connection's subscriptions are in place. */
  onReady: () => void;
}

/**
 * The hub's one MQTT 5 connection to the cloud broker: a clean session (messages sent to the group while no
 * replica is connected are not kept for this one), reconnecting every `reconnectMs`, subscribing at QoS 1
 * on every connection. Shared subscriptions split the messages among the replicas of a group; a broker that
 * has none (aedes: CONNACK `sharedSubscriptionAvailable: false`, or SUBACK 0x9E) gets plain subscriptions
 * and a warning: every replica then handles every message, which the monotonic writes keep correct, at
 * the cost of doing the work once per replica.
 */
export class HubLink {
  private client?: MqttClient;
  private shared = true;
  private handled = 0;
  private corked = false;
  connects = 0;

  constructor(private readonly o: LinkOptions) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  start(): void {
    const h = this.o.hub;
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: h.clientId ?? `leafbridge-hub-${hostname()}-${randomBytes(4).toString('hex')}`,
      clean: true,
      keepalive: 30,
      reconnectPeriod: h.reconnectMs ?? 1000,
      connectTimeout: 10_000,
      resubscribe: false,
      queueQoSZero: false,
      // mqtt.js logs every packet through `debug`; even switched off that costs ~6% of the hub's CPU.
      log: () => {},
      ...(h.username !== undefined ? { username: h.username } : {}),
      ...(h.password !== undefined ? { password: h.password } : {}),
      ...(h.tls ? { ...h.tls } : {}),
    };
    const client = mqtt.connect(h.brokerUrl, options);
    client.handleMessage = (_packet, done) => this.pace(client, done);
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack));
    client.on('message', (topic, payload, packet) => this.o.onMessage(topic, payload, packet));
    client.on('error', (err) => this.o.logger.warn({ err: err.message }, 'cloud broker error'));
    client.on('close', () => {
      if (this.connects > 0 && this.client === client)
        this.o.logger.warn('cloud broker connection closed; reconnecting');
    });
  }

  publish(topic: string, payload: Buffer): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error('not started'));
    return new Promise((resolve, reject) =>
      client.publish(topic, payload, { qos: 1, retain: true }, (err) => (err ? reject(err) : resolve())),
    );
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      client.end(false, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    client.end(true);
  }

  /**
   * Called by mqtt.js after each message's 'message' event, before its PUBACK; the next message waits for
   * `done`. mqtt.js takes every message already read from the socket in one go (with a backlog, libuv reads
   * up to 32 × 64 KiB per loop turn: over a second of work), so status writes, the watch and timers would wait
   * that long. Every YIELD_EVERY messages this yields to the event loop instead, and the PUBACKs of a turn
   * go out together (the socket is corked until the turn ends): one write instead of one per message.
   */
  private pace(client: MqttClient, done: () => void): void {
    const stream = client.stream;
    if (stream && !this.corked) {
      this.corked = true;
      stream.cork();
      setImmediate(() => {
        this.corked = false;
        stream.uncork();
      });
    }
    if (++this.handled % YIELD_EVERY === 0) setImmediate(done);
    else done();
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    this.connects++;
    if (connack.properties?.sharedSubscriptionAvailable === false && this.shared) {
      this.shared = false;
      this.o.logger.warn('the broker has no shared subscriptions: this replica takes every message');
    }
    this.o.logger.info({ url: this.o.hub.brokerUrl, shared: this.shared }, 'cloud broker connected');
    this.subscribe(client);
  }

  private subscribe(client: MqttClient): void {
    const filters = this.o.filters(this.shared);
    client.subscribe(filters, { qos: 1 }, (err, granted) => {
      if (err) {
        this.o.logger.error({ err: err.message }, 'subscribe failed');
        return;
      }
      const refused = (granted ?? []).filter((g) => (g.qos as number) >= 0x80);
      if (this.shared && refused.some((g) => (g.qos as number) === SHARED_NOT_SUPPORTED)) {
        this.shared = false;
        this.o.logger.warn('the broker refused shared subscriptions: this replica takes every message');
        this.subscribe(client);
        return;
      }
      for (const g of refused)
        this.o.logger.error({ topic: g.topic, reasonCode: g.qos }, 'the broker refused a subscription');
      this.o.onReady();
    });
  }
}
