import type { AgentConfig } from '../config/load.js';
import type { Db } from '../database/db.js';
import { type ClusterConnection, clusterConnection } from '../kubeclient/connection.js';
import type { DiscoveryHandler } from '../model/handler.js';
import type { Clock } from '../util/clock.js';
import { child, type Logger } from '../util/logger.js';
import type { DiscoveryConfigSource, WritableConfigSource } from './configSource.js';
import type { DeviceStore } from './deviceStore.js';
import { LocalConfigStore } from './localConfigStore.js';
import { LocalDeviceStore } from './localDeviceStore.js';

/** Where an agent keeps its Device and DiscoveryConfig objects, and the cluster they live in (if any). */
export interface ObjectStores {
  devices: DeviceStore;
  configs: DiscoveryConfigSource | WritableConfigSource;
  /** Whether configs may be changed through the HTTP API (the local store only). */
  writable: boolean;
  /** The agent's namespace: the cluster connection's, or `default`. */
  namespace: string;
  cluster?: ClusterConnection;
  /** Device writes queued and not yet on the server (always 0 locally). */
  pending: () => number;
}

export interface ObjectStoresOptions {
  config: AgentConfig;
  db: Db;
  handlers: readonly DiscoveryHandler[];
  clock: Clock;
  logger: Logger;
}

/**
 * Where Device and DiscoveryConfig objects live: the cluster when one is configured (see
 * `clusterConnection`), else this agent's SQLite, where configs can also be changed through the HTTP API.
 */
export async function objectStores(o: ObjectStoresOptions): Promise<ObjectStores> {
  const { config, db, logger } = o;
  const cluster = await clusterConnection(config.kubernetes);
  if (!cluster) {
    logger.info('no cluster: Device and DiscoveryConfig objects are kept in the local store');
    const namespace = 'default';
    const configs = new LocalConfigStore({
      db,
      namespace,
      logger: child(logger, 'registry:configs'),
      clock: o.clock,
      handlers: o.handlers,
      fileConfigs: config.discoveryConfigs,
    });
    const devices = new LocalDeviceStore({ db, namespace, logger, clock: o.clock });
    return { devices, configs, writable: true, namespace, pending: () => 0 };
  }
  logger.info({ cluster: cluster.source, namespace: cluster.namespace }, 'objects kept in the cluster');
  if (config.discoveryConfigs.length > 0) {
    logger.warn(
      'discoveryConfigs in the config file are ignored: in a cluster, configs are DiscoveryConfig objects',
    );
  }
  const [{ KubeDeviceStore }, { KubeConfigSource }] = await Promise.all([
    import('./kubeDeviceStore.js'),
    import('./kubeConfigSource.js'),
  ]);
  const devices = new KubeDeviceStore({
    kubeConfig: cluster.kubeConfig,
    namespace: cluster.namespace,
    logger,
  });
  // The first list is not awaited: with the API server away, the agent runs on from what it has.
  void devices.start();
  const configs = new KubeConfigSource({
    kubeConfig: cluster.kubeConfig,
    namespace: cluster.namespace,
    node: config.node,
    db,
    logger,
  });
  return {
    devices,
    configs,
    writable: false,
    namespace: cluster.namespace,
    cluster,
    pending: () => devices.pending,
  };
}
