import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import { generate, writeToStream } from 'mqtt-packet';
import type { Db } from '../database/db.js';
import { type Clock, systemClock } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { RepeatLog } from '../util/repeatLog.js';
import type { Authorizer, Identity } from './auth.js';
import type { CoreConnection } from './core/connection.js';
import { BrokerCore } from './core/core.js';
import { EdgePersistence, shapeDelivery } from './delivery.js';
import { type AckPacket, ReceiveWindow } from './flowControl.js';
import {
  type BrokerAddresses,
  BrokerListeners,
  type ListenerConfig,
  type VerifiedCertificate,
} from './listeners.js';
import { type Emitter, LiveSubscriptions } from './liveSubscriptions.js';
import { TokenBucket } from './rateLimit.js';
import {
  type Ingest,
  ingestRefusal,
  REFUSAL_REASONS,
  type RefusalReason,
  refusalMessage,
} from './refusals.js';

export { type Ingest, REFUSAL_REASONS, type RefusalReason };

// mqtt-packet (aedes' encoder, and mqtt.js's) would otherwise build a table of 65,536 two-byte Buffers for packet
// ids on its first write: 6.3 MB of live heap (a quarter of an idle agent's) that every full GC marks
// again. Without it a packet id costs one small pooled allocation per packet. Set before the first packet is
// written: the table is built lazily, and this switch also keeps it from being built.
writeToStream.cacheNumbers = false;

export interface EdgeBrokerOptions {
  db: Db;
  logger: Logger;
  authorizer: Authorizer;
  ingest: Ingest;
  maxPacketSize: number;
  rateLimit: { messagesPerSecond: number; burst: number };
  /** Refusals are logged once per client and reason, then summed once per this interval (default a minute). */
  refusalLogIntervalMs?: number;
  clock?: Clock;
  /** What the layers above want to hear of: subscriptions and refusals. */
  events?: EdgeBrokerEvents;
  /**
   * The broker core (src/broker/core/) reads every new connection and keeps the publish-only clean sessions;
   * false hands every connection to aedes as it comes (`broker.core`).
   */
  core?: boolean;
  /** QoS 1 PUBLISHes a core client may have unacknowledged (default RECEIVE_MAXIMUM). */
  receiveMaximum?: number;
  /** How often the core's keepalive sweep runs (default a second). */
  keepaliveSweepMs?: number;
}

/**
 * The core's Receive Maximum: QoS 1 PUBLISHes a client may have unacknowledged. It bounds what one connection
 * holds while its PUBLISHes are committed. mqtt.js 5 does not honour a server's Receive Maximum, so it stands
 * above any window a real client keeps (the edge bench's fast shape keeps 100, a flooding test 3,000).
 */
export const RECEIVE_MAXIMUM = 4096;

/** Topic aliases a client may set (MQTT 5); mosquitto's default. */
const TOPIC_ALIAS_MAXIMUM = 10;
/** MQTT 5 reason code: Packet too large. */
const PACKET_TOO_LARGE = 0x95;
/** How long a new connection may take to send CONNECT (aedes' default connectTimeout). */
const CONNECT_TIMEOUT_MS = 30_000;
/** A Receive Maximum of this (the default) allows as many in flight as there are packet identifiers. */
const RECEIVE_MAXIMUM_DEFAULT = 65535;

export interface EdgeBrokerEvents {
  /** A client subscribed (after the ACL): the sync layer delivers pending commands then. */
  onSubscribed?: (identity: Identity, clientId: string, topics: string[]) => void;
}

export interface OutgoingMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  properties?: { correlationData?: Buffer; responseTopic?: string; userProperties?: Record<string, string> };
}

class RefusedError extends Error {
  constructor(
    message: string,
    readonly returnCode?: number,
  ) {
    super(message);
  }
}

/** The node's MQTT broker (aedes, MQTT 3.1.1 and 5) with durable sessions, authentication and topic ACLs. */
export class EdgeBroker {
  /** Refusals since the broker was built, by reason (`leafbridge_broker_refused_total`). */
  readonly refused = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  private aedes?: Aedes;
  private core?: BrokerCore;
  private listeners?: BrokerListeners;
  /** The token bucket a core client brings when it is handed to aedes, by its connection. */
  private readonly carriedBuckets = new WeakMap<object, TokenBucket>();
  /** The verified client certificate of a connection (mqtts, wss), by the connection aedes was handed. */
  private readonly certificates = new WeakMap<object, VerifiedCertificate>();
  private readonly identities = new WeakMap<Client, Identity>();
  private readonly buckets = new WeakMap<Client, TokenBucket>();
  /** QoS 1 PUBLISHes accepted and not yet published, each with the connection its PUBACK waits in. */
  private readonly heldAcks = new WeakMap<PublishPacket, Client['conn']>();
  private readonly logger: Logger;
  private readonly refusalLog: RepeatLog;
  private readonly events: EdgeBrokerEvents;

