import { backoffDelay, sleep } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { isGone } from './kubeApiError.js';
import type { KubeRest } from './kubeRest.js';

/** What a reflector needs of an object: a name, and the resourceVersion the API server gave it. */
export interface ReflectedObject {
  metadata: { name: string; resourceVersion?: string };
}

/** A change; a MODIFIED event carries the object as it was before (`old`). */
export type ReflectorEvent<T> = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: T; old?: T };

/** A list response as the API server sends it (untrusted: checked item by item). */
export interface ListResponse {
  metadata?: { resourceVersion?: string };
  items?: unknown[];
}

export interface ReflectorOptions<T extends ReflectedObject> {
  rest: KubeRest;
  /** The collection's path, listed and watched: `/apis/leafbridge.io/v1alpha1/namespaces/ns/devices`. */
  path: string;
  labelSelector?: string;
  logger: Logger;
  backoff: { baseMs: number; maxMs: number };
  /** The kind in words, for logs and errors (`device`, `DiscoveryConfig`). */
  what: string;
  /** An object from the API server in the shape the callers use (absent fields filled in). */
  normalize: (o: T) => T;
  /** Each change of an object, once per resourceVersion. */
  emit?: (e: ReflectorEvent<T>) => void;
  /** After each list and each watch event, once `known` is up to date. */
  synced?: () => void;
  /** Before each list (e.g. re-read what the list is filtered by); a rejection fails that list attempt. */
  beforeList?: () => Promise<void>;
  /** After each list that succeeded (the first, and each re-list after a watch expired or failed). */
  onList?: () => void;
}

interface Observer {
  done: () => boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * One resource's objects as this agent last saw them on the API server: list, then watch from the list's
 * resourceVersion with bookmarks; a watch that ends is resumed from the last resourceVersion seen, and one
 * that reports 410 Gone (its history compacted away) is replaced by a fresh list, diffed against what the
 * listeners have seen, so they miss no change. Listeners hear each resourceVersion of an object once.
 */
export class Reflector<T extends ReflectedObject> {
  readonly known = new Map<string, T>();
  private readonly observers = new Set<Observer>();
  private readonly stopping = new AbortController();
  private watchAbort: AbortController | undefined;
  private resourceVersion = '';
  private needList = true;
  private resolveSynced!: () => void;
  private attempted!: (ok: boolean) => void;
  /** Resolves after the first list that succeeds. */
  readonly firstSync = new Promise<void>((resolve) => {
    this.resolveSynced = resolve;
  });
  private listedOnce = false;
  /** Resolves after the first list attempt: true when it succeeded, false when it failed. */
  readonly firstAttempt = new Promise<boolean>((resolve) => {
    this.attempted = resolve;
  });

  constructor(private readonly o: ReflectorOptions<T>) {}

  /** Whether a list has succeeded yet. */
  get hasSynced(): boolean {
    return this.listedOnce;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopping.abort();
    this.watchAbort?.abort();
    for (const ob of this.observers) ob.reject(this.closed());
    this.observers.clear();
    this.attempted(false);
  }

  /** Resolves once `name` is seen at `resourceVersion` or later (or has since been seen deleted). */
  seen(name: string, resourceVersion: string): Promise<void> {
    return this.until(() => {
      const o = this.known.get(name);
      return (
        (o !== undefined && !olderThan(o.metadata.resourceVersion ?? '', resourceVersion)) ||
        !olderThan(this.resourceVersion, resourceVersion)
      );
    });
  }

  /** Resolves once `name` is seen deleted. */
  gone(name: string): Promise<void> {
    return this.until(() => !this.known.has(name));
  }

  private closed(): Error {
    return new Error(`the ${this.o.what} store is closed`);
  }

  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    if (this.stopping.signal.aborted) return Promise.reject(this.closed());
    return new Promise((resolve, reject) => this.observers.add({ done, resolve, reject }));
  }

