import type { KubeConfig } from '@kubernetes/client-node';
import type { Db } from '../database/db.js';
import { isConflict, isNotFound, isTransient, shortError } from '../kubeclient/kubeApiError.js';
import { KubeRest } from '../kubeclient/kubeRest.js';
import { type CustomResource, customPath, MERGE_PATCH } from '../kubeclient/paths.js';
import { olderThan, Reflector } from '../kubeclient/reflector.js';
import { API_GROUP, type DiscoveryConfigObject } from '../model/resources.js';
import { backoffDelay, sleep } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { stableJson } from '../util/json.js';
import { child, type Logger } from '../util/logger.js';
import { byCodeUnit } from '../util/order.js';
import type { ConfigStatusReport, DiscoveryConfigSource } from './configSource.js';
import { ConfigWatchers, nextStatus, sameStatus } from './localConfigStore.js';

export interface KubeConfigSourceOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** This node's name: its labels decide which configs (by `spec.nodeSelector`) it runs. */
  node: string;
  /** The agent's SQLite store: the `kube_cache` table keeps the last configs offered and the node's labels. */
  db: Db;
  logger: Logger;
  /** Retry delays for the list+watch and status writes (full jitter). Default 500 ms … 30 s. */
  backoff?: { baseMs: number; maxMs: number };
  /** How long start() waits for the first list before it runs from the cache. Default 2 s. */
  startTimeoutMs?: number;
  /** How often the node's labels are re-read besides at every re-list. Default 5 min. */
  nodeRefreshMs?: number;
}

type Status = DiscoveryConfigObject['status'];
/** A config's status and the resourceVersion it was read at. */
type StatusBase = { resourceVersion: string; status: Status };

const VERSION = 'v1alpha1';
const CONFIG_KIND = 'DiscoveryConfig';
const NODE_KIND = 'Node';
/** 409 Conflicts on one status write re-read and retried in a row before it backs off like other failures. */
const STATUS_CONFLICT_RETRIES = 5;

/**
 * DiscoveryConfigs from the Kubernetes API (group leafbridge.io, plural discoveryconfigs, one namespace),
 * list+watched by a reflector, of which this node runs the ones whose `spec.nodeSelector` its labels match
 * (the node is re-read at every re-list and every `nodeRefreshMs`).
 *
 * Outage: every list it offers, and the node's labels, are written to `kube_cache`; an agent started while
 * the API server is away offers the cached configs until the server answers, then the server's again.
 *
 * Status: `reportStatus` writes `/status` only when the stored conditions (type, status, reason, message)
 * or device count differ, as a read-modify-write conditional on the resourceVersion (409 → re-read), so the
 * controller's `BrokersReady` and `status.brokers` are never reverted; per config the latest report wins and
 * one write is in flight, retried with backoff through outages, dropped when the config is gone (404).
 */
export class KubeConfigSource implements DiscoveryConfigSource {
  private readonly rest: KubeRest;
  private readonly reflector: Reflector<DiscoveryConfigObject>;
  private readonly watchers: ConfigWatchers;
  private readonly logger: Logger;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly resource: CustomResource;
  private readonly closing = new AbortController();
  /** The node's labels; undefined until read (or cached): only configs without a nodeSelector match. */
  private labels: Record<string, string> | undefined;
  private cached: DiscoveryConfigObject[] = [];
  private fromServer = false;
  private ranFromCache = false;
  private offered: DiscoveryConfigObject[] = [];
  private offeredKey: string | undefined;
  private cacheKey: string | undefined;
  private nodeTimer: NodeJS.Timeout | undefined;
  private readonly statusWanted = new Map<string, ConfigStatusReport>();
  private readonly statusApplying = new Set<string>();
  /** What our last status write returned, until the reflector sees that version. */
  private readonly statusWritten = new Map<string, StatusBase>();

