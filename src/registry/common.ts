import type { DeviceObject } from '../model/resources.js';
import type { Db } from '../store/db.js';
import type { Clock } from '../util/clock.js';
import { LeafbridgeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { DeviceStoreEvent, LabelSelector } from './deviceStore.js';

type Requirement = { key: string; value: string; equal: boolean };

/** Parses the equality subset of a Kubernetes label selector (`a=b`, `a==b`, `a!=b`, comma-separated). */
export function parseSelector(selector: LabelSelector): Requirement[] {
  if (typeof selector !== 'string') {
    return Object.entries(selector).map(([key, value]) => ({ key, value, equal: true }));
  }
  return selector
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const m = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(part);
      if (!m) throw new LeafbridgeError('SELECTOR_INVALID', `unsupported label selector: ${part}`);
      return { key: m[1] as string, value: m[3] as string, equal: m[2] !== '!=' };
    });
}

export function matches(object: DeviceObject, requirements: readonly Requirement[]): boolean {
  const labels = object.metadata.labels ?? {};
  return requirements.every((r) => (labels[r.key] === r.value) === r.equal);
}

/** `objects` matching `selector`, sorted by name. */
export function select(objects: Iterable<DeviceObject>, selector?: LabelSelector): DeviceObject[] {
  const requirements = selector === undefined ? [] : parseSelector(selector);
  return [...objects]
    .filter((o) => matches(o, requirements))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** A store's watchers: a throwing listener is logged and does not stop the others. */
export class Listeners {
  private readonly set = new Set<(e: DeviceStoreEvent) => void>();
  constructor(private readonly logger: Logger) {}

  add(listener: (e: DeviceStoreEvent) => void): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }

  emit(e: DeviceStoreEvent): void {
    for (const l of this.set) {
      try {
        l(structuredClone(e));
      } catch (err) {
        this.logger.error({ device: e.object.metadata.name, err: String(err) }, 'device watcher failed');
      }
    }
  }

  clear(): void {
    this.set.clear();
  }
}

/** JSON with object keys sorted, to compare objects regardless of key order. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : v,
  );
}

/** An object without the fields its store sets (uid, creation time, resourceVersion), to tell real changes. */
export function unversioned(o: DeviceObject): unknown {
  const { uid: _u, creationTimestamp: _c, resourceVersion: _r, ...metadata } = o.metadata;
  return { ...o, metadata };
}

/**
 * The JSON merge patch (RFC 7386) that turns `from` into `to`: keys of `to` that differ (objects compared
 * key by key, anything else replaced whole, arrays included), and `null` for keys `from` has and `to` lacks.
 */
export function mergePatchOf(
  from: Record<string, unknown>,
  to: Record<string, unknown>,
): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(from)) if (!(key in to)) patch[key] = null;
  for (const [key, value] of Object.entries(to)) {
    const before = from[key];
    if (isPlainObject(before) && isPlainObject(value)) {
      const inner = mergePatchOf(before, value);
      if (Object.keys(inner).length > 0) patch[key] = inner;
    } else if (!(key in from) || stableJson(before) !== stableJson(value)) patch[key] = value;
  }
  return patch;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The next resourceVersion of a local collection: one counter per collection in the `meta` table. */
export function nextResourceVersion(db: Db, key: string): number {
  const row = db
    .prepare('UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ? RETURNING value')
    .get(key) as { value: string | number };
  return Number(row.value);
}

/** A timestamp as Kubernetes writes them (RFC 3339, whole seconds). */
export function kubeTime(clock: Pick<Clock, 'now'>): string {
  return new Date(clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
