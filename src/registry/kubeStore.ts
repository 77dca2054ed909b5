import { setMaxListeners } from 'node:events';
import {
  ApiException,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { API_GROUP, type DeviceObject } from '../discovery/types.js';
import { backoffDelay, sleep } from '../util/clock.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { child, type Logger } from '../util/logger.js';
import { Listeners, select, stableJson } from './common.js';
import type { DeviceStore, DeviceStoreEvent, LabelSelector } from './deviceStore.js';
import { DeviceReflector, normalize } from './kubeReflector.js';

export interface KubeDeviceStoreOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  logger: Logger;
  /** Retry delays for writes and the watch (full jitter). Default 500 ms … 30 s. */
  backoff?: { baseMs: number; maxMs: number };
  /** 409 Conflicts re-read and retried in a row before the write counts as failed (and is retried later). Default 5. */
  conflictRetries?: number;
}

type Want = { op: 'upsert'; object: DeviceObject; gen: number } | { op: 'delete'; gen: number };

interface Waiter {
  gen: number;
  resolve: (o: DeviceObject | undefined) => void;
  reject: (err: Error) => void;
}

type Kube = DeviceObject & { metadata: { generation?: number } };

const VERSION = 'v1alpha1';
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const SUPERSEDED = Symbol('superseded');

/**
 * Device objects in the Kubernetes API (group leafbridge.io, plural devices, one namespace).
 *
 * Writes are per device and coalesced: at most one in flight per device, and only the latest wanted state
 * is written next, so a flapping device costs a write per burst, not per change. A write that fails for a
 * transient reason (API server down, 5xx, 429, conflicts beyond `conflictRetries`) is retried with backoff
 * and jitter until it lands, always with the newest wanted state. Spec, labels and owner references go
 * through the main resource (PUT with the resourceVersion read), status through `/status` (merge patch);
 * 409 → re-read and retry. Reads answer from the reflector's cache (list + watch) overlaid with the wanted
 * states not yet confirmed, so the agent runs on through an outage (a device the server has not yet
 * created reads with an empty uid and resourceVersion until it has).
 */
export class KubeDeviceStore implements DeviceStore {
  private readonly api: CustomObjectsApi;
  private readonly listeners: Listeners;
  private readonly reflector: DeviceReflector;
  private readonly logger: Logger;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly wanted = new Map<string, Want>();
  private readonly applying = new Map<string, Want>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly ownerUids = new Map<string, string>();
  private readonly closing = new AbortController();
  private gen = 0;
  private readonly resource: { group: string; version: string; namespace: string; plural: string };

  constructor(private readonly o: KubeDeviceStoreOptions) {
    this.api = o.kubeConfig.makeApiClient(CustomObjectsApi);
    setMaxListeners(0, this.closing.signal); // every device waiting out a backoff listens to it
    this.logger = child(o.logger, 'registry:kube');
    this.listeners = new Listeners(this.logger);
    this.backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
    this.resource = { group: API_GROUP, version: VERSION, namespace: o.namespace, plural: 'devices' };
    this.reflector = new DeviceReflector({
      kubeConfig: o.kubeConfig,
      api: this.api,
      resource: this.resource,
      listeners: this.listeners,
      logger: this.logger,
      backoff: this.backoff,
    });
  }

  /** Starts the list+watch; resolves after the first list (callers in an outage need not wait for it). */
  start(): Promise<void> {
    this.reflector.start();
    return this.reflector.firstSync;
  }

  async list(selector?: LabelSelector): Promise<DeviceObject[]> {
    const names = new Set([...this.reflector.known.keys(), ...this.wanted.keys(), ...this.applying.keys()]);
    const out: DeviceObject[] = [];
    for (const name of names) {
      const o = this.view(name);
      if (o) out.push(o);
    }
    return select(out, selector);
  }

  async get(name: string): Promise<DeviceObject | undefined> {
    return this.view(name);
  }

  upsert(object: DeviceObject): Promise<DeviceObject> {
    const copy = structuredClone(object);
    return this.enqueue(object.metadata.name, { op: 'upsert', object: copy, gen: ++this.gen }).then(
      (stored) => stored ?? copy,
    );
  }

  async delete(name: string): Promise<void> {
    await this.enqueue(name, { op: 'delete', gen: ++this.gen });
  }