  constructor(private readonly o: KubeConfigSourceOptions) {
    this.rest = new KubeRest(o.kubeConfig);
    this.logger = child(o.logger, 'registry:kube-configs');
    this.watchers = new ConfigWatchers(this.logger);
    this.backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
    this.resource = {
      group: API_GROUP,
      version: VERSION,
      namespace: o.namespace,
      plural: 'discoveryconfigs',
    };
    this.reflector = new Reflector<DiscoveryConfigObject>({
      rest: this.rest,
      path: customPath(this.resource),
      logger: this.logger,
      backoff: this.backoff,
      what: CONFIG_KIND,
      normalize: normalizeConfig,
      synced: () => this.serverSynced(),
      beforeList: () => this.readNode(),
    });
  }

  /** Resolves after the first list, or when it fails or takes over `startTimeoutMs`: then from the cache. */
  async start(): Promise<void> {
    this.loadCache();
    this.recompute();
    this.reflector.start();
    this.nodeTimer = setInterval(() => void this.readNode(), this.o.nodeRefreshMs ?? 300_000);
    this.nodeTimer.unref();
    const timeout = new AbortController();
    const listed = await Promise.race([
      this.reflector.firstAttempt,
      sleep(this.o.startTimeoutMs ?? 2_000, timeout.signal).then(() => false),
    ]);
    timeout.abort();
    if (listed || this.fromServer || this.closing.signal.aborted) return;
    this.ranFromCache = true;
    this.logger.warn(
      { configs: this.offered.map((c) => c.metadata.name) },
      'Kubernetes API unreachable; running from the cached DiscoveryConfigs',
    );
  }

  list(): DiscoveryConfigObject[] {
    return structuredClone(this.offered);
  }

  watch(listener: (configs: DiscoveryConfigObject[]) => void): () => void {
    return this.watchers.add(listener);
  }

  reportStatus(name: string, report: ConfigStatusReport): void {
    if (this.closing.signal.aborted) return;
    if (!this.offered.some((c) => c.metadata.name === name)) {
      this.logger.debug({ config: name }, 'status for a config this node does not run; ignored');
      return;
    }
    this.statusWanted.set(name, structuredClone(report));
    if (this.statusApplying.has(name)) return;
    this.drainStatus(name).catch((err: unknown) =>
      this.logger.error({ config: name, err: errorMessage(err) }, 'config status write failed'),
    );
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.reflector.stop();
    this.rest.close();
    clearInterval(this.nodeTimer);
    this.watchers.clear();
    this.statusWanted.clear();
  }

  // ------------------------------------------------------------------------------- configs and labels

  private serverSynced(): void {
    if (!this.fromServer && this.ranFromCache) {
      this.logger.info('Kubernetes API reachable again; DiscoveryConfigs from the server');
    }
    this.fromServer = true;
    this.recompute();
  }

  /** The configs this node runs, from the server (or the cache until the server answered); tells watchers. */
  private recompute(): void {
    const all = this.fromServer ? [...this.reflector.known.values()] : this.cached;
    const labels = this.labels ?? {};
    this.offered = all
      .filter((c) => nodeSelected(c.spec.nodeSelector, labels))
      .sort((a, b) => byCodeUnit(a.metadata.name, b.metadata.name));
    const cacheKey = stableJson(this.offered);
    if (this.fromServer && cacheKey !== this.cacheKey) {
      this.cacheKey = cacheKey;
      this.saveCache(this.offered);
    }
    const key = stableJson(
      this.offered.map((c) => ({ name: c.metadata.name, generation: c.metadata.generation, spec: c.spec })),
    );
    if (key === this.offeredKey) return;
    this.offeredKey = key;
    this.watchers.emit(this.offered);
  }

