import type { Logger } from '../util/logger.js';
import type { KubeRest } from './kubeRest.js';
import { Reflector, type ReflectorEvent } from './reflector.js';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Any Kubernetes object as the API server sends it: plain JSON, everything but the name untrusted. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
  };
  spec?: unknown;
  status?: unknown;
}

export type InformerEvent = ReflectorEvent<KubeObject>;

export interface InformerOptions {
  rest: KubeRest;
  /** The collection: `/api/v1/namespaces/default/pods`, `/api/v1/nodes`. */
  path: string;
  labelSelector?: string;
  /** The kind in words, for logs (`broker pods`). */
  what: string;
  logger: Logger;
  backoff: { baseMs: number; maxMs: number };
  /** Each change of an object, once per resourceVersion (a re-list reports what changed meanwhile). */
  onEvent: (e: InformerEvent) => void;
  /** After each list that succeeded (the first one, and each re-list after a watch expired or failed). */
  onList?: () => void;
}

/**
 * One collection of any kind as this controller last saw it: the agents' Reflector (list, then watch from
 * its resourceVersion with bookmarks; 410 Gone re-lists and diffs, so no change is missed), listing through
 * the controller's plain-JSON client so a Pod's fields are kept as the server sent them.
 */
export class Informer extends Reflector<KubeObject> {
  constructor(o: InformerOptions) {
    super({
      rest: o.rest,
      path: o.path,
      ...(o.labelSelector ? { labelSelector: o.labelSelector } : {}),
      logger: o.logger,
      backoff: o.backoff,
      what: o.what,
      normalize: (x) => x,
      emit: o.onEvent,
      ...(o.onList ? { onList: o.onList } : {}),
    });
  }

  /** Resolves after the first list that succeeded. */
  get synced(): Promise<void> {
    return this.firstSync;
  }
}
