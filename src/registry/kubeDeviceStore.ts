import { setMaxListeners } from 'node:events';
import type { KubeConfig } from '@kubernetes/client-node';
import {
  isConflict,
  isForbidden,
  isNotFound,
  isTransient,
  noAnswer,
  shortError,
  statusOf,
} from '../kubeclient/kubeApiError.js';
import { KubeRest } from '../kubeclient/kubeRest.js';
import { type CustomResource, customPath, MERGE_PATCH } from '../kubeclient/paths.js';
import { Reachability } from '../kubeclient/reachability.js';
import { API_GROUP, type DeviceObject } from '../model/resources.js';
import { backoffDelay, sleep } from '../util/clock.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { mergePatchOf, stableJson } from '../util/json.js';
import { child, type Logger } from '../util/logger.js';
import { Semaphore } from '../util/semaphore.js';
import { ConfigOwners, type OwnerRef } from './configOwners.js';
import { DeviceReflector, normalize } from './deviceReflector.js';
import type { DeviceStore, DeviceStoreEvent, LabelSelector, UpdateOptions } from './deviceStore.js';
import { Listeners } from './listeners.js';
import { select } from './selectors.js';

export interface KubeDeviceStoreOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  logger: Logger;
  /** Retry delays for writes the server refused (5xx, 429) and for the watch (full jitter). Default 500 ms … 30 s. */
  backoff?: { baseMs: number; maxMs: number };
  /**
   * While the server does not answer at all, one probe asks whether it is back, with these delays; writes
   * wait for it instead of each retrying on its own. Default 250 ms … 5 s, so queued writes resume at most
   * ~5 s after the server returns, however long the outage was.
   */
  probe?: { baseMs: number; maxMs: number };
  /** Write requests in flight at once, across devices. Default 32. */
  concurrency?: number;
  /** 409 Conflicts re-read and retried in a row before the write counts as failed (and is retried later). Default 5. */
  conflictRetries?: number;
  /**
   * Changes to one device less than `quietMs` apart are one burst, written once: `quietMs` after its last
   * change, or `maxDelayMs` after its first if it does not stop. Default 200 ms / 1 s, so a device flapping
   * without end costs one write a second. `quietMs: 0` writes every change at once (still at most one in
   * flight per device).
   */
  coalesce?: { quietMs: number; maxDelayMs: number };
}

type Mutate = (current: DeviceObject | undefined) => DeviceObject | null;
interface Want {
  mutate: Mutate;
  gen: number;
}

interface Waiter {
  gen: number;
  resolve: (o: DeviceObject | undefined) => void;
  reject: (err: Error) => void;
}

type Kube = DeviceObject & { metadata: { generation?: number } };

const VERSION = 'v1alpha1';
const SUPERSEDED = Symbol('superseded');
/** How long a `now` write waits for the creation of a device not yet on the server. */
const NOW_TIMEOUT_MS = 5_000;