  private settle(): void {
    for (const ob of this.observers) {
      if (ob.done()) {
        this.observers.delete(ob);
        ob.resolve();
      }
    }
    this.o.synced?.();
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
        if (this.needList) this.attempted(false);
        const delay = backoffDelay(attempt++, this.o.backoff.baseMs, this.o.backoff.maxMs);
        this.o.logger.warn({ err: errorMessage(err), retryInMs: delay }, `${this.o.what} list/watch failed`);
        await sleep(delay, signal);
      }
    }
  }

  private async list(): Promise<void> {
    await this.o.beforeList?.();
    const query = this.o.labelSelector ? { labelSelector: this.o.labelSelector } : {};
    const res = await this.o.rest.call<ListResponse | undefined>({ method: 'GET', path: this.o.path, query });
    if (this.stopping.signal.aborted) return;
    const fresh = new Map<string, T>();
    for (const item of Array.isArray(res?.items) ? res.items : []) {
      if (named(item)) fresh.set(item.metadata.name, this.o.normalize(item as T));
    }
    for (const [name, old] of this.known) {
      if (!fresh.has(name)) this.remove(old);
    }
    for (const o of fresh.values()) this.observe(o);
    this.resourceVersion = res?.metadata?.resourceVersion ?? '';
    this.needList = false;
    this.listedOnce = true;
    this.resolveSynced();
    this.attempted(true);
    this.o.onList?.();
    this.settle();
  }

  /**
   * One watch request; resolves with the number of events when it ends cleanly, rejects on an error. A
   * watch refused with 410 Gone (its resourceVersion compacted away) re-lists, like an ERROR event.
   */
  private async watchOnce(): Promise<number> {
    let events = 0;
    const abort = new AbortController();
    this.watchAbort = abort;
    if (this.stopping.signal.aborted) abort.abort();
    const onEvent = (type: string, object: unknown) => {
      events++;
      if (this.handle(type, object)) abort.abort();
    };
    const query = {
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      // The server ends the watch after this: a connection that went half-dead is replaced in time.
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      ...(this.o.labelSelector ? { labelSelector: this.o.labelSelector } : {}),
    };
    try {
      await this.o.rest.watch({ path: this.o.path, query, onEvent, signal: abort.signal });
    } catch (err) {
      if (!isGone(err)) throw err;
      this.expired(410);
    }
    return events;
  }

  /** One watch event; true when the watch must end (it expired: re-list). */
  private handle(type: string, object: unknown): boolean {
    if (type === 'ERROR') {
      // 410 Gone (compacted) or anything else unexpected: start again from a list.
      this.expired((object as { code?: unknown } | null)?.code);
      return true;
    }
    if (type === 'BOOKMARK') {
      // Nothing changed up to its resourceVersion: the point to resume from, not an object to hand on.
      const rv = bookmarkVersion(object);
      if (rv && !olderThan(rv, this.resourceVersion)) this.resourceVersion = rv;
      this.settle();
      return false;
    }
    if (!named(object)) return false; // garbage: no object to record
    const rv = object.metadata.resourceVersion;
    if (type === 'ADDED' || type === 'MODIFIED') this.observe(this.o.normalize(object as T));
    else if (type === 'DELETED') this.remove(this.o.normalize(object as T));
    if (rv) this.resourceVersion = rv;
    this.settle();
    return false;
  }

  private expired(code: unknown): void {
    this.o.logger.info({ code }, `${this.o.what} watch expired; re-listing`);
    this.needList = true;
  }

  private observe(o: T): void {
    const old = this.known.get(o.metadata.name);
    const [rv, oldRv] = [o.metadata.resourceVersion ?? '', old?.metadata.resourceVersion ?? ''];
    if (old && (rv === oldRv || olderThan(rv, oldRv))) return;
    this.known.set(o.metadata.name, o);
    this.emit(old ? { type: 'MODIFIED', object: o, old } : { type: 'ADDED', object: o });
  }

  private remove(o: T): void {
    const old = this.known.get(o.metadata.name);
    if (!old) return;
    this.known.delete(o.metadata.name);
    this.emit({ type: 'DELETED', object: old });
  }

  private emit(e: ReflectorEvent<T>): void {
    try {
      this.o.emit?.(e);
    } catch (err) {
      this.o.logger.error(
        { err: errorMessage(err), object: e.object.metadata.name },
        `${this.o.what} event handler failed`,
      );
    }
  }
}

/**
 * A BOOKMARK's resourceVersion: the real server sends the kind with `metadata.resourceVersion` alone (and, from
 * 1.27, possibly the annotation `k8s.io/initial-events-end`); no name.
 */
function bookmarkVersion(o: unknown): string | undefined {
  const rv = (o as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' && rv !== '' ? rv : undefined;
}

/** Whether a value from the API server is an object with a name (the one thing a reflector relies on). */
function named(o: unknown): o is ReflectedObject {
  const m = (o as { metadata?: { name?: unknown } } | null)?.metadata;
  return typeof o === 'object' && o !== null && typeof m?.name === 'string' && m.name !== '';
}

/**
 * Whether resourceVersion `a` is older than `b`. Kubernetes calls them opaque; etcd (and the test server)
 * hand out increasing integers, which is what the comparison relies on; anything else compares as "not older".
 */
export function olderThan(a: string, b: string): boolean {
  const x = Number(a);
  const y = Number(b);
  return Number.isFinite(x) && Number.isFinite(y) && a !== '' && b !== '' && x < y;
}