  watch(listener: (e: DeviceStoreEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.reflector.stop();
    const closed = new LeafbridgeError('STORE_CLOSED', 'the device store is closed');
    for (const list of this.waiters.values()) for (const w of list) w.reject(closed);
    this.waiters.clear();
    this.listeners.clear();
  }

  /** Devices with writes not yet confirmed by the API server. */
  get pending(): number {
    return new Set([...this.wanted.keys(), ...this.applying.keys()]).size;
  }

  // ------------------------------------------------------------------------------------------ reads

  private view(name: string): DeviceObject | undefined {
    const want = this.wanted.get(name) ?? this.applying.get(name);
    const known = this.reflector.known.get(name);
    if (!want) return known && structuredClone(known);
    if (want.op === 'delete') return undefined;
    const o = structuredClone(want.object);
    o.metadata = {
      ...o.metadata,
      namespace: this.o.namespace,
      uid: known?.metadata.uid ?? '',
      creationTimestamp: known?.metadata.creationTimestamp ?? '',
      resourceVersion: known?.metadata.resourceVersion ?? '',
    };
    return o;
  }

  // ----------------------------------------------------------------------------------------- writes

  private enqueue(name: string, want: Want): Promise<DeviceObject | undefined> {
    if (this.closing.signal.aborted) {
      return Promise.reject(new LeafbridgeError('STORE_CLOSED', 'the device store is closed'));
    }
    this.wanted.set(name, want);
    const promise = new Promise<DeviceObject | undefined>((resolve, reject) => {
      const list = this.waiters.get(name) ?? [];
      list.push({ gen: want.gen, resolve, reject });
      this.waiters.set(name, list);
    });
    if (!this.applying.has(name)) void this.drain(name);
    return promise;
  }

  /** Writes `name`'s wanted states, newest first, one at a time, until none is left. */
  private async drain(name: string): Promise<void> {
    for (let want = this.wanted.get(name); want; want = this.wanted.get(name)) {
      this.wanted.delete(name);
      this.applying.set(name, want);
      try {
        const result = await this.apply(name, want);
        if (result !== SUPERSEDED) this.settle(name, want.gen, (w) => w.resolve(result));
      } catch (err) {
        if (this.closing.signal.aborted) return;
        this.logger.error({ device: name, err: errorMessage(err) }, 'device write refused; dropped');
        const e = err instanceof Error ? err : new Error(String(err));
        this.settle(name, want.gen, (w) => w.reject(e));
      } finally {
        this.applying.delete(name);
      }
    }
  }

  private settle(name: string, gen: number, fn: (w: Waiter) => void): void {
    const list = this.waiters.get(name) ?? [];
    const [done, rest] = [list.filter((w) => w.gen <= gen), list.filter((w) => w.gen > gen)];
    if (rest.length > 0) this.waiters.set(name, rest);
    else this.waiters.delete(name);
    for (const w of done) fn(w);
  }

  /** One wanted state, retried through transient failures; abandoned when a newer one is wanted. */
  private async apply(name: string, want: Want): Promise<DeviceObject | undefined | typeof SUPERSEDED> {
    const signal = this.closing.signal;
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw new LeafbridgeError('STORE_CLOSED', 'the device store is closed');
      if (this.wanted.has(name)) return SUPERSEDED;
      try {
        if (want.op === 'delete') return await this.remove(name);
        return await this.write(want.object);
      } catch (err) {
        if (!transient(err)) throw err;
        const delay = backoffDelay(attempt, this.backoff.baseMs, this.backoff.maxMs);
        this.logger.warn(
          { device: name, op: want.op, err: shortError(err), retryInMs: delay },
          'device write failed; will retry',
        );
        await sleep(delay, signal);
      }
    }
  }

  private async remove(name: string): Promise<undefined> {
    try {
      await this.api.deleteNamespacedCustomObject({ ...this.resource, name });
    } catch (err) {
      if (codeOf(err) !== 404) throw err;
    }
    await this.reflector.gone(name);
    return undefined;
  }

  /** Create or update one device; a 409 re-reads and tries again, `conflictRetries` times in a row. */
  private async write(want: DeviceObject): Promise<DeviceObject> {
    const name = want.metadata.name;
    const owners = await this.owners(want);
    let cur: Kube | undefined = this.reflector.known.get(name);
    const limit = this.o.conflictRetries ?? 5;
    for (let conflicts = 0; ; conflicts++) {
      try {
        cur ??= await this.create(want, owners);
        if (!sameMain(cur, want, owners)) cur = await this.replace(cur, want, owners);
        if (!sameStatus(cur, want)) cur = await this.patchStatus(cur, want);
        break;
      } catch (err) {
        const code = codeOf(err);
        if ((code !== 409 && code !== 404) || conflicts >= limit) throw err;
        this.logger.debug({ device: name, code }, 'device write conflict; re-reading');
        await sleep(backoffDelay(conflicts, 20, 1000), this.closing.signal);
        cur = await this.read(name);
      }
    }
    await this.reflector.seen(name, cur.metadata.resourceVersion);
    return normalize(structuredClone(cur));
  }

