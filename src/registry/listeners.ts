import type { Logger } from '../util/logger.js';
import type { DeviceStoreEvent } from './deviceStore.js';

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