  constructor(private readonly options: EdgeBrokerOptions) {
    this.logger = options.logger;
    this.events = options.events ?? {};
    this.refusalLog = new RepeatLog({
      logger: options.logger,
      clock: options.clock ?? systemClock,
      intervalMs: options.refusalLogIntervalMs ?? 60_000,
    });
  }

  get connectedClients(): number {
    return (this.aedes?.connectedClients ?? 0) + (this.core?.connected ?? 0);
  }

  async start(listen: ListenerConfig): Promise<BrokerAddresses> {
    const persistence = new EdgePersistence(this.options.db);
    const aedes = await Aedes.createBroker({
      persistence,
      maximumPacketSize: this.options.maxPacketSize,
      authorizeForward: shapeDelivery,
      published: (packet, _client, done) => {
        this.releaseAck(packet);
        done(null);
      },
      topicAliasMaximum: TOPIC_ALIAS_MAXIMUM,
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => this.authorizeSubscribe(client, sub, done),
    });
    this.aedes = aedes;
    aedes.on('subscribe', (subs: Subscription[], client: Client) => {
      const identity = this.identities.get(client);
      if (identity)
        this.events.onSubscribed?.(
          identity,
          client.id,
          subs.map((s) => s.topic),
        );
    });
    aedes.on('clientError', (client: Client, err: Error) => {
      this.logger.debug({ clientId: client?.id, err: err.message }, 'client error');
    });
    aedes.on('connectionError', (client: Client, err: Error) => {
      // Logged like refusals: a client reconnecting in a loop would otherwise write a line per attempt.
      this.refusalLog.warn(
        `${client?.id}\0connection`,
        { clientId: client?.id },
        { clientId: client?.id, err: err.message },
        'connection refused or broken',
      );
    });
    const listeners = new BrokerListeners({
      config: listen,
      logger: this.logger,
      maxPacketSize: this.options.maxPacketSize,
      accept: (conn, req, certificate) => {
        if (certificate) this.certificates.set(conn, certificate);
        if (this.core) this.core.accept(conn, req, certificate);
        else refuseOversizedWithReason(aedes.handle(conn as Client['conn'], req));
      },
      onCertificateRefused: (details) =>
        this.refuse(
          'connect',
          undefined,
          { ...details, cause: 'bad-certificate' },
          'TLS client certificate refused',
        ),
    });
    this.listeners = listeners;
    if (this.options.core) this.core = this.startCore(aedes, persistence);
    return listeners.start();
  }

  private startCore(aedes: Aedes, persistence: EdgePersistence): BrokerCore {
    const { options } = this;
    const sweepMs = options.keepaliveSweepMs ?? 1000;
    const live = new LiveSubscriptions((aedes as Aedes & { mq: Emitter }).mq);
    const core = new BrokerCore({
      authorizer: options.authorizer,
      ingest: options.ingest,
      refuse: (reason, clientId, details, msg) => this.refuse(reason, clientId, details, msg),
      logger: this.logger,
      aedes: {
        owns: (clientId) =>
          clientId in (aedes as Aedes & { clients: object }).clients || persistence.holdsSession(clientId),
        take: (conn) => this.handToAedes(aedes, conn),
        publish: (packet, done) => {
          // Nobody to route to: no retained message to store, no live subscription, no persistent session with
          // subscriptions. `$` topics always go through aedes (its own `$SYS` subscriptions are not counted).
          if (
            !packet.retain &&
            !packet.topic.startsWith('$') &&
            !live.any &&
            !persistence.hasSubscriptions()
          ) {
            done();
            return;
          }
          aedes.publish(packet, () => done());
        },
      },
      maxPacketSize: options.maxPacketSize,
      rateLimit: options.rateLimit,
      receiveMaximum: options.receiveMaximum ?? RECEIVE_MAXIMUM,
      topicAliasMaximum: TOPIC_ALIAS_MAXIMUM,
      sweep: { intervalMs: sweepMs, connectTimeoutMs: CONNECT_TIMEOUT_MS, lingerMs: 2 * sweepMs },
    });
    core.start();
    return core;
  }

