import type { DeviceObject } from '../model/resources.js';
import { byCodeUnit } from '../util/order.js';

export type DeviceEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: DeviceObject };

/**
 * The Devices this node sees now (or within the grace period), in memory, with Kubernetes-style resource
 * versions and a change feed: what the device plugins serve. Every node's Devices are in a DeviceStore.
 */
export class DeviceRegistry {
  private readonly devices = new Map<string, DeviceObject>();
  private readonly listeners = new Set<(e: DeviceEvent) => void>();
  private version = 0;

  list(): DeviceObject[] {
    return [...this.devices.values()].sort((a, b) => byCodeUnit(a.metadata.name, b.metadata.name));
  }

  /** The devices of one DiscoveryConfig, unsorted (the manager's reconcile loop). */
  byConfig(configName: string): DeviceObject[] {
    const out: DeviceObject[] = [];
    for (const d of this.devices.values()) if (d.spec.configName === configName) out.push(d);
    return out;
  }

  get(name: string): DeviceObject | undefined {
    return this.devices.get(name);
  }

  put(object: DeviceObject): void {
    const type = this.devices.has(object.metadata.name) ? 'MODIFIED' : 'ADDED';
    const stored = { ...object, metadata: { ...object.metadata, resourceVersion: String(++this.version) } };
    this.devices.set(object.metadata.name, stored);
    this.emit({ type, object: stored });
  }

  delete(name: string): void {
    const object = this.devices.get(name);
    if (!object) return;
    this.devices.delete(name);
    this.emit({ type: 'DELETED', object });
  }

  watch(listener: (e: DeviceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: DeviceEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a failing watcher must not stop discovery; watchers log their own errors
      }
    }
  }
}
