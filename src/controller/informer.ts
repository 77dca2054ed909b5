import { type KubeConfig, Watch } from '@kubernetes/client-node';
import { backoffDelay, sleep } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { KubeRest } from './kubeRest.js';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Any Kubernetes object as the API server sends it: plain JSON, everything but the name untrusted. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
  };
  spec?: unknown;
  status?: unknown;
}

export type InformerEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: KubeObject; old?: KubeObject };

export interface InformerOptions {
  rest: KubeRest;
  kubeConfig: KubeConfig;
  /** The collection: `/api/v1/namespaces/default/pods`, `/api/v1/nodes`. */
  path: string;
  labelSelector?: string;
  /** The kind in words, for logs (`broker pods`). */
  what: string;
  logger: Logger;
  backoff: { baseMs: number; maxMs: number };
  /** Each change of an object, once per resourceVersion (a re-list reports what changed meanwhile). */
  onEvent: (e: InformerEvent) => void;
  /** After each list that succeeded (the first one, and each re-list after a watch expired or failed). */
  onList?: () => void;
}

/**
 * One collection as this controller last saw it: list, then watch from the list's resourceVersion (with
 * bookmarks, and a server-side timeout so a half-dead connection is replaced); a watch that ends is resumed
 * from the last resourceVersion seen, and one that reports an error (410 Gone: history compacted) is replaced
 * by a fresh list, diffed against the cache so no change is missed. Failures back off with full jitter.
 * (src/registry/kubeReflector.ts does the same for the agents' custom resources only.)
 */
export class Informer {
  readonly known = new Map<string, KubeObject>();
  private readonly stopping = new AbortController();
  private watchAbort: AbortController | undefined;
  private resourceVersion = '';
  private needList = true;
  private listedOnce = false;
  private resolveSynced!: () => void;
  /** Resolves after the first list that succeeded. */
  readonly synced = new Promise<void>((resolve) => {
    this.resolveSynced = resolve;
  });

  constructor(private readonly o: InformerOptions) {}

  get hasSynced(): boolean {
    return this.listedOnce;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopping.abort();
    this.watchAbort?.abort();
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    let attempt = 0;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        if (this.needList) await this.list();
        const events = await this.watchOnce();
        if (events > 0 || Date.now() - started > 1000) attempt = 0;
        else await sleep(backoffDelay(attempt++, this.o.backoff.baseMs, this.o.backoff.maxMs), signal);
      } catch (err) {
        if (signal.aborted) return;
        const delay = backoffDelay(attempt++, this.o.backoff.baseMs, this.o.backoff.maxMs);
        this.o.logger.warn({ err: errorMessage(err), retryInMs: delay }, `${this.o.what}: list/watch failed`);
        await sleep(delay, signal);
      }
    }
  }

  private async list(): Promise<void> {
    const res = await this.o.rest.call<{ metadata?: { resourceVersion?: string }; items?: unknown[] }>({
      method: 'GET',
      path: this.o.path,
      query: { labelSelector: this.o.labelSelector },
    });
    if (this.stopping.signal.aborted) return;
    const fresh = new Map<string, KubeObject>();
    for (const item of Array.isArray(res.items) ? res.items : []) {
      if (isKubeObject(item)) fresh.set(item.metadata.name, item);
    }
    for (const [name, old] of this.known) if (!fresh.has(name)) this.remove(old);
    for (const o of fresh.values()) this.observe(o);
    this.resourceVersion = res.metadata?.resourceVersion ?? '';
    this.needList = false;
    this.listedOnce = true;
    this.resolveSynced();
    this.o.onList?.();
  }

  /** One watch request; resolves with the number of events when it ends, rejects on an error. */
  private watchOnce(): Promise<number> {
    let events = 0;
    return new Promise<number>((resolve, reject) => {
      const onEvent = (type: string, object: unknown) => {
        events++;
        if (type === 'ERROR') {
          // 410 Gone (compacted) or anything else unexpected: start again from a list.
          this.o.logger.info({ code: (object as { code?: unknown })?.code }, `${this.o.what}: watch expired`);
          this.needList = true;
          this.watchAbort?.abort();
          return;
        }
        if (!isKubeObject(object)) return;
        if (type === 'ADDED' || type === 'MODIFIED') this.observe(object);
        else if (type === 'DELETED') this.remove(object);
        if (object.metadata.resourceVersion) this.resourceVersion = object.metadata.resourceVersion;
      };
      const done = (err: unknown) => (err && !this.needList ? reject(err) : resolve(events));
      const params = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
        labelSelector: this.o.labelSelector,
      };
      new Watch(this.o.kubeConfig).watch(this.o.path, params, onEvent, done).then((controller) => {
        this.watchAbort = controller;
        if (this.stopping.signal.aborted) controller.abort();
      }, reject);
    });
  }

  private observe(o: KubeObject): void {
    const old = this.known.get(o.metadata.name);
    if (old && old.metadata.resourceVersion === o.metadata.resourceVersion) return;
    this.known.set(o.metadata.name, o);
    this.emit({ type: old ? 'MODIFIED' : 'ADDED', object: o, ...(old ? { old } : {}) });
  }

  private remove(o: KubeObject): void {
    const old = this.known.get(o.metadata.name);
    if (!old) return;
    this.known.delete(o.metadata.name);
    this.emit({ type: 'DELETED', object: old });
  }

  private emit(e: InformerEvent): void {
    try {
      this.o.onEvent(e);
    } catch (err) {
      this.o.logger.error({ err: errorMessage(err), object: e.object.metadata.name }, 'event handler failed');
    }
  }
}

function isKubeObject(o: unknown): o is KubeObject {
  const m = (o as { metadata?: { name?: unknown } } | null)?.metadata;
  return typeof o === 'object' && o !== null && typeof m?.name === 'string' && m.name !== '';
}