  /** Reads this node's labels; a failure keeps the labels known so far (a missing node has none). */
  private async readNode(): Promise<void> {
    let labels: Record<string, string>;
    try {
      const path = `/api/v1/nodes/${encodeURIComponent(this.o.node)}`;
      const node = await this.rest.call<{ metadata?: { labels?: Record<string, string> } }>({
        method: 'GET',
        path,
      });
      labels = node.metadata?.labels ?? {};
    } catch (err) {
      if (!isNotFound(err)) {
        this.logger.debug({ node: this.o.node, err: shortError(err) }, 'node labels not read');
        return;
      }
      this.logger.warn({ node: this.o.node }, 'node not found; configs with a nodeSelector are not run');
      labels = {};
    }
    if (this.closing.signal.aborted || stableJson(labels) === stableJson(this.labels)) return;
    this.labels = labels;
    this.cacheWrite(() => this.putCache(NODE_KIND, this.o.node, { metadata: { name: this.o.node, labels } }));
    this.recompute();
  }

  // ---------------------------------------------------------------------------------------- the cache

  private loadCache(): void {
    const rows = this.o.db.prepare('SELECT name, json FROM kube_cache WHERE kind = ?').all(CONFIG_KIND) as {
      name: string;
      json: string;
    }[];
    this.cached = rows.map((r) => normalizeConfig(JSON.parse(r.json) as DiscoveryConfigObject));
    const node = this.o.db
      .prepare('SELECT json FROM kube_cache WHERE kind = ? AND name = ?')
      .get(NODE_KIND, this.o.node) as { json: string } | undefined;
    if (node) {
      this.labels = (
        JSON.parse(node.json) as { metadata: { labels?: Record<string, string> } }
      ).metadata.labels;
    }
  }

  private saveCache(configs: readonly DiscoveryConfigObject[]): void {
    this.cacheWrite(() => {
      this.o.db.prepare('DELETE FROM kube_cache WHERE kind = ?').run(CONFIG_KIND);
      for (const c of configs) this.putCache(CONFIG_KIND, c.metadata.name, c);
    });
  }

  private putCache(kind: string, name: string, object: unknown): void {
    this.o.db
      .prepare('INSERT OR REPLACE INTO kube_cache (kind, name, json) VALUES (?, ?, ?)')
      .run(kind, name, JSON.stringify(object));
  }

