import { existsSync } from 'node:fs';
import { dashboardRoutes } from './api/dashboard.js';
import { devicesApi } from './api/devicesApi.js';
import { HttpApi, type Route } from './api/http.js';
import { httpAuthFromConfig } from './api/httpAuthFromConfig.js';
import { LiveFeed, withRuntimeConditions } from './api/liveFeed.js';
import { createMetrics } from './api/metrics.js';
import { twinsApi } from './api/twinsApi.js';
import { authorizerFromConfig } from './broker/authorizerFromConfig.js';
import { EdgeBroker } from './broker/edgeBroker.js';
import { builtinHandlers } from './builtinHandlers.js';
import type { AgentConfig, HostPort } from './config/load.js';
import { type Db, openDb } from './database/db.js';
import { Outbox } from './database/outbox.js';
import { WriteHealth } from './database/writeHealth.js';
import type { DevicePluginManager } from './deviceplugin/manager.js';
import { slotUsage } from './deviceplugin/slotUsage.js';
import { StoreSlotClaims } from './deviceplugin/storeClaims.js';
import type { ExternalHandlers } from './discovery/external/index.js';
import { DiscoveryManager } from './discovery/manager.js';
import { secretReader } from './discovery/secretReader.js';
import type { DiscoveryHandler } from './model/handler.js';
import { DeviceRegistry } from './registry/deviceRegistry.js';
import { type ObjectStores, objectStores } from './registry/objectStores.js';
import { UpstreamBridge } from './sync/bridge.js';
import { CommandStore } from './sync/commands.js';
import { SyncEngine } from './sync/engine.js';
import type { SyncEventBus, SyncEvents } from './sync/syncEvents.js';
import { TwinStore } from './sync/twins.js';
import { type Clock, systemClock } from './util/clock.js';
import { EventBus } from './util/events.js';
import { child, type Logger } from './util/logger.js';

export interface AgentAddresses {
  broker: HostPort;
  /** The mqtts and MQTT-over-WebSocket listeners, when configured. */
  brokerTls?: HostPort;
  brokerWebsocket?: HostPort;
  http: HostPort;
}

/** The agent's SQLite database and what the sync layer keeps in it. */
interface DatabaseParts {
  db: Db;
  /** Whether the database can write (a full disk makes the agent not ready). */
  writeHealth: WriteHealth;
  /** Only with an upstream: without one the edge works alone and forwards nothing. */
  outbox?: Outbox;
  twins: TwinStore;
}

/**
 * The edge broker, the sync engine between it and the outbox, the upstream bridge (when configured), and the
 * events they emit for the live feed.
 */
interface SyncParts {
  events: SyncEventBus;
  engine: SyncEngine;
  broker: EdgeBroker;
  bridge?: UpstreamBridge;
}

/** The handlers, where Device and DiscoveryConfig objects live, and the discovery that runs the handlers. */
interface ObjectParts {
  stores: ObjectStores;
  discovery: DiscoveryManager;
}

/**
 * What `start()` built, for `stop()` and readiness. Each part is kept as soon as it exists, so an agent whose
 * start failed half-way still stops what did start.
 */
interface Parts extends DatabaseParts, SyncParts, ObjectParts {
  externalHandlers?: ExternalHandlers;
  /** The dashboard's samples and event stream (GET /api/v1/events). */
  live: LiveFeed;
  http: HttpApi;
  unwatchConfigs: () => void;
  slotClaims?: StoreSlotClaims;
  devicePlugins?: DevicePluginManager;
}

/**
 * The edge agent: the SQLite database, the edge broker, the sync engine with its outbox and upstream bridge,
 * and the HTTP endpoints. Constructed from a validated config; nothing opens until `start()`. The Agent only
 * wires: each choice (object stores, secrets, HTTP auth, slot usage) is made by the module that owns it.
 */
export class Agent {
  private parts: Partial<Parts> = {};
  private readonly clock: Clock;
  /** This node's devices (what it sees now, or within the grace period): the device plugins' view. */
  readonly registry = new DeviceRegistry();
  /** Where the listeners are, once `start()` has opened them. */
  addresses?: AgentAddresses;

  constructor(
    private readonly config: AgentConfig,
    private readonly logger: Logger,
    private readonly deps: {
      handlers?: readonly DiscoveryHandler[];
      clock?: Clock;
      routes?: Record<string, Route>;
    } = {},
  ) {
    this.clock = deps.clock ?? systemClock;
  }

  async start(): Promise<AgentAddresses> {
    const database = this.openDatabase();
    const sync = this.buildSync(database);
    const objects = await this.openObjects(database);
    const live = this.buildLiveFeed(database, sync, objects);
    const http = await this.buildHttp(database, sync, objects, live);
    this.addresses = await this.listen(sync, http, live);
    await this.runDiscovery(objects);
    await this.startDevicePlugins(objects.stores);
    const { config } = this;
    this.logger.info(
      { ...this.addresses, node: config.node, upstream: config.upstream?.url },
      'agent started',
    );
    return this.addresses;
  }

