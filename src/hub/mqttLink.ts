import { hostname } from 'node:os';
import mqtt, {
  type IClientOptions,
  type IConnackPacket,
  type IDisconnectPacket,
  type IPublishPacket,
  type MqttClient,
} from 'mqtt';
import type { Logger } from '../util/logger.js';
import type { HubOptions } from './types.js';

/** SUBACK reason code: "Shared Subscriptions not supported" (MQTT 5). */
const SHARED_NOT_SUPPORTED = 0x9e;
/** DISCONNECT reason code: "Session taken over" (another connection with this client id). */
const SESSION_TAKEN_OVER = 0x8e;
/** How long the broker keeps a replica's session while it is away, by default: 10 minutes. */
export const DEFAULT_SESSION_EXPIRY_S = 600;
/** Messages handled in a row before the hub yields to the event loop (timers, API responses, the watch). */
const YIELD_EVERY = 100;

export interface LinkOptions {
  hub: Pick<
    HubOptions,
    'brokerUrl' | 'username' | 'password' | 'tls' | 'clientId' | 'reconnectMs' | 'sessionExpiryS'
  >;
  logger: Logger;
  /** The topic filters to subscribe to, shared or (when the broker has no shared subscriptions) not. */
  filters: (shared: boolean) => string[];
  onMessage: (topic: string, payload: Buffer, packet: IPublishPacket) => void;
  /** After each connection's subscriptions are in place. */
  onReady: () => void;
}

/** The client id a replica uses unless given one: stable across reconnects and restarts of the same pod. */
export function defaultClientId(): string {
  return `leafbridge-hub-${hostname()}`;
}

/**
 * The hub's one MQTT 5 connection to the cloud broker, reconnecting every `reconnectMs`, subscribing at QoS 1.
 * The session is persistent (clean start false, Session Expiry Interval `sessionExpiryS`) under a client id
 * stable per replica: QoS 1 messages the group hands this replica while it is away wait in its session and
 * arrive when it reconnects within the expiry. When the broker kept the session (CONNACK session present)
 * the subscriptions are in it and are not sent again; when it did not, or on the first connection of this
 * process (the options may have changed since the session was made), they are. `stop()` ends the session
 * (DISCONNECT with expiry 0): a replica stopped on purpose leaves the group, so the broker stops queueing its
 * share for a client that may not return (mosquitto round-robins over offline members too; docs/hub.md).
 * `sessionExpiryS: 0` gives the clean session of before. Shared subscriptions split the messages among the replicas of a group; a broker that
 * has none (aedes: CONNACK `sharedSubscriptionAvailable: false`, or SUBACK 0x9E) gets plain subscriptions
 * and a warning: every replica then handles every message, which the monotonic writes keep correct, at
 * the cost of doing the work once per replica.
 */
export class HubLink {
  private client?: MqttClient;
  private shared = true;
  private handled = 0;
  private corked = false;
  /** Subscribed on some connection of this process: a session the broker kept holds these subscriptions. */
  private subscribedOnce = false;
  connects = 0;
  /** Connections on which the broker still had this replica's session (CONNACK session present). */
  resumed = 0;

  constructor(private readonly o: LinkOptions) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  start(): void {
    const h = this.o.hub;
    const expiry = h.sessionExpiryS ?? DEFAULT_SESSION_EXPIRY_S;
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: h.clientId ?? defaultClientId(),
      clean: expiry === 0,
      ...(expiry > 0 ? { properties: { sessionExpiryInterval: expiry } } : {}),
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
    client.on('disconnect', (packet) => this.onDisconnect(packet, options.clientId as string));
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
    // Session Expiry Interval 0 in the DISCONNECT ends the session: allowed only when CONNECT set one.
    const leave = (this.o.hub.sessionExpiryS ?? DEFAULT_SESSION_EXPIRY_S) > 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      client.end(false, leave ? { properties: { sessionExpiryInterval: 0 } } : {}, () => {
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
    const resumed = connack.sessionPresent && this.subscribedOnce;
    if (connack.sessionPresent) this.resumed++;
    this.o.logger.info(
      { url: this.o.hub.brokerUrl, shared: this.shared, sessionPresent: connack.sessionPresent },
      'cloud broker connected',
    );
    if (resumed) this.o.onReady();
    else this.subscribe(client);
  }

  /** The broker closing the connection says why; a session taken over means two replicas share a client id. */
  private onDisconnect(packet: IDisconnectPacket, clientId: string): void {
    if (packet.reasonCode === SESSION_TAKEN_OVER)
      this.o.logger.error(
        { clientId },
        'another client connected with this client id and took the session: give each replica its own --client-id',
      );
    else this.o.logger.warn({ reasonCode: packet.reasonCode }, 'the cloud broker disconnected the hub');
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
      this.subscribedOnce = true;
      this.o.onReady();
    });
  }
}
