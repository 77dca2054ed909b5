import type { Logger } from './logger.js';

type Listener<T> = (payload: T) => void;

/**
 * Typed events between modules. Each subscription has an owner, so a module's `stop()` removes all of its
 * listeners with one call; a listener that throws is logged and does not stop the others.
 */
export class EventBus<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Map<Listener<never>, string>>();
  constructor(private readonly logger: Logger) {}

  on<K extends keyof Events>(event: K, owner: string, listener: Listener<Events[K]>): void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Map();
      this.listeners.set(event, set);
    }
    set.set(listener as Listener<never>, owner);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const [listener, owner] of set) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (err) {
        this.logger.error({ event: String(event), owner, err: String(err) }, 'event listener failed');
      }
    }
  }

  removeOwner(owner: string): void {
    for (const set of this.listeners.values()) {
      for (const [listener, o] of set) if (o === owner) set.delete(listener);
    }
  }
}
