import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dashboardRoutes } from './api/dashboard.js';
import { devicesApi } from './api/devicesApi.js';
import { HttpApi, type Route } from './api/http.js';
import { HttpAuth } from './api/httpAuth.js';
import { LiveFeed, withRuntimeConditions } from './api/liveFeed.js';
import { createMetrics } from './api/metrics.js';
import { TokenFile } from './api/tokenFile.js';
import { twinsApi } from './api/twinsApi.js';
import { Authorizer } from './broker/auth.js';
import { CredentialsFile } from './broker/credentialsFile.js';
import { EdgeBroker, REFUSAL_REASONS } from './broker/edgeBroker.js';
import { builtinHandlers } from './builtinHandlers.js';
import type { AgentConfig, HostPort } from './config/load.js';
import type { DevicePluginManager } from './deviceplugin/manager.js';
import { slotUsage } from './deviceplugin/slotUsage.js';
import { StoreSlotClaims } from './deviceplugin/storeClaims.js';
import { ExternalHandlers, withExternal } from './discovery/external/index.js';
import { DiscoveryManager } from './discovery/manager.js';
import type { DiscoveryHandler } from './model/handler.js';
import type { DiscoveryConfigObject } from './model/resources.js';
import { DeviceRegistry } from './registry/deviceRegistry.js';
import type { DeviceStore } from './registry/deviceStore.js';
import { type ObjectStores, objectStores } from './registry/objectStores.js';
import { type Db, openDb } from './store/db.js';
import { Outbox } from './store/outbox.js';
import { WriteHealth } from './store/writeHealth.js';
import { UpstreamBridge } from './sync/bridge.js';
import { CommandStore } from './sync/commands.js';
import { SyncEngine } from './sync/engine.js';
import { TwinStore } from './sync/twins.js';
import { type Clock, systemClock } from './util/clock.js';
import { LeafbridgeError } from './util/errors.js';
import { child, type Logger } from './util/logger.js';
import type { SecretReader } from './util/secretRef.js';

export interface AgentAddresses {
  broker: HostPort;
  /** The mqtts and MQTT-over-WebSocket listeners, when configured. */
  brokerTls?: HostPort;
  brokerWebsocket?: HostPort;
  http: HostPort;
}

/**
 * The edge agent: the store, the edge broker, the sync engine with its outbox and upstream bridge, and the
 * HTTP endpoints. Constructed from a validated config; nothing opens until `start()`.
 */