  private async read(name: string): Promise<Kube | undefined> {
    try {
      return (await this.api.getNamespacedCustomObject({ ...this.resource, name })) as Kube;
    } catch (err) {
      if (codeOf(err) === 404) return undefined;
      throw err;
    }
  }

  private async create(want: DeviceObject, owners: OwnerRef[]): Promise<Kube> {
    const body = {
      apiVersion: want.apiVersion,
      kind: want.kind,
      metadata: {
        name: want.metadata.name,
        labels: want.metadata.labels,
        ...(owners.length > 0 ? { ownerReferences: owners } : {}),
      },
      spec: want.spec,
    };
    return (await this.api.createNamespacedCustomObject({ ...this.resource, body })) as Kube;
  }

  private async replace(cur: Kube, want: DeviceObject, owners: OwnerRef[]): Promise<Kube> {
    const metadata = { ...cur.metadata, labels: want.metadata.labels } as Record<string, unknown>;
    if (owners.length > 0) metadata.ownerReferences = owners;
    else delete metadata.ownerReferences;
    // Fields another writer owns (spec.desired, the cloud's) are kept: only ours are replaced.
    const body = { ...cur, metadata, spec: { ...cur.spec, ...want.spec } };
    return (await this.api.replaceNamespacedCustomObject({
      ...this.resource,
      name: want.metadata.name,
      body,
    })) as Kube;
  }

  private async patchStatus(cur: Kube, want: DeviceObject): Promise<Kube> {
    // Only our status fields; the resourceVersion makes the patch conditional (409 if it changed).
    const body = { metadata: { resourceVersion: cur.metadata.resourceVersion }, status: want.status };
    return (await this.api.patchNamespacedCustomObjectStatus(
      { ...this.resource, name: want.metadata.name, body },
      mergePatch,
    )) as Kube;
  }

  /** Owner references with the uid Kubernetes requires; a DiscoveryConfig that does not exist is left out. */
  private async owners(want: DeviceObject): Promise<OwnerRef[]> {
    const out: OwnerRef[] = [];
    for (const ref of want.metadata.ownerReferences ?? []) {
      const given = (ref as { uid?: string }).uid;
      const uid = given ?? (await this.configUid(ref.name));
      if (uid) out.push({ apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name, uid });
    }
    return out;
  }

  private async configUid(name: string): Promise<string | undefined> {
    const cached = this.ownerUids.get(name);
    if (cached) return cached;
    try {
      const config = (await this.api.getNamespacedCustomObject({
        ...this.resource,
        plural: 'discoveryconfigs',
        name,
      })) as { metadata: { uid: string } };
      this.ownerUids.set(name, config.metadata.uid);
      return config.metadata.uid;
    } catch (err) {
      if (codeOf(err) === 404) return undefined;
      throw err;
    }
  }
}

type OwnerRef = { apiVersion: string; kind: string; name: string; uid: string };

function sameMain(cur: Kube, want: DeviceObject, owners: OwnerRef[]): boolean {
  const refs = (cur.metadata.ownerReferences ?? []) as Partial<OwnerRef>[];
  const curRefs = refs.map((r) => ({ apiVersion: r.apiVersion, kind: r.kind, name: r.name, uid: r.uid }));
  const curSpec = cur.spec as unknown as Record<string, unknown>;
  const ownSpec = Object.fromEntries(Object.keys(want.spec).map((k) => [k, curSpec[k]]));
  return (
    stableJson(cur.metadata.labels ?? {}) === stableJson(want.metadata.labels ?? {}) &&
    stableJson(curRefs) === stableJson(owners) &&
    stableJson(ownSpec) === stableJson(want.spec)
  );
}

function sameStatus(cur: Kube, want: DeviceObject): boolean {
  const curStatus = (cur.status ?? {}) as Record<string, unknown>;
  const ownStatus = Object.fromEntries(Object.keys(want.status).map((k) => [k, curStatus[k]]));
  return stableJson(ownStatus) === stableJson(want.status);
}

function codeOf(err: unknown): number | undefined {
  return err instanceof ApiException ? (err.code as number) : undefined;
}

/** Worth retrying: no answer at all (connection refused or cut), 409, 429 or 5xx. */
function transient(err: unknown): boolean {
  if (err instanceof LeafbridgeError) return false;
  const code = codeOf(err);
  return code === undefined || code === 404 || code === 409 || code === 429 || code >= 500;
}

function shortError(err: unknown): string {
  const code = codeOf(err);
  return code === undefined ? errorMessage(err) : `HTTP ${code}`;
}