  /**
   * A core client that needs aedes (it subscribed, sent QoS 2) or a CONNECT the core does not keep: aedes reads
   * the connection from its CONNECT on; a client already connected keeps its rate limit and topic aliases.
   */
  private handToAedes(aedes: Aedes, conn: CoreConnection): void {
    if (conn.bucket) this.carriedBuckets.set(conn.socket, conn.bucket);
    const client = aedes.handle(conn.socket as Client['conn'], conn.req as never);
    refuseOversizedWithReason(client);
    const aliases = (client as Client & { _topicAliases?: Map<number, string> })._topicAliases;
    if (conn.aliases && aliases) for (const [alias, topic] of conn.aliases) aliases.set(alias, topic);
  }

  /** Publish from the agent itself (desired twins, commands); bypasses the client ACL. */
  publish(message: OutgoingMessage): Promise<void> {
    const aedes = this.aedes;
    if (!aedes) return Promise.reject(new Error('broker not started'));
    const packet = { cmd: 'publish', dup: false, ...message } as PublishPacket;
    return new Promise((resolve, reject) => aedes.publish(packet, (err) => (err ? reject(err) : resolve())));
  }

  /** Stop accepting, close every client, flush persistence. */
  async stop(): Promise<void> {
    const listeners = this.listeners;
    const aedes = this.aedes;
    const core = this.core;
    this.listeners = undefined;
    this.aedes = undefined;
    this.core = undefined;
    const closed = listeners?.close();
    core?.close();
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    listeners?.destroyConnections();
    await closed;
    this.refusalLog.flush();
  }

  /** Counted every time (metrics); logged once per client and reason, then as a sum per interval. */
  private refuse(
    reason: RefusalReason,
    clientId: string | undefined,
    details: Record<string, unknown>,
    msg: string,
  ) {
    this.refused[reason]++;
    this.refusalLog.warn(
      `${clientId}\0${reason}`,
      { clientId, reason },
      { clientId, reason, ...details },
      msg,
    );
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: (Error & { returnCode: number }) | null, ok: boolean | null) => void,
  ): void {
    if (client.version === 5 && client.receiveMaximum < RECEIVE_MAXIMUM_DEFAULT) limitInFlight(client);
    const certificate = this.certificates.get(client.conn);
    const authenticated = certificate
      ? Promise.resolve(this.options.authorizer.authenticateCertificate(certificate.name, username))
      : this.options.authorizer.authenticate(username, password);
    authenticated.then(
      (result) => {
        if (result.ok) {
          // The id's connection on the core is closed ([MQTT-3.1.4-2]), as aedes closes its own: only once the
          // new one has authenticated, or anyone could disconnect a device by naming its client id.
          this.core?.release(client.id);
          this.identities.set(client, result.identity);
          this.buckets.set(
            client,
            this.carriedBuckets.get(client.conn) ??
              new TokenBucket(this.options.rateLimit.messagesPerSecond, this.options.rateLimit.burst),
          );
          return done(null, true);
        }
        this.refuse(
          'connect',
          client.id,
          { username, certificate: certificate?.name, cause: result.reason },
          'CONNECT refused',
        );
        const code = result.reason === 'anonymous-refused' ? 5 : 4;
        done(Object.assign(new RefusedError(result.reason, code), { returnCode: code }), false);
      },
      (err: unknown) => {
        this.logger.error({ clientId: client.id, err: errorMessage(err) }, 'authentication failed');
        done(Object.assign(new RefusedError('server unavailable', 3), { returnCode: 3 }), false);
      },
    );
  }

  private authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    done: (err?: Error | null) => void,
  ): void {
    if (!client) {
      done();
      return;
    }
    const identity = this.identities.get(client);
    if (!identity || !this.options.authorizer.canPublish(identity, packet.topic)) {
      this.refuse(
        'publish',
        client.id,
        { topic: packet.topic },
        'PUBLISH refused: not allowed for this client',
      );
      done(new RefusedError('not authorized for this topic'));
      return;
    }
    if (!this.buckets.get(client)?.take()) {
      this.refuse('rate', client.id, { topic: packet.topic }, 'PUBLISH refused: client over its rate limit');
      // MQTT 5 clients get a refusal per message; 3.1.1 clients, which have none, are disconnected.
      done(new RefusedError('message rate too high'));
      return;
    }
    this.options.ingest(identity, client.id, packet, (err) => {
      if (!err) {
        if (packet.qos === 1) this.holdAck(client.conn, packet);
        done();
        return;
      }
      const reason = ingestRefusal(err);
      this.refuse(reason, client.id, { topic: packet.topic, err: errorMessage(err) }, refusalMessage[reason]);
      done(new RefusedError(errorMessage(err)));
    });
  }

  /**
   * A QoS 1 PUBACK leaves only once the message is published: queued for every persistent session and handed
   * to every connected subscriber. aedes 2.0.0-beta.1 writes the PUBACK first and publishes after
   * (lib/handlers/publish.js, enqueuePublish, `case 1`), so an agent killed between the two had acknowledged a
   * message that an offline session never got. The connection stays corked from the acceptance until aedes'
   * `published` hook; corks count, so the PUBACKs one commit releases also leave a client in one write.
   * Held by packet, not by client: aedes publishes a dead broker's will with no client.
   */
  private holdAck(conn: Client['conn'], packet: PublishPacket): void {
    conn.cork();
    this.heldAcks.set(packet, conn);
  }

  private releaseAck(packet: PublishPacket): void {
    const conn = this.heldAcks.get(packet);
    if (!conn) return;
    this.heldAcks.delete(packet);
    conn.uncork();
  }

  private authorizeSubscribe(
    client: Client,
    sub: Subscription,
    done: (err: Error | null, sub?: Subscription | null) => void,
  ): void {
    const identity = this.identities.get(client);
    if (identity && this.options.authorizer.canSubscribe(identity, sub.topic)) {
      done(null, sub);
      return;
    }
    this.refuse(
      'subscribe',
      client.id,
      { topic: sub.topic },
      'SUBSCRIBE refused: not allowed for this client',
    );
    done(null, null);
  }
}