export class Agent {
  private db?: Db;
  private broker?: EdgeBroker;
  private bridge?: UpstreamBridge;
  private engine?: SyncEngine;
  private http?: HttpApi;
  private outbox?: Outbox;
  /** The dashboard's samples and event stream (GET /api/v1/events). */
  private live?: LiveFeed;
  private readonly refused: Record<string, number> = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0]));
  /** Whether the store can write (a full disk makes the agent not ready). */
  private writeHealth?: WriteHealth;
  private discovery?: DiscoveryManager;
  private externalHandlers?: ExternalHandlers;
  private devicePlugins?: DevicePluginManager;
  private slotClaims?: StoreSlotClaims;
  /** Where Device and DiscoveryConfig objects are kept, and the cluster if there is one. */
  private stores?: ObjectStores;
  private unwatchConfigs?: () => void;
  /** This node's devices (what it sees now, or within the grace period): the device plugins' view. */
  readonly registry = new DeviceRegistry();
  /** Every node's devices as one set of Device objects: the cluster's, or this agent's SQLite. */
  devices?: DeviceStore;
  addresses?: AgentAddresses;

  constructor(
    private readonly config: AgentConfig,
    private readonly logger: Logger,
    private readonly deps: {
      handlers?: readonly DiscoveryHandler[];
      clock?: Clock;
      routes?: Record<string, Route>;
    } = {},
  ) {}

  async start(): Promise<AgentAddresses> {
    const { config, logger } = this;
    const db = openDb(config.dataDir, config.store);
    this.db = db;
    const clock = this.deps.clock ?? systemClock;
    const writeHealth = new WriteHealth({ db, logger: child(logger, 'store'), clock });
    this.writeHealth = writeHealth;
    const outbox = config.upstream
      ? new Outbox(db, config.outbox, child(logger, 'sync:outbox'), writeHealth)
      : undefined;
    this.outbox = outbox;
    const twins = new TwinStore(db);
    // The engine and the broker call each other; neither calls the other before `start()`, so the engine's
    // publish may name the broker built next.
    const engine = new SyncEngine({
      logger: child(logger, 'sync:engine'),
      outbox,
      twins,
      commands: new CommandStore(db),
      commandTtlMs: config.commands.ttlMs,
      edgePublish: (message): Promise<void> => broker.publish(message),
    });
    const broker = new EdgeBroker({
      db,
      logger: child(logger, 'broker'),
      authorizer: this.brokerAuthorizer(),
      ingest: (identity, clientId, packet, done): void => {
        engine.ingest(identity, clientId, packet, (err) => {
          // Twins and commands write outside the outbox: their storage failures count for readiness too.
          if (err) writeHealth.failed(err);
          else this.live?.observe?.(packet.topic, packet.payload as Buffer); // set only while a dashboard page is open
          done(err);
        });
      },
      events: {
        onSubscribed: (identity, _clientId, topics) => engine.onSubscribed(identity, topics),
        onRefused: (reason) => {
          this.refused[reason] = (this.refused[reason] ?? 0) + 1;
        },
      },
      maxPacketSize: config.broker.maxPacketSize,
      rateLimit: config.broker.rateLimit,
      refusalLogIntervalMs: Math.max(100, config.broker.refusalLogIntervalMs),
      clock,
    });
    this.broker = broker;
    this.engine = engine;
    if (config.upstream && outbox) {
      this.bridge = new UpstreamBridge({
        config: config.upstream,
        node: config.node,
        outbox,
        logger: child(logger, 'sync:bridge'),
        onDownstream: (topic, payload, props) => {
          engine.downstream(topic, payload, props);
          if (topic.kind === 'desired') this.live?.twinChanged(topic.device);
        },
      });
    }
    const metrics = createMetrics({
      ...(outbox ? { outbox } : {}),
      ...(this.bridge ? { bridge: this.bridge } : {}),
      received: engine.received,
      brokerClients: () => broker.connectedClients,
      refused: this.refused,
      devicesPending: () => this.stores?.pending() ?? 0,
    });
    const handlers = await this.withExternalHandlers(this.deps.handlers ?? builtinHandlers);
    const stores = await objectStores({ config, db, handlers, clock, logger });
    const { devices, configs, writable } = stores;
    this.stores = stores;
    this.devices = devices;
    const discovery = new DiscoveryManager({
      node: config.node,
      namespace: stores.namespace,
      handlers,
      registry: this.registry,
      store: devices,
      logger,
      clock,
      gracePeriodMs: config.discovery.gracePeriodMs,
      probeWritePaths: config.discovery.probeWritePaths,
      readSecret: await this.secretReader(stores),
      onConfigStatus: (name, status) => configs.reportStatus(name, status),
    });
    this.discovery = discovery;
    const live = this.liveFeed(engine, twins, devices, () =>
      configs.list().map((c) => withRuntimeConditions(c, discovery.runtime(c.metadata.name))),
    );
    this.live = live;
    this.http = new HttpApi({
      logger: child(logger, 'api'),
      auth: await this.httpAuth(stores),
      ...(config.http.tls ? { tls: config.http.tls } : {}),
      metrics,
      ready: () => this.readiness(),
      routes: {
        '/api/v1/events': live.route,
        '/api/v1/twins': twinsApi(twins),
        '/api/v1/': devicesApi({
          devices,
          configs,
          writable,
          runtime: (name) => discovery.runtime(name),
          logger: child(logger, 'api'),
        }),
        ...this.deps.routes,
        ...dashboardRoutes(child(logger, 'api:dashboard')),
      },
    });

    const brokerAddresses = await broker.start(config.broker);
    engine.start();
    this.bridge?.start();
    const httpAddress = await this.http.start(config.http.listen);
    live.start();
    await configs.start();
    discovery.sync(configs.list());
    this.unwatchConfigs = configs.watch((list) => discovery.sync(list));
    await this.startDevicePlugins(stores);
    this.addresses = {
      broker: brokerAddresses.mqtt,
      ...(brokerAddresses.mqtts ? { brokerTls: brokerAddresses.mqtts } : {}),
      ...(brokerAddresses.websocket ? { brokerWebsocket: brokerAddresses.websocket } : {}),
      http: httpAddress,
    };
    logger.info({ ...this.addresses, node: config.node, upstream: config.upstream?.url }, 'agent started');
    return this.addresses;
  }

  /** Flush and close everything; what is in the outbox stays for the next start. */
  async stop(): Promise<void> {
    await this.devicePlugins?.stop();
    this.slotClaims?.stop();
    this.unwatchConfigs?.();
    await this.discovery?.stop();
    await this.externalHandlers?.stop();
    await this.stores?.configs.close();
    await this.devices?.close();
    this.live?.stop();
    await this.http?.stop();
    await this.bridge?.stop();
    this.engine?.stop();
    await this.broker?.stop();
    this.outbox?.close();
    this.writeHealth?.stop();
    this.db?.close();
    this.db = undefined;
    this.logger.info('agent stopped');
  }

  /** The registration socket of external (Akri) handlers, when the config names any, and their handlers. */
  private async withExternalHandlers(
    handlers: readonly DiscoveryHandler[],
  ): Promise<readonly DiscoveryHandler[]> {
    if (this.config.discovery.external.handlers.length === 0) return handlers;
    const external = new ExternalHandlers(this.config.discovery.external, this.logger);
    await external.start();
    this.externalHandlers = external;
    return withExternal(handlers, external.handlers);
  }

  /** The dashboard's view of the sync layer: sampled once a second, messages observed only while watched. */
  private liveFeed(
    engine: SyncEngine,
    twins: TwinStore,
    devices: DeviceStore,
    configs: () => DiscoveryConfigObject[],
  ): LiveFeed {
    const { outbox, bridge } = this;
    return new LiveFeed({
      node: this.config.node,
      logger: child(this.logger, 'api:live'),
      devices,
      configs,
      twins,
      sample: () => ({
        outboxMessages: outbox?.messages ?? 0,
        outboxBytes: outbox?.bytes ?? 0,
        upstream: bridge ? (bridge.connected ? 'connected' : 'disconnected') : 'none',
        received: Object.values(engine.received).reduce((a, b) => a + b, 0),
        forwarded: bridge?.forwarded ?? 0,
        dropped: outbox ? outbox.dropped.oldest + outbox.dropped.rejected : 0,
      }),
    });
  }

  /**
   * Where `{secretKeyRef: {name, key}}` in handler details is read: the Secret of the agent's namespace in a
   * cluster, else the file secrets.dir/NAME/KEY. Errors name the Secret and key, never a value.
   */
  private async secretReader(stores: ObjectStores): Promise<SecretReader> {
    const { cluster, namespace } = stores;
    if (!cluster) {
      const dir = this.config.secrets.dir;
      return async ({ name, key }) => {
        try {
          return (await readFile(join(dir, name, key), 'utf8')).replace(/\r?\n$/, '');
        } catch (err) {
          throw new LeafbridgeError(
            'SECRET_UNREADABLE',
            `secret ${name}/${key}: cannot read it under ${dir} (${(err as { code?: string }).code ?? 'error'})`,
          );
        }
      };
    }
    const [{ KubeRest }, { readSecretKey }] = await Promise.all([
      import('./kubeclient/kubeRest.js'),
      import('./kubeclient/secrets.js'),
    ]);
    const rest = new KubeRest(cluster.kubeConfig, { timeoutMs: 10_000 });
    return (ref) => readSecretKey(rest, namespace, ref);
  }

  /** The broker's credentials: the config's, and the credentials file's, read again when it changes. */
  private brokerAuthorizer(): Authorizer {
    const { auth } = this.config;
    if (!auth.credentialsFile) return new Authorizer(auth);
    const file = new CredentialsFile(auth.credentialsFile, auth, child(this.logger, 'broker:auth'));
    file.load();
    return new Authorizer(auth, file);
  }

  /** Who may use the HTTP API: the tokens file, and in a cluster the API server's reviews (RBAC). */
  private async httpAuth(stores: ObjectStores): Promise<HttpAuth> {
    const { auth } = this.config.http;
    const logger = child(this.logger, 'api:auth');
    let tokens: TokenFile | undefined;
    if (auth.tokensFile) {
      tokens = new TokenFile(auth.tokensFile, logger);
      tokens.load();
    }
    let cluster: ConstructorParameters<typeof HttpAuth>[0]['cluster'];
    if (stores.cluster) {
      const [{ KubeRest }, { AccessReviews }] = await Promise.all([
        import('./kubeclient/kubeRest.js'),
        import('./kubeclient/accessReview.js'),
      ]);
      const rest = new KubeRest(stores.cluster.kubeConfig, { timeoutMs: 10_000 });
      cluster = { reviews: new AccessReviews(rest), namespace: stores.namespace };
    }
    if (!tokens && !cluster && auth.anonymous === 'none')
      logger.warn('no http.auth.tokensFile and no cluster: the HTTP API answers only /healthz and /readyz');
    return new HttpAuth({
      logger,
      anonymous: auth.anonymous,
      cacheTtlMs: auth.cacheTtlMs,
      ...(tokens ? { tokens } : {}),
      ...(cluster ? { cluster } : {}),
    });
  }

  /** Device-plugin resources for the kubelet, when this node has a kubelet device-plugin directory. */
  private async startDevicePlugins(stores: ObjectStores): Promise<void> {
    const dir = this.config.devicePlugins.dir;
    if (!existsSync(dir)) {
      this.logger.info({ dir }, 'device plugins off: no kubelet device-plugin directory');
      return;
    }
    // The gRPC stack (~7 MB resident) loads only on a node with a kubelet.
    const { DevicePluginManager } = await import('./deviceplugin/manager.js');
    const clock = this.deps.clock ?? systemClock;
    const claims = new StoreSlotClaims({ store: stores.devices, logger: this.logger, clock });
    await claims.start();
    this.slotClaims = claims;
    this.devicePlugins = new DevicePluginManager({
      registry: this.registry,
      node: this.config.node,
      dir,
      logger: child(this.logger, 'deviceplugin'),
      clock,
      claims,
      inUse: slotUsage({
        podResources: this.config.devicePlugins.podResources,
        node: this.config.node,
        cluster: stores.cluster,
        logger: child(this.logger, 'deviceplugin'),
      }),
      reconcileIntervalMs: this.config.devicePlugins.releaseIntervalMs,
      reconcileGraceMs: this.config.devicePlugins.releaseGraceMs,
      ...(this.config.devicePlugins.cdi ? { cdiDir: this.config.devicePlugins.cdiDir } : {}),
    });
    await this.devicePlugins.start();
  }

  private readiness(): { ready: boolean; details: Record<string, unknown> } {
    const unwritable = this.writeHealth?.state;
    return {
      ready: this.addresses !== undefined && this.db !== undefined && unwritable === undefined,
      details: {
        store: unwritable
          ? {
              writable: false,
              reason: `the store cannot write (${unwritable.code}): ${unwritable.message}`,
              since: new Date(unwritable.since).toISOString(),
            }
          : { writable: true },
        upstream: this.bridge ? (this.bridge.connected ? 'connected' : 'disconnected') : 'none',
        outboxMessages: this.outbox?.messages ?? 0,
      },
    };
  }
}
