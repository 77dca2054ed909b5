import type { Logger } from './logger.js';

type Listener<T> = (payload: T) => void;

/**
 * Typed events between modules. Each subscription has an owner, so a module's `stop()` removes all of its
 * listeners with one call; a listener that throws is logged and does not stop the others.
 */
export class EventBus<Events extends { [K in keyof Events]: unknown }> {
  private readonly byEvent = new Map<keyof Events, Map<Listener<never>, string>>();
  constructor(private readonly logger: Logger) {}

  on<K extends keyof Events>(event: K, owner: string, listener: Listener<Events[K]>): void {
    let set = this.byEvent.get(event);
    if (!set) {
      set = new Map();
      this.byEvent.set(event, set);
    }
    set.set(listener as Listener<never>, owner);
  }

  /** How many listeners `event` has now. */
  listenerCount(event: keyof Events): number {
    return this.byEvent.get(event)?.size ?? 0;
  }

  /** Calls each listener of `event`; with none, this is one map lookup. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.byEvent.get(event);
    if (set === undefined || set.size === 0) return;
    for (const [listener, owner] of set) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (err) {
        this.logger.error({ event: String(event), owner, err: String(err) }, 'event listener failed');
      }
    }
  }

  removeOwner(owner: string): void {
    for (const set of this.byEvent.values()) {
      for (const [listener, o] of set) if (o === owner) set.delete(listener);
    }
  }
}