  /** Device writes queued and not yet on the API server (0 without a cluster, or before `start()`). */
  pendingDeviceWrites(): number {
    return this.parts.stores?.pending() ?? 0;
  }

  /** Flush and close everything; what is in the outbox stays for the next start. */
  async stop(): Promise<void> {
    const p = this.parts;
    await p.devicePlugins?.stop();
    p.slotClaims?.stop();
    p.unwatchConfigs?.();
    await p.discovery?.stop();
    await p.externalHandlers?.stop();
    await p.stores?.configs.close();
    await p.stores?.devices.close();
    p.live?.stop();
    await p.http?.stop();
    await p.bridge?.stop();
    p.engine?.stop();
    await p.broker?.stop();
    p.outbox?.close();
    p.writeHealth?.stop();
    p.db?.close();
    this.parts = {};
    this.logger.info('agent stopped');
  }

  /** The SQLite database, its write health, the outbox (with an upstream only) and the twins. */
  private openDatabase(): DatabaseParts {
    const { config, logger, clock } = this;
    const db = openDb(config.dataDir, config.store);
    this.parts.db = db;
    const writeHealth = new WriteHealth({ db, logger: child(logger, 'store'), clock });
    this.parts.writeHealth = writeHealth;
    const outbox = config.upstream
      ? new Outbox(db, config.outbox, child(logger, 'sync:outbox'), writeHealth)
      : undefined;
    const parts: DatabaseParts = { db, writeHealth, twins: new TwinStore(db), ...(outbox ? { outbox } : {}) };
    Object.assign(this.parts, parts);
    return parts;
  }

  /**
   * The events and the engine first, then the broker and the bridge whose callbacks use them; the engine is
   * handed the broker to publish through when it starts (`listen`). The live feed, built later, subscribes to
   * the events.
   */
  private buildSync({ db, writeHealth, outbox, twins }: DatabaseParts): SyncParts {
    const { config, logger } = this;
    const events: SyncEventBus = new EventBus<SyncEvents>(child(logger, 'sync:events'));
    const engine = new SyncEngine({
      logger: child(logger, 'sync:engine'),
      outbox,
      twins,
      commands: new CommandStore(db),
      commandTtlMs: config.commands.ttlMs,
    });
    const broker = new EdgeBroker({
      db,
      logger: child(logger, 'broker'),
      authorizer: authorizerFromConfig(config.auth, child(logger, 'broker:auth')),
      ingest: (identity, clientId, packet, done): void => {
        engine.ingest(identity, clientId, packet, (err) => {
          // Twins and commands write outside the outbox: their storage failures count for readiness too.
          // The packet itself is the event (no copy per message); aedes parses every payload to a Buffer.
          if (err) writeHealth.failed(err);
          else events.emit('accepted', packet as { topic: string; payload: Buffer });
          done(err);
        });
      },
      events: { onSubscribed: (identity, _clientId, topics) => engine.onSubscribed(identity, topics) },
      maxPacketSize: config.broker.maxPacketSize,
      rateLimit: config.broker.rateLimit,
      refusalLogIntervalMs: Math.max(100, config.broker.refusalLogIntervalMs),
      core: config.broker.core,
      clock: this.clock,
    });
    const bridge =
      config.upstream && outbox
        ? new UpstreamBridge({
            config: config.upstream,
            node: config.node,
            outbox,
            logger: child(logger, 'sync:bridge'),
            onDownstream: (topic, payload, props) => {
              engine.downstream(topic, payload, props);
              if (topic.kind === 'desired') events.emit('desired', topic.device);
            },
          })
        : undefined;
    const parts: SyncParts = { events, engine, broker, ...(bridge ? { bridge } : {}) };
    Object.assign(this.parts, parts);
    return parts;
  }

  /** The handlers (with external ones), the object stores, and discovery over them. */
  private async openObjects({ db }: DatabaseParts): Promise<ObjectParts> {
    const { config, logger, clock } = this;
    const handlers = await this.withExternalHandlers(this.deps.handlers ?? builtinHandlers);
    const stores = await objectStores({ config, db, handlers, clock, logger });
    this.parts.stores = stores;
    const discovery = new DiscoveryManager({
      node: config.node,
      namespace: stores.namespace,
      handlers,
      registry: this.registry,
      store: stores.devices,
      logger,
      clock,
      gracePeriodMs: config.discovery.gracePeriodMs,
      probeWritePaths: config.discovery.probeWritePaths,
      readSecret: await secretReader({
        dir: config.secrets.dir,
        namespace: stores.namespace,
        ...(stores.cluster ? { cluster: stores.cluster } : {}),
      }),
      onConfigStatus: (name, status) => stores.configs.reportStatus(name, status),
    });
    this.parts.discovery = discovery;
    return { stores, discovery };
  }

