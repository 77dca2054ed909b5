import type { FieldError, Schema } from './kubeSchema.js';
import type { Selector } from './kubeSelectors.js';
import { errors } from './kubeStatus.js';

/**
 * The storage under the test API server: objects by resource, one resourceVersion counter for all of them
 * (like etcd's revision), a bounded history of changes for watches and for reads at an exact
 * resourceVersion, and the fan-out of changes to open watches.
 */

/** One kind of resource the server serves. */
export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** The status subresource: main-resource writes ignore status, /status writes change only status. */
  statusSubresource: boolean;
  /** A custom resource: bodies must carry apiVersion and kind, list items carry them, DELETE answers a Status. */
  custom: boolean;
  /** The CRD's openAPIV3Schema: objects are pruned, defaulted and validated against it. */
  schema?: Schema;
  /** Field selectors beyond metadata.name and metadata.namespace (pods: spec.nodeName). */
  selectableFields: string[];
  /** A built-in kind's name rule (Services: a DNS-1035 label); unset, a DNS-1123 subdomain. */
  nameErrors?: (name: string) => string[];
  /** A built-in kind's own validation of an object about to be stored (Pods, Jobs: node affinity). */
  validate?: (o: KubeObject) => FieldError[];
}

export interface ObjectMeta {
  name: string;
  generateName?: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  generation?: number;
  creationTimestamp: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface WatchEvent {
  type: EventType | 'BOOKMARK' | 'ERROR';
  object: unknown;
}

interface Change {
  rv: number;
  resource: string;
  type: EventType;
  /** The state after the change (for DELETED: the last state, with the deletion's resourceVersion). */
  object: KubeObject;
  /** The state before it; absent for ADDED. */
  prev?: KubeObject;
}

export interface Watcher {
  resource: ResourceType;
  namespace?: string;
  labelSelector: Selector;
  fieldSelector: Selector;
  send(event: WatchEvent): void;
}

export const apiVersionOf = (t: ResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);
export const resourceKey = (t: { group: string; plural: string }) => `${t.group}/${t.plural}`;
export const objectKey = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;

export class KubeStore {
  readonly types = new Map<string, ResourceType>();
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly history: Change[] = [];
  private readonly watchers = new Set<Watcher>();
  private rv = 0;
  /** Changes at or below this resourceVersion are gone: a watch or exact read from before it gets 410. */
  private compactedRv = 0;
  /** Changes made, by resource key: what tests count as API writes that changed something. */
  readonly changes = new Map<string, number>();
  /** Objects removed, by resource key, by a client or by the garbage collector alike. */
  readonly deletions = new Map<string, number>();

  constructor(private readonly historyLimit: number) {}

  register(t: ResourceType): void {
    this.types.set(resourceKey(t), t);
    if (!this.objects.has(resourceKey(t))) this.objects.set(resourceKey(t), new Map());
  }

  get currentRv(): number {
    return this.rv;
  }

  get oldestRv(): number {
    return this.compactedRv;
  }

  find(t: ResourceType, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(resourceKey(t))?.get(objectKey(namespace, name));
  }

  /** Every object of a resource (in one namespace or all), sorted by namespace/name, as stored (not copies). */
  all(t: ResourceType, namespace?: string): KubeObject[] {
    const map = this.objects.get(resourceKey(t)) ?? new Map<string, KubeObject>();
    return [...map.entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o);
  }

  /** The objects of a resource as they were at resourceVersion `at`, rebuilt from the history. */
  snapshot(t: ResourceType, at: number): KubeObject[] {
    if (at < this.compactedRv) {
      throw errors.gone(`too old resource version: ${at} (${this.compactedRv + 1})`);
    }
    const key = resourceKey(t);
    const map = new Map(this.all(t).map((o) => [objectKey(o.metadata.namespace, o.metadata.name), o]));
    for (let i = this.history.length - 1; i >= 0 && this.history[i]!.rv > at; i--) {
      const c = this.history[i]!;
      if (c.resource !== key) continue;
      const k = objectKey(c.object.metadata.namespace, c.object.metadata.name);
      if (c.prev) map.set(k, c.prev);
      else map.delete(k);
    }
    return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, o]) => o);
  }

  /** Stores a change with the next resourceVersion and tells the watches. `object` is owned by the store. */
  commit(t: ResourceType, type: EventType, object: KubeObject): KubeObject {
    const key = resourceKey(t);
    const k = objectKey(object.metadata.namespace, object.metadata.name);
    const map = this.objects.get(key)!;
    const prev = map.get(k);
    this.rv++;
    object.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') map.delete(k);
    else map.set(k, object);
    const change: Change = { rv: this.rv, resource: key, type, object, ...(prev ? { prev } : {}) };
    this.history.push(change);
    while (this.history.length > this.historyLimit) this.compactedRv = this.history.shift()!.rv;
    this.changes.set(key, (this.changes.get(key) ?? 0) + 1);
    if (type === 'DELETED') this.deletions.set(key, (this.deletions.get(key) ?? 0) + 1);
    for (const w of this.watchers) if (w.resource === t) deliver(w, change);
    return object;
  }

  /** Forgets all history up to now, as etcd compaction does: older watches and exact reads get 410 Gone. */
  compact(): number {
    this.history.length = 0;
    this.compactedRv = this.rv;
    return this.rv;
  }

  /**
   * Opens a watch. From `sinceRv` (exclusive) the history is replayed first; without it, the current objects
   * are sent as synthetic ADDED events. Throws 410 when `sinceRv` is older than the history.
   */
  watch(w: Watcher, sinceRv: number | undefined): () => void {
    if (sinceRv === undefined) {
      for (const o of this.all(w.resource, w.namespace))
        if (passes(w, o)) w.send({ type: 'ADDED', object: clone(o) });
    } else {
      if (sinceRv < this.compactedRv) {
        throw errors.gone(`too old resource version: ${sinceRv} (${this.compactedRv + 1})`);
      }
      const key = resourceKey(w.resource);
      for (const c of this.history) if (c.rv > sinceRv && c.resource === key) deliver(w, c);
    }
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  get watchCount(): number {
    return this.watchers.size;
  }
}

function passes(w: Watcher, o: KubeObject | undefined): boolean {
  if (!o) return false;
  if (w.namespace !== undefined && o.metadata.namespace !== w.namespace) return false;
  return w.labelSelector(o) && w.fieldSelector(o);
}

/** An object entering a filtered watch is ADDED to it, one leaving is DELETED from it (as the watch cache does). */
function deliver(w: Watcher, c: Change): void {
  if (c.type === 'DELETED') {
    if (passes(w, c.prev ?? c.object)) w.send({ type: 'DELETED', object: clone(c.object) });
    return;
  }
  const now = passes(w, c.object);
  const before = c.type === 'MODIFIED' && passes(w, c.prev);
  if (now && before) w.send({ type: 'MODIFIED', object: clone(c.object) });
  else if (now) w.send({ type: 'ADDED', object: clone(c.object) });
  else if (before && c.prev) {
    const gone = clone(c.prev);
    gone.metadata.resourceVersion = c.object.metadata.resourceVersion;
    w.send({ type: 'DELETED', object: gone });
  }
}

export function clone<T>(v: T): T {
  return structuredClone(v);
}
