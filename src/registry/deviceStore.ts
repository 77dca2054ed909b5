import type { DeviceObject } from '../model/resources.js';

export interface UpdateOptions {
  now?: boolean;
}

/** A change to one Device, as a Kubernetes watch reports it. */
export type DeviceStoreEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: DeviceObject };

/**
 * Equality-based label selector: `{ 'leafbridge.io/config': 'cams' }`, or its string form
 * `leafbridge.io/config=cams,tier!=x` (the `labelSelector` query parameter's equality subset).
 */
export type LabelSelector = Record<string, string> | string;

/**
 * Where the agent keeps its Device objects: the agent's SQLite (standalone) or the Kubernetes API. Every
 * backend passes test/contract/deviceStore.contract.ts.
 *
 * The store owns `metadata.uid`, `metadata.creationTimestamp` and `metadata.resourceVersion`: whatever the
 * caller puts there is ignored. Reads never wait for a remote server; they answer from the store's own view,
 * in which the caller's pending writes are already visible.
 */
export interface DeviceStore {
  /** The devices (matching `selector`), sorted by name. */
  list(selector?: LabelSelector): Promise<DeviceObject[]>;
  get(name: string): Promise<DeviceObject | undefined>;
  /**
   * Creates the device or updates its labels, owner references, spec and status. Resolves with the stored
   * object once the backend holds it (a remote backend retries through outages, so the promise may stay
   * pending that long; callers that only want the write queued need not await it).
   */
  upsert(object: DeviceObject): Promise<DeviceObject>;
  /**
   * `mutate` applied to the freshest object the backend holds, and applied again whenever a conflict shows
   * that object was stale, until the result is stored (`null`: delete the object `mutate` saw; returning
   * `current` unchanged writes nothing). Updates of one device queued before they land are composed in
   * order (`b(a(current))`), so `mutate` may be a step ("add node A") as long as applying it twice does no
   * harm. Resolves with the stored object (undefined once deleted or absent).
   *
   * `now`: for a decision that must be on the server before it is acted on (a slot claim): written at once,
   * not coalesced, and rejected with `API_UNREACHABLE` instead of queued when the server does not answer.
   */
  update(
    name: string,
    mutate: (current: DeviceObject | undefined) => DeviceObject | null,
    options?: UpdateOptions,
  ): Promise<DeviceObject | undefined>;
  /** Deletes the device (a missing one is no error); resolves once the backend no longer holds it. */
  delete(name: string): Promise<void>;
  /** Listens to changes; returns the function that stops listening. A throwing listener is contained. */
  watch(listener: (e: DeviceStoreEvent) => void): () => void;
  /** Stops background work; pending writes are abandoned (their promises reject). */
  close(): Promise<void>;
}
