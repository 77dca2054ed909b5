import { randomUUID } from 'node:crypto';
import type { DeviceObject } from '../model/resources.js';
import type { Clock } from '../util/clock.js';
import { kubeTime } from '../util/clock.js';
import { stableJson } from '../util/json.js';
import type { DeviceRegistry } from './deviceRegistry.js';
import type { DeviceStore, DeviceStoreEvent, LabelSelector } from './deviceStore.js';
import { select } from './selectors.js';
import { unversioned } from './versions.js';

/**
 * The in-memory DeviceRegistry behind the DeviceStore interface (tests, and agents that keep nothing):
 * a thin adapter that gives new objects their uid and creation time, as the other stores do.
 */
export class MemoryDeviceStore implements DeviceStore {
  private readonly unwatch = new Set<() => void>();

  constructor(
    private readonly registry: DeviceRegistry,
    private readonly clock: Clock,
  ) {}

  async list(selector?: LabelSelector): Promise<DeviceObject[]> {
    return select(this.registry.list(), selector).map((o) => structuredClone(o));
  }

  async get(name: string): Promise<DeviceObject | undefined> {
    const o = this.registry.get(name);
    return o && structuredClone(o);
  }

  async upsert(object: DeviceObject): Promise<DeviceObject> {
    const old = this.registry.get(object.metadata.name);
    const now = kubeTime(this.clock);
    this.registry.put(
      structuredClone({
        ...object,
        metadata: {
          ...object.metadata,
          uid: old?.metadata.uid ?? randomUUID(),
          creationTimestamp: old?.metadata.creationTimestamp ?? now,
        },
      }),
    );
    return structuredClone(this.registry.get(object.metadata.name) as DeviceObject);
  }

  async update(
    name: string,
    mutate: (current: DeviceObject | undefined) => DeviceObject | null,
  ): Promise<DeviceObject | undefined> {
    const current = this.registry.get(name);
    const next = mutate(current && structuredClone(current));
    if (next === null) {
      this.registry.delete(name);
      return undefined;
    }
    if (current && stableJson(unversioned(current)) === stableJson(unversioned(next))) {
      return structuredClone(current);
    }
    return this.upsert(next);
  }

  async delete(name: string): Promise<void> {
    this.registry.delete(name);
  }

  watch(listener: (e: DeviceStoreEvent) => void): () => void {
    const stop = this.registry.watch((e) => listener(structuredClone(e)));
    this.unwatch.add(stop);
    return () => {
      stop();
      this.unwatch.delete(stop);
    };
  }

  async close(): Promise<void> {
    for (const stop of this.unwatch) stop();
    this.unwatch.clear();
  }
}
