import type { EventBus } from '../util/events.js';

/** A device message as the sync layer saw it. */
export interface SyncedMessage {
  topic: string;
  payload: Buffer;
}

/**
 * What the sync layer tells whoever watches it (the dashboard's live feed). The bus is built with the sync
 * layer, before the broker and the bridge whose callbacks emit on it; a watcher subscribes and unsubscribes
 * at any time, and with nobody subscribed an emit costs one map lookup.
 */
export interface SyncEvents {
  /** A device message the engine accepted and stored (its PUBACK is on its way). */
  accepted: SyncedMessage;
  /** A desired twin for this device arrived from upstream. */
  desired: string;
}

export type SyncEventBus = EventBus<SyncEvents>;
