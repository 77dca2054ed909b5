import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { HostPort } from '../config/load.js';
import type { Db } from '../store/db.js';
import { OutboxFullError } from '../store/outbox.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { Authorizer, Identity } from './auth.js';
import { SqlitePersistence } from './persistence.js';
import { TokenBucket } from './rateLimit.js';

/** What the broker hands the sync layer for every accepted device PUBLISH; a rejection refuses the PUBLISH. */
export type Ingest = (identity: Identity, clientId: string, packet: PublishPacket) => Promise<void>;

export interface EdgeBrokerOptions {
  db: Db;
  logger: Logger;
  authorizer: Authorizer;
  ingest: Ingest;
  maxPacketSize: number;
  rateLimit: { messagesPerSecond: number; burst: number };
}

export type RefusalReason = 'connect' | 'publish' | 'subscribe' | 'rate' | 'payload' | 'outbox-full';

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
  private readonly logger: Logger;
  events: EdgeBrokerEvents = {};

  constructor(private readonly options: EdgeBrokerOptions) {
    this.logger = options.logger;
  }

  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  async start(listen: HostPort): Promise<HostPort> {
    const aedes = await Aedes.createBroker({
      persistence: new SqlitePersistence(this.options.db),
      maximumPacketSize: this.options.maxPacketSize,
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
      this.logger.warn({ clientId: client?.id, err: err.message }, 'connection refused or broken');
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
        this.logger.warn({ clientId: client.id, username, reason: result.reason }, 'CONNECT refused');
        this.events.onRefused?.('connect');
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
      this.logger.warn(
        { clientId: client.id, topic: packet.topic },
        'PUBLISH refused: not allowed for this client',
      );
      this.events.onRefused?.('publish');
      done(new RefusedError('not authorized for this topic'));
      return;
    }
    if (!this.buckets.get(client)?.take()) {
      this.logger.warn(
        { clientId: client.id, topic: packet.topic },
        'PUBLISH refused: client over its rate limit',
      );
      this.events.onRefused?.('rate');
      // MQTT 5 clients get a refusal per message; 3.1.1 clients, which have none, are disconnected.
      done(new RefusedError('message rate too high'));
      return;
    }
    this.options.ingest(identity, client.id, packet).then(
      () => done(),
      (err: unknown) => {
        this.logger.warn(
          { clientId: client.id, topic: packet.topic, err: errorMessage(err) },
          'PUBLISH refused',
        );
        this.events.onRefused?.(err instanceof OutboxFullError ? 'outbox-full' : 'payload');
        done(new RefusedError(errorMessage(err)));
      },
    );
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
    this.logger.warn(
      { clientId: client.id, topic: sub.topic },
      'SUBSCRIBE refused: not allowed for this client',
    );
    this.events.onRefused?.('subscribe');
    done(null, null);
  }
}

export type { AedesPublishPacket };