/** `second` applied to what `first` makes of the current object; the newer generation. */
function after(first: Want, second: Want): Want {
  return {
    mutate: (cur) => {
      const prior = first.mutate(cur);
      return second.mutate(prior === null ? undefined : prior);
    },
    gen: Math.max(first.gen, second.gen),
  };
}

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
  private readonly rest: KubeRest;
  private readonly listeners: Listeners;
  private readonly reflector: DeviceReflector;
  private readonly logger: Logger;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly wanted = new Map<string, Want>();
  private readonly applying = new Map<string, Want>();
  /** Devices whose drain loop runs (settling a burst, or writing). */
  private readonly draining = new Set<string>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly owners: ConfigOwners;
  /** Per device with an unwritten change: when the oldest and the newest of them were asked for. */
  private readonly changed = new Map<string, { first: number; last: number }>();
  /** Per device waiting out a burst: ends the wait now (a write that must land now rides along). */
  private readonly hurry = new Map<string, () => void>();
  private readonly coalesce: { quietMs: number; maxDelayMs: number };
  private readonly closing = new AbortController();
  private gen = 0;
  private readonly reachable: Reachability;
  private readonly slots: Semaphore;
  private readonly resource: CustomResource;

  constructor(private readonly o: KubeDeviceStoreOptions) {
    this.rest = new KubeRest(o.kubeConfig);
    setMaxListeners(0, this.closing.signal); // every device waiting out a backoff listens to it
    this.logger = child(o.logger, 'registry:kube');
    this.listeners = new Listeners(this.logger);
    this.backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
    this.resource = { group: API_GROUP, version: VERSION, namespace: o.namespace, plural: 'devices' };
    const probe = o.probe ?? { baseMs: 250, maxMs: 5000 };
    this.reflector = new DeviceReflector({
      rest: this.rest,
      resource: this.resource,
      listeners: this.listeners,
      logger: this.logger,
      // The watch comes back as fast as the probe: read-your-writes waits on it after an outage.
      backoff: { baseMs: Math.min(this.backoff.baseMs, probe.baseMs), maxMs: probe.maxMs },
    });
    this.owners = new ConfigOwners({
      rest: this.rest,
      resource: this.resource,
      logger: this.logger,
      backoff: this.backoff,
      onNewUid: (config) => this.adoptAll(config),
    });
    this.listeners.add((e) => {
      if (e.type !== 'DELETED') this.adopt(e.object);
    });
    this.reachable = new Reachability(
      () => this.rest.call({ method: 'GET', path: customPath(this.resource), query: { limit: 1 } }),
      probe,
      this.closing.signal,
      this.logger,
    );
    this.slots = new Semaphore(o.concurrency ?? 32);
    this.coalesce = o.coalesce ?? { quietMs: 200, maxDelayMs: 1000 };
  }

  /** Starts the list+watch; resolves after the first list (callers in an outage need not wait for it). */
  start(): Promise<void> {
    this.reflector.start();
    this.owners.start();
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
    return this.update(copy.metadata.name, () => structuredClone(copy)).then((stored) => stored ?? copy);
  }

  update(name: string, mutate: Mutate, options: UpdateOptions = {}): Promise<DeviceObject | undefined> {
    if (options.now) return this.writeNow(name, mutate);
    return this.enqueue(name, { mutate, gen: ++this.gen });
  }

  async delete(name: string): Promise<void> {
    await this.enqueue(name, { mutate: () => null, gen: ++this.gen });
  }

  watch(listener: (e: DeviceStoreEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.reflector.stop();
    this.owners.stop();
    this.rest.close();
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
    const inFlight = this.applying.get(name);
    const queued = this.wanted.get(name);
    const known = this.reflector.known.get(name);
    const want = inFlight && queued ? after(inFlight, queued) : (queued ?? inFlight);
    if (!want) return known && structuredClone(known);
    const o = want.mutate(known && structuredClone(known));
    if (o === null) return undefined;
    o.metadata = {
      ...o.metadata,
      namespace: this.o.namespace,
      uid: known?.metadata.uid ?? '',
      creationTimestamp: known?.metadata.creationTimestamp ?? '',
      resourceVersion: known?.metadata.resourceVersion ?? '',
    };
    return o;
  }

  // ----------------------------------------------------------------------------------------- owners

  /** Rewrites the owner references of the known Devices that name `config` by an old uid. */
  private adoptAll(config: string): void {
    for (const device of this.reflector.known.values()) {
      if (device.metadata.ownerReferences.some((r) => r.name === config)) this.adopt(device);
    }
  }

  /**
   * A Device whose owner reference names a config by the uid of one deleted since is written again (as it
   * is), which gives the reference the current uid: otherwise the garbage collector would collect it.
   */
  private adopt(device: DeviceObject): void {
    const refs = device.metadata.ownerReferences ?? [];
    if (!refs.some((r) => this.owners.stale(r)) || this.closing.signal.aborted) return;
    const name = device.metadata.name;
    this.logger.info({ device: name }, 'owner reference names a deleted config; taking the current one');
    this.update(name, (cur) => cur ?? null).catch((err: unknown) =>
      this.logger.warn({ device: name, err: errorMessage(err) }, 'owner reference not corrected'),
    );
  }

  // ----------------------------------------------------------------------------------------- writes

  /**
   * Queues `want` for `name`. A change not yet taken for writing is composed with it, not replaced:
   * `update(a)` then `update(b)` write `b(a(current))`, whatever the timing.
   */
  private enqueue(name: string, want: Want): Promise<DeviceObject | undefined> {
    if (this.closing.signal.aborted) {
      return Promise.reject(new LeafbridgeError('STORE_CLOSED', 'the device store is closed'));
    }
    const before = this.wanted.get(name);
    this.wanted.set(name, before ? after(before, want) : want);
    const now = performance.now();
    this.changed.set(name, { first: this.changed.get(name)?.first ?? now, last: now });
    const promise = new Promise<DeviceObject | undefined>((resolve, reject) => {
      const list = this.waiters.get(name) ?? [];
      list.push({ gen: want.gen, resolve, reject });
      this.waiters.set(name, list);
    });
    if (!this.draining.has(name)) void this.drain(name);
    return promise;
  }

  /** Writes `name`'s wanted states, one burst at a time, until none is left. */
  private async drain(name: string): Promise<void> {
    this.draining.add(name);
    try {
      while (this.wanted.has(name)) {
        await this.quiet(name);
        const want = this.wanted.get(name);
        if (!want || this.closing.signal.aborted) return;
        this.wanted.delete(name);
        this.changed.delete(name);
        this.applying.set(name, want);
        try {
          const result = await this.apply(name, want);
          if (result !== SUPERSEDED) this.settle(name, want.gen, (w) => w.resolve(result));
          else this.wanted.set(name, after(want, this.wanted.get(name) as Want)); // its change still counts
        } catch (err) {
          if (this.closing.signal.aborted) return;
          this.logger.error({ device: name, err: errorMessage(err) }, 'device write refused; dropped');
          const e = err instanceof Error ? err : new Error(String(err));
          this.settle(name, want.gen, (w) => w.reject(e));
        } finally {
          this.applying.delete(name);
        }
      }
    } finally {
      this.draining.delete(name);
    }
  }

  /** Resolves once `name`'s burst of changes is over: `quietMs` without one, or `maxDelayMs` since the first. */
  private async quiet(name: string): Promise<void> {
    const { quietMs, maxDelayMs } = this.coalesce;
    if (quietMs <= 0) return;
    for (;;) {
      const t = this.changed.get(name);
      if (!t || this.closing.signal.aborted) return;
      const wait = Math.min(t.last + quietMs, t.first + maxDelayMs) - performance.now();
      if (wait <= 0) return;
      const woken = new AbortController();
      this.hurry.set(name, () => woken.abort());
      await sleep(wait, AbortSignal.any([this.closing.signal, woken.signal]));
      this.hurry.delete(name);
    }
  }

  private settle(name: string, gen: number, fn: (w: Waiter) => void): void {
    const list = this.waiters.get(name) ?? [];
    const [done, rest] = [list.filter((w) => w.gen <= gen), list.filter((w) => w.gen > gen)];
    if (rest.length > 0) this.waiters.set(name, rest);
    else this.waiters.delete(name);
    for (const w of done) fn(w);
  }

  /**
   * A write that must land before the caller acts (slot claims): straight to the server, past the coalescing
   * and the outage queue. Conflicts re-read and re-apply `mutate` as in any write; no answer, or an error
   * that a queued write would retry, rejects with `API_UNREACHABLE` so the caller can refuse cleanly.
   */
  private async writeNow(name: string, mutate: Mutate): Promise<DeviceObject | undefined> {
    const unreachable = (why: string) =>
      new LeafbridgeError('API_UNREACHABLE', `the Kubernetes API server cannot take the write now (${why})`);
    if (this.closing.signal.aborted) throw new LeafbridgeError('STORE_CLOSED', 'the device store is closed');
    if (this.reachable.down) throw unreachable('it did not answer the last request');
    if (!this.reflector.known.has(name) && (this.wanted.has(name) || this.applying.has(name))) {
      // Not on the server yet (just discovered): ride along with its creation, which skips the burst wait.
      const queued = this.enqueue(name, { mutate, gen: ++this.gen });
      const t = this.changed.get(name);
      if (t) t.first = Number.NEGATIVE_INFINITY;
      this.hurry.get(name)?.();
      const timeout = new AbortController();
      try {
        return await Promise.race([
          queued,
          sleep(NOW_TIMEOUT_MS, timeout.signal).then(() => {
            if (timeout.signal.aborted) return undefined; // the write won the race
            throw unreachable(`the device's creation did not land within ${NOW_TIMEOUT_MS} ms`);
          }),
        ]);
      } finally {
        timeout.abort();
      }
    }
    let stored: DeviceObject | undefined;
    try {
      stored = await this.slots.run(() => this.write(name, mutate));
    } catch (err) {
      if (!retried(err)) throw err;
      if (noAnswer(err)) this.reachable.lost(shortError(err));
      throw unreachable(shortError(err));
    }
    if (stored) await this.reflector.seen(name, stored.metadata.resourceVersion);
    else await this.reflector.gone(name);
    return stored;
  }

  /** One wanted state, retried through transient failures; abandoned when a newer one is wanted. */
  private async apply(name: string, want: Want): Promise<DeviceObject | undefined | typeof SUPERSEDED> {
    const signal = this.closing.signal;
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw new LeafbridgeError('STORE_CLOSED', 'the device store is closed');
      if (this.wanted.has(name)) return SUPERSEDED;
      try {
        await this.reachable.wait();
        if (this.wanted.has(name)) return SUPERSEDED; // changed again while the server was away
        const stored = await this.slots.run(async () =>
          this.wanted.has(name) ? SUPERSEDED : await this.write(name, want.mutate),
        );
        if (stored === SUPERSEDED) return SUPERSEDED;
        // Read-your-writes: resolve once the reflector's view (what list/get answer) has caught up.
        if (stored) await this.reflector.seen(name, stored.metadata.resourceVersion);
        else await this.reflector.gone(name);
        return stored;
      } catch (err) {
        if (!retried(err)) throw err;
        if (noAnswer(err)) {
          // No answer at all: wait with every other write for the one probe to see the server back.
          if (this.reachable.lost(shortError(err))) {
            this.logger.warn({ err: shortError(err) }, 'API server unreachable; device writes queued');
          }
          continue;
        }
        const delay = backoffDelay(attempt, this.backoff.baseMs, this.backoff.maxMs);
        this.logger.warn(
          { device: name, err: shortError(err), retryInMs: delay },
          'device write failed; will retry',
        );
        await sleep(delay, signal);
      }
    }
  }

  /** Deletes exactly the object `cur` (a precondition on its resourceVersion: 409 if it changed since). */
  private async remove(cur: Kube): Promise<undefined> {
    const name = cur.metadata.name;
    try {
      await this.rest.call({
        method: 'DELETE',
        path: customPath(this.resource, name),
        body: { preconditions: { resourceVersion: cur.metadata.resourceVersion } },
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return undefined;
  }

  /**
   * `mutate` applied to the object as last seen, and the result written: created, replaced (labels, owner
   * references, our spec fields), status patched, or deleted. A 409 (or 404: deleted under us) re-reads
   * and applies `mutate` again, `conflictRetries` times in a row.
   */
  private async write(name: string, mutate: Mutate): Promise<DeviceObject | undefined> {
    let cur: Kube | undefined = this.reflector.known.get(name);
    const limit = this.o.conflictRetries ?? 5;
    for (let conflicts = 0; ; conflicts++) {
      try {
        const want = mutate(cur && structuredClone(normalize(cur)));
        if (want === null) return cur ? await this.remove(cur) : undefined;
        const owners = await this.owners.of(want);
        cur ??= await this.create(want, owners);
        if (!sameMain(cur, want, owners)) cur = await this.replace(cur, want, owners);
        if (!sameStatus(cur, want)) cur = await this.patchStatus(cur, want);
        break;
      } catch (err) {
        // A 404 too: the object was deleted under us (or its CRD is not served yet); re-read and retry.
        if (!(isConflict(err) || isNotFound(err)) || conflicts >= limit) throw err;
        this.logger.debug({ device: name, code: statusOf(err) }, 'device write conflict; re-reading');
        // The first conflict re-reads at once (the 409 itself says what to do); repeated ones back off, with
        // full jitter so writers that keep colliding fall out of step.
        if (conflicts > 0)
          await sleep(Math.random() * backoffDelay(conflicts, 20, 1000), this.closing.signal);
        cur = await this.read(name);
      }
    }
    return normalize(structuredClone(cur));
  }

  private async read(name: string): Promise<Kube | undefined> {
    try {
      return await this.rest.call<Kube>({ method: 'GET', path: customPath(this.resource, name) });
    } catch (err) {
      if (isNotFound(err)) return undefined;
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
    return await this.rest.call<Kube>({ method: 'POST', path: customPath(this.resource), body });
  }

  private async replace(cur: Kube, want: DeviceObject, owners: OwnerRef[]): Promise<Kube> {
    const metadata = { ...cur.metadata, labels: want.metadata.labels } as Record<string, unknown>;
    if (owners.length > 0) metadata.ownerReferences = owners;
    else delete metadata.ownerReferences;
    // Fields another writer owns (spec.desired, the cloud's) are kept: only ours are replaced.
    const body = { ...cur, metadata, spec: { ...cur.spec, ...want.spec } };
    return await this.rest.call<Kube>({
      method: 'PUT',
      path: customPath(this.resource, want.metadata.name),
      body,
    });
  }

  private async patchStatus(cur: Kube, want: DeviceObject): Promise<Kube> {
    // Only our status fields, as a JSON merge patch from what the server holds (a map key we dropped, such
    // as a released slot, becomes null); the resourceVersion makes it conditional (409 if it changed since).
    const status = mergePatchOf(pick(cur.status ?? {}, Object.keys(want.status)), want.status);
    const body = { metadata: { resourceVersion: cur.metadata.resourceVersion }, status };
    return await this.rest.call<Kube>({
      method: 'PATCH',
      path: customPath(this.resource, want.metadata.name, 'status'),
      body,
      contentType: MERGE_PATCH,
    });
  }
}

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

function pick(o: object, keys: readonly string[]): Record<string, unknown> {
  const from = o as Record<string, unknown>;
  return Object.fromEntries(keys.filter((k) => k in from).map((k) => [k, from[k]]));
}

function sameStatus(cur: Kube, want: DeviceObject): boolean {
  const curStatus = (cur.status ?? {}) as Record<string, unknown>;
  const ownStatus = Object.fromEntries(Object.keys(want.status).map((k) => [k, curStatus[k]]));
  return stableJson(ownStatus) === stableJson(want.status);
}

/**
 * Worth retrying: transient (no answer, 429, 5xx), and conflicts beyond `conflictRetries`. A 404 too, beyond
 * the retries of `write`: the Device resource not served yet (its CRD being established) or a Device deleted
 * again and again under us; the write lands once it can. And 401/403: a kube-apiserver that has just
 * restarted can refuse a service account until its token and RBAC caches are filled, and an operator can
 * fix a Role; a queued write waits that out with backoff instead of losing the Device.
 */
function retried(err: unknown): boolean {
  return isTransient(err) || isConflict(err) || isNotFound(err) || isForbidden(err);
}
