import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { HostPort } from '../config/load.js';
import type { Db } from '../store/db.js';
import { OutboxFullError } from '../store/outbox.js';
import { storageFailure } from '../store/writeHealth.js';
import { type Clock, systemClock } from '../util/clock.js';
import { errorMessage, PayloadError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { RepeatLog } from '../util/repeatLog.js';
import type { Authorizer, Identity } from './auth.js';
import { EdgePersistence, shapeDelivery } from './delivery.js';
import { TokenBucket } from './rateLimit.js';

/**
 * What the broker hands the sync layer for every accepted device PUBLISH. `done` is called once the message is
 * durable, or with an error that refuses the PUBLISH (a callback: this runs once per device message).
 */
export type Ingest = (
  identity: Identity,
  clientId: string,
  packet: PublishPacket,
  done: (err?: Error) => void,
) => void;

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
}

/** Topic aliases a client may set (MQTT 5); mosquitto's default. */
const TOPIC_ALIAS_MAXIMUM = 10;

export const REFUSAL_REASONS = [
  'connect',
  'publish',
  'subscribe',
  'rate',
  'payload',
  'outbox-full',
  'storage',
  'internal',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface EdgeBrokerEvents {
  /** A client subscribed (after the ACL): the sync layer delivers pending commands then. */
  onSubscribed?: (identity: Identity, clientId: string, topics: string[]) => void;
  onRefused?: (reason: RefusalReason) => void;
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
  private aedes?: Aedes;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private readonly identities = new WeakMap<Client, Identity>();
  private readonly buckets = new WeakMap<Client, TokenBucket>();
  private readonly corked = new Set<Client['conn']>();
  private readonly logger: Logger;
  private readonly refusalLog: RepeatLog;
  events: EdgeBrokerEvents = {};

  constructor(private readonly options: EdgeBrokerOptions) {
    this.logger = options.logger;
    this.refusalLog = new RepeatLog({
      logger: options.logger,
      clock: options.clock ?? systemClock,
      intervalMs: options.refusalLogIntervalMs ?? 60_000,
    });
  }

  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  async start(listen: HostPort): Promise<HostPort> {
    const aedes = await Aedes.createBroker({
      persistence: new EdgePersistence(this.options.db),
      maximumPacketSize: this.options.maxPacketSize,
      authorizeForward: shapeDelivery,
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
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      aedes.handle(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('broker: no TCP address');
    return { host: address.address, port: address.port };
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
    const server = this.server;
    const aedes = this.aedes;
    this.server = undefined;
    this.aedes = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
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
    this.events.onRefused?.(reason);
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
    this.options.authorizer.authenticate(username, password).then(
      (result) => {
        if (result.ok) {
          this.identities.set(client, result.identity);
          this.buckets.set(
            client,
            new TokenBucket(this.options.rateLimit.messagesPerSecond, this.options.rateLimit.burst),
          );
          return done(null, true);
        }
        this.refuse('connect', client.id, { username, cause: result.reason }, 'CONNECT refused');
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
        this.corkUntilNextTurn(client.conn);
        done();
        return;
      }
      const reason = ingestRefusal(err);
      this.refuse(reason, client.id, { topic: packet.topic, err: errorMessage(err) }, refusalMessage[reason]);
      done(new RefusedError(errorMessage(err)));
    });
  }

  /**
   * The PUBACKs a commit releases leave a client in one write: mqtt-packet writes a packet in pieces, and a
   * commit releases many of one client's PUBLISHes at once. Uncorked at the next turn of the event loop.
   */
  private corkUntilNextTurn(conn: Client['conn']): void {
    if (this.corked.has(conn)) return;
    conn.cork();
    this.corked.add(conn);
    if (this.corked.size === 1) setImmediate(this.uncorkAll);
  }

  private readonly uncorkAll = (): void => {
    for (const conn of this.corked) conn.uncork();
    this.corked.clear();
  };

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

/** Why the sync layer refused a PUBLISH: the device's fault (payload), or the agent's (full, storage, internal). */
type IngestRefusal = Extract<RefusalReason, 'outbox-full' | 'storage' | 'payload' | 'internal'>;

function ingestRefusal(err: unknown): IngestRefusal {
  if (err instanceof OutboxFullError) return 'outbox-full';
  if (storageFailure(err)) return 'storage';
  if (err instanceof PayloadError) return 'payload';
  return 'internal';
}

const refusalMessage: Record<IngestRefusal, string> = {
  'outbox-full': 'PUBLISH refused: outbox full',
  storage: 'PUBLISH refused: the store cannot write',
  payload: 'PUBLISH refused: invalid payload',
  internal: 'PUBLISH refused: internal error',
};

export type { AedesPublishPacket };
