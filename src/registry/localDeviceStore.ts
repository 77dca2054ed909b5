import { randomUUID } from 'node:crypto';
import type { Db } from '../database/db.js';
import type { DeviceObject } from '../model/resources.js';
import type { Clock } from '../util/clock.js';
import { kubeTime } from '../util/clock.js';
import { stableJson } from '../util/json.js';
import type { Logger } from '../util/logger.js';
import type { DeviceStore, DeviceStoreEvent, LabelSelector } from './deviceStore.js';
import { Listeners } from './listeners.js';
import { select } from './selectors.js';
import { nextResourceVersion, unversioned } from './versions.js';

export interface LocalDeviceStoreOptions {
  db: Db;
  namespace: string;
  logger: Logger;
  clock: Clock;
}

const RV_KEY = 'devices.resourceVersion';

/**
 * The standalone agent's Device objects, in its SQLite store (the `devices` table), so they survive a
 * restart. Resource versions come from one counter in `meta`, bumped in the same transaction as the write.
 */
export class LocalDeviceStore implements DeviceStore {
  private readonly listeners: Listeners;

  constructor(private readonly o: LocalDeviceStoreOptions) {
    this.listeners = new Listeners(o.logger);
  }

  async list(selector?: LabelSelector): Promise<DeviceObject[]> {
    const rows = this.o.db.prepare('SELECT json FROM devices').all() as { json: string }[];
    return select(
      rows.map((r) => JSON.parse(r.json) as DeviceObject),
      selector,
    );
  }

  async get(name: string): Promise<DeviceObject | undefined> {
    return this.read(name);
  }

  async upsert(object: DeviceObject): Promise<DeviceObject> {
    return (await this.update(object.metadata.name, () => object)) as DeviceObject;
  }

  async update(
    name: string,
    mutate: (current: DeviceObject | undefined) => DeviceObject | null,
  ): Promise<DeviceObject | undefined> {
    // One transaction: what `mutate` saw is what it changes (no other writer can come between).
    const { stored, type } = this.o.db.transaction(() => {
      const old = this.read(name);
      const object = mutate(old && structuredClone(old));
      if (object === null) {
        if (!old) return { stored: undefined, type: undefined };
        this.o.db.prepare('DELETE FROM devices WHERE name = ?').run(name);
        old.metadata.resourceVersion = String(nextResourceVersion(this.o.db, RV_KEY));
        return { stored: old, type: 'DELETED' as const };
      }
      if (old && stableJson(unversioned(old)) === stableJson(unversionedInput(object, this.o.namespace))) {
        return { stored: old, type: undefined };
      }
      const rv = nextResourceVersion(this.o.db, RV_KEY);
      const stored: DeviceObject = {
        apiVersion: object.apiVersion,
        kind: object.kind,
        metadata: {
          name,
          namespace: this.o.namespace,
          uid: old?.metadata.uid ?? randomUUID(),
          creationTimestamp: old?.metadata.creationTimestamp ?? kubeTime(this.o.clock),
          resourceVersion: String(rv),
          labels: { ...object.metadata.labels },
          ownerReferences: structuredClone(object.metadata.ownerReferences ?? []),
        },
        spec: structuredClone(object.spec),
        status: structuredClone(object.status),
      };
      this.o.db
        .prepare(
          `INSERT INTO devices (name, json, resource_version) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET json = excluded.json, resource_version = excluded.resource_version`,
        )
        .run(name, JSON.stringify(stored), rv);
      return { stored, type: old ? ('MODIFIED' as const) : ('ADDED' as const) };
    })();
    if (type && stored) this.emit({ type, object: stored });
    return type === 'DELETED' || !stored ? undefined : structuredClone(stored);
  }

  async delete(name: string): Promise<void> {
    // A deletion is a change too: the DELETED event carries a version newer than the last write.
    await this.update(name, () => null);
  }

  watch(listener: (e: DeviceStoreEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private read(name: string): DeviceObject | undefined {
    const row = this.o.db.prepare('SELECT json FROM devices WHERE name = ?').get(name) as
      | { json: string }
      | undefined;
    return row && (JSON.parse(row.json) as DeviceObject);
  }

  private emit(e: DeviceStoreEvent): void {
    this.listeners.emit(e);
  }
}

/** What `upsert` would store, minus the store's own fields, to compare with the stored object. */
function unversionedInput(o: DeviceObject, namespace: string): unknown {
  return unversioned({
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: {
      ...o.metadata,
      namespace,
      labels: { ...o.metadata.labels },
      ownerReferences: o.metadata.ownerReferences ?? [],
    },
    spec: o.spec,
    status: o.status,
  } as DeviceObject);
}
