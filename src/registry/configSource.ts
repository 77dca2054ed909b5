import type { DiscoveryConfigEntry } from '../config/schema.js';
import type { Condition, DiscoveryConfigObject } from '../model/resources.js';

/**
 * The cluster-wide part of a DiscoveryConfig's status that the agent writes: the `Valid` condition (why
 * bad details are refused) and the number of Devices under the config. Every agent computes the same
 * values, so a write is skipped when the stored status already says so.
 */
export interface ConfigStatusReport {
  conditions: Condition[];
  devices?: number;
}

/**
 * Where the agent's DiscoveryConfigs come from: the agent's SQLite store (standalone: seeded from the config
 * file, changed through the HTTP API) or the Kubernetes API (watched; the ones whose `spec.nodeSelector`
 * matches this node's labels; cached in SQLite so that an agent started while the API server is away runs
 * from the last configs it saw).
 */
export interface DiscoveryConfigSource {
  /** Loads what it can (server, or cache when the server is away); never waits for a remote server. */
  start(): Promise<void>;
  /** The configs this node runs, sorted by name. */
  list(): DiscoveryConfigObject[];
  /** Called with the whole new list each time it changes. Returns the function that stops listening. */
  watch(listener: (configs: DiscoveryConfigObject[]) => void): () => void;
  /** Records a config's status (coalesced, retried through outages); unknown names are ignored. */
  reportStatus(name: string, status: ConfigStatusReport): void;
  close(): Promise<void>;
}

/** Why a config change through the API was refused, Kubernetes-style. */
export type ConfigWriteError =
  | { code: 404; reason: 'NotFound'; message: string }
  | { code: 409; reason: 'AlreadyExists' | 'Conflict'; message: string }
  | { code: 403; reason: 'Forbidden'; message: string }
  | { code: 422; reason: 'Invalid'; message: string; causes: { field: string; message: string }[] };

export type ConfigWriteResult =
  | { ok: true; object: DiscoveryConfigObject }
  | { ok: false; error: ConfigWriteError };

/** The standalone source: configs can also be created, replaced and deleted (the agent's HTTP API). */
export interface WritableConfigSource extends DiscoveryConfigSource {
  create(entry: DiscoveryConfigEntry): ConfigWriteResult;
  /** Replaces the spec; `resourceVersion`, when given, must match (409 otherwise). */
  replace(name: string, entry: DiscoveryConfigEntry, resourceVersion?: string): ConfigWriteResult;
  delete(name: string): ConfigWriteResult;
}