  /** A cache write in a transaction; a failure (disk full) is logged: the agent runs on from memory. */
  private cacheWrite(fn: () => void): void {
    try {
      this.o.db.transaction(fn)();
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'could not write the Kubernetes cache');
    }
  }

  // ------------------------------------------------------------------------------------------- status

  /** Writes `name`'s wanted statuses, latest first, one at a time, until none is left. */
  private async drainStatus(name: string): Promise<void> {
    this.statusApplying.add(name);
    try {
      for (let r = this.statusWanted.get(name); r; r = this.statusWanted.get(name)) {
        this.statusWanted.delete(name);
        await this.writeStatus(name, r);
      }
    } finally {
      this.statusApplying.delete(name);
    }
  }

  /**
   * One report, retried through transient failures; abandoned when a newer one is wanted. A read-modify-write
   * of the status: the report applied to the status as read (the conditions it does not carry, such as the
   * controller's `BrokersReady`, kept), written conditional on the resourceVersion read, so a write another
   * writer made in between is never reverted: 409 → read again and apply the report to that.
   */
  private async writeStatus(name: string, report: ConfigStatusReport): Promise<void> {
    const signal = this.closing.signal;
    let base = this.storedStatus(name);
    for (let attempt = 0, conflicts = 0; !signal.aborted && !this.statusWanted.has(name); attempt++) {
      try {
        base ??= await this.readStatus(name); // after a 409: what the server holds now
        if (!base || sameStatus(base.status, report)) return;
        this.statusWritten.set(name, await this.patchStatus(name, base, report));
        return;
      } catch (err) {
        if (isConflict(err) && conflicts < STATUS_CONFLICT_RETRIES) {
          this.logger.debug({ config: name }, 'config status conflict; re-reading');
          // The first conflict re-reads at once; repeated ones back off, with jitter.
          if (conflicts++ > 0) await sleep(Math.random() * backoffDelay(conflicts, 20, 1000), signal);
          base = undefined;
          continue;
        }
        if (!this.retryable(name, err, attempt)) return;
        await sleep(backoffDelay(attempt, this.backoff.baseMs, this.backoff.maxMs), signal);
        base = this.storedStatus(name);
      }
    }
  }

  /** The report applied to `base`, merge-patched onto `/status` if the config is still at `base`'s version. */
  private async patchStatus(name: string, base: StatusBase, report: ConfigStatusReport): Promise<StatusBase> {
    const body = {
      metadata: { resourceVersion: base.resourceVersion },
      status: nextStatus(base.status, report),
    };
    const written = normalizeConfig(
      await this.rest.call<DiscoveryConfigObject>({
        method: 'PATCH',
        path: customPath(this.resource, name, 'status'),
        body,
        contentType: MERGE_PATCH,
      }),
    );
    return { resourceVersion: written.metadata.resourceVersion ?? '', status: written.status };
  }

  /** The status as the server holds it now; undefined when the config is gone. */
  private async readStatus(name: string): Promise<StatusBase | undefined> {
    try {
      // The object, not its /status: the same status, and `get` on discoveryconfigs is what the agent holds.
      const path = customPath(this.resource, name);
      const config = normalizeConfig(await this.rest.call<DiscoveryConfigObject>({ method: 'GET', path }));
      return { resourceVersion: config.metadata.resourceVersion ?? '', status: config.status };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Whether a failed status write is worth another attempt (logged either way). */
  private retryable(name: string, err: unknown, attempt: number): boolean {
    if (isNotFound(err)) {
      this.logger.debug({ config: name }, 'config gone; its status report is dropped');
      return false;
    }
    // Conflicts beyond STATUS_CONFLICT_RETRIES back off like a transient failure.
    if (!isTransient(err) && !isConflict(err)) {
      this.logger.error({ config: name, err: shortError(err) }, 'config status refused; dropped');
      return false;
    }
    this.logger.warn(
      { config: name, err: shortError(err), attempt },
      'config status write failed; will retry',
    );
    return true;
  }

  /** The status the server holds as far as we know: what it sent, or what our newer write returned. */
  private storedStatus(name: string): StatusBase | undefined {
    const all = this.fromServer ? [...this.reflector.known.values()] : this.cached;
    const config = all.find((c) => c.metadata.name === name);
    if (!config) return undefined;
    const rv = config.metadata.resourceVersion ?? '';
    const written = this.statusWritten.get(name);
    if (written && olderThan(rv, written.resourceVersion)) return written;
    this.statusWritten.delete(name);
    return { resourceVersion: rv, status: config.status };
  }
}

/** Whether a node with `labels` runs a config with this nodeSelector (every label equal; none: every node). */
export function nodeSelected(
  selector: Record<string, string> | undefined,
  labels: Record<string, string>,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** A DiscoveryConfig from the API server (or the cache) in the agent's shape: defaults filled in. */
export function normalizeConfig(o: DiscoveryConfigObject): DiscoveryConfigObject {
  const m = o.metadata;
  const spec = (o.spec ?? {}) as Partial<DiscoveryConfigObject['spec']>;
  const status = (o.status ?? {}) as Partial<Status>;
  return {
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.creationTimestamp !== undefined ? { creationTimestamp: m.creationTimestamp } : {}),
      ...(m.labels !== undefined ? { labels: m.labels } : {}),
      ...(m.annotations !== undefined ? { annotations: m.annotations } : {}),
    },
    spec: {
      ...spec,
      handler: { name: spec.handler?.name ?? '', details: spec.handler?.details ?? {} },
      capacity: spec.capacity ?? 1,
      properties: spec.properties ?? {},
    },
    status: { ...status, conditions: status.conditions ?? [], devices: status.devices ?? 0 },
  };
}