/**
 * Holds the client's QoS 1/2 deliveries to its Receive Maximum. Called at CONNECT, before anything is sent to
 * it (aedes has read the CONNECT's properties by then). Acknowledgements are seen on aedes' own parser of the
 * connection (lib/client.js, `this._parser`), which emits every packet the client sends.
 */
function limitInFlight(client: Client): void {
  const window = new ReceiveWindow(client.conn as Socket, client.receiveMaximum);
  const parser = (client as Client & { _parser: EventEmitter })._parser;
  parser.on('packet', (packet: AckPacket) => window.received(packet));
}

/** The parts of aedes' client (lib/client.js) that refusing an oversized packet touches. */
interface RefusingClient {
  version: number | null;
  connackSent: boolean;
  connected: boolean;
  closed: boolean;
  errored: boolean;
  disconnectReasonCode: number | null;
  _rejectingPacketTooLarge: boolean;
  conn: Socket;
  rejectPacketTooLarge(size: number, done?: () => void): void;
  close(done?: () => void): void;
}

/**
 * An MQTT 5 client whose packet is too large hears why, DISCONNECT 0x95, from its CONNACK on. aedes 2.0.0-beta.1
 * sends that reason only once the client counts as connected (lib/client.js, rejectPacketTooLarge), which is
 * after the session's queued messages went out (lib/handlers/connect.js, `connected = true` after emptyQueue);
 * a packet in between was refused by a plain close. A 3.1.1 client, which has no DISCONNECT to hear, is closed.
 */
function refuseOversizedWithReason(aedesClient: Client): void {
  const client = aedesClient as unknown as RefusingClient;
  const reject = client.rejectPacketTooLarge.bind(client);
  client.rejectPacketTooLarge = (size, done) => {
    const between = client.version === 5 && client.connackSent && !client.connected;
    if (!between || client.closed || client.errored || client._rejectingPacketTooLarge) {
      reject(size, done);
      return;
    }
    client._rejectingPacketTooLarge = true;
    client.disconnectReasonCode = PACKET_TOO_LARGE;
    client.conn.write(generate({ cmd: 'disconnect', reasonCode: PACKET_TOO_LARGE }, { protocolVersion: 5 }));
    client.close(done);
  };
}

export type { AedesPublishPacket };