  /** The registration socket of external (Akri) handlers, when the config names any, and their handlers. */
  private async withExternalHandlers(
    handlers: readonly DiscoveryHandler[],
  ): Promise<readonly DiscoveryHandler[]> {
    if (this.config.discovery.external.handlers.length === 0) return handlers;
    // Loaded only when used: gRPC adds ~3 MB to an idle agent's memory.
    const { ExternalHandlers, withExternal } = await import('./discovery/external/index.js');
    const external = new ExternalHandlers(this.config.discovery.external, this.logger);
    await external.start();
    this.parts.externalHandlers = external;
    return withExternal(handlers, external.handlers);
  }

  /** The dashboard's view of the sync layer: sampled once a second, messages observed only while watched. */
  private buildLiveFeed(
    { outbox, twins }: DatabaseParts,
    { events, engine, bridge }: SyncParts,
    { stores, discovery }: ObjectParts,
  ): LiveFeed {
    const live = new LiveFeed({
      events,
      node: this.config.node,
      logger: child(this.logger, 'api:live'),
      devices: stores.devices,
      configs: () =>
        stores.configs.list().map((c) => withRuntimeConditions(c, discovery.runtime(c.metadata.name))),
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
    this.parts.live = live;
    return live;
  }

  /** The HTTP API: metrics, readiness, the devices, twins and events routes, and the dashboard. */
  private async buildHttp(
    { outbox, twins }: DatabaseParts,
    { engine, broker, bridge }: SyncParts,
    { stores, discovery }: ObjectParts,
    live: LiveFeed,
  ): Promise<HttpApi> {
    const { config, logger } = this;
    const metrics = createMetrics({
      ...(outbox ? { outbox } : {}),
      ...(bridge ? { bridge } : {}),
      received: engine.received,
      brokerClients: () => broker.connectedClients,
      refused: broker.refused,
      devicesPending: () => stores.pending(),
    });
    const http = new HttpApi({
      logger: child(logger, 'api'),
      auth: await httpAuthFromConfig({
        auth: config.http.auth,
        namespace: stores.namespace,
        logger: child(logger, 'api:auth'),
        ...(stores.cluster ? { cluster: stores.cluster } : {}),
      }),
      ...(config.http.tls ? { tls: config.http.tls } : {}),
      metrics,
      ready: () => this.readiness(),
      routes: {
        '/api/v1/events': live.route,
        '/api/v1/twins': twinsApi(twins),
        '/api/v1/': devicesApi({
          devices: stores.devices,
          configs: stores.configs,
          writable: stores.writable,
          runtime: (name) => discovery.runtime(name),
          logger: child(logger, 'api'),
        }),
        ...this.deps.routes,
        ...dashboardRoutes(child(logger, 'api:dashboard')),
      },
    });
    this.parts.http = http;
    return http;
  }

  /** Opens the listeners: the engine first (given the broker), then the broker, the bridge, HTTP, the feed. */
  private async listen(
    { engine, broker, bridge }: SyncParts,
    http: HttpApi,
    live: LiveFeed,
  ): Promise<AgentAddresses> {
    engine.start(broker);
    const brokerAddresses = await broker.start(this.config.broker);
    bridge?.start();
    const httpAddress = await http.start(this.config.http.listen);
    live.start();
    return {
      broker: brokerAddresses.mqtt,
      ...(brokerAddresses.mqtts ? { brokerTls: brokerAddresses.mqtts } : {}),
      ...(brokerAddresses.websocket ? { brokerWebsocket: brokerAddresses.websocket } : {}),
      http: httpAddress,
    };
  }

  /** Discovery follows the configs: those there now, then every change. */
  private async runDiscovery({ stores, discovery }: ObjectParts): Promise<void> {
    const { configs } = stores;
    await configs.start();
    discovery.sync(configs.list());
    this.parts.unwatchConfigs = configs.watch((list) => discovery.sync(list));
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
    const { clock } = this;
    const claims = new StoreSlotClaims({ store: stores.devices, logger: this.logger, clock });
    await claims.start();
    this.parts.slotClaims = claims;
    const devicePlugins = new DevicePluginManager({
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
    this.parts.devicePlugins = devicePlugins;
    await devicePlugins.start();
  }

  private readiness(): { ready: boolean; details: Record<string, unknown> } {
    const { writeHealth, db, bridge, outbox } = this.parts;
    const unwritable = writeHealth?.state;
    return {
      ready: this.addresses !== undefined && db !== undefined && unwritable === undefined,
      details: {
        store: unwritable
          ? {
              writable: false,
              reason: `the store cannot write (${unwritable.code}): ${unwritable.message}`,
              since: new Date(unwritable.since).toISOString(),
            }
          : { writable: true },
        upstream: bridge ? (bridge.connected ? 'connected' : 'disconnected') : 'none',
        outboxMessages: outbox?.messages ?? 0,
      },
    };
  }
}
