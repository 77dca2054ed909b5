import { API_GROUP } from '../model/resources.js';
import type { KubeObject } from './informer.js';
import { isConflict, isNotFound } from './kubeApiError.js';
import type { KubeRest } from './kubeRest.js';
import { MERGE_PATCH } from './paths.js';

export type Plural = 'pods' | 'jobs' | 'services' | 'devices' | 'discoveryconfigs' | 'nodes';

const GROUP_PATHS: Record<Plural, string> = {
  pods: '/api/v1',
  services: '/api/v1',
  nodes: '/api/v1',
  jobs: '/apis/batch/v1',
  devices: `/apis/${API_GROUP}/v1alpha1`,
  discoveryconfigs: `/apis/${API_GROUP}/v1alpha1`,
};

/** The collection's path: namespaced, except nodes. */
export function collectionPath(plural: Plural, namespace: string): string {
  return plural === 'nodes'
    ? `${GROUP_PATHS.nodes}/nodes`
    : `${GROUP_PATHS[plural]}/namespaces/${encodeURIComponent(namespace)}/${plural}`;
}

/**
 * The writes the controller makes, with the answers that are not failures folded in: a create that finds
 * the object already there says so, a delete of an object already gone (404) or already replaced by another
 * of the same name (409 on the uid precondition) is done.
 */
export class ApiWriter {
  constructor(
    private readonly rest: KubeRest,
    private readonly namespace: string,
  ) {}

  private path(plural: Plural, name?: string, status = false): string {
    const base = collectionPath(plural, this.namespace);
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}${status ? '/status' : ''}`;
  }

  async get(plural: Plural, name: string): Promise<KubeObject | undefined> {
    try {
      return await this.rest.call<KubeObject>({ method: 'GET', path: this.path(plural, name) });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Creates `body`; `exists` when an object of that name is already there (409 AlreadyExists). */
  async create(plural: Plural, body: KubeObject): Promise<KubeObject | 'exists'> {
    try {
      return await this.rest.call<KubeObject>({ method: 'POST', path: this.path(plural), body });
    } catch (err) {
      if (isConflict(err)) return 'exists';
      throw err;
    }
  }

  /**
   * Deletes exactly `o` (a uid precondition), its dependents in the background. `force`: no grace period,
   * for a pod whose node is gone (its kubelet will never confirm a graceful deletion).
   */
  async delete(plural: Plural, o: KubeObject, options: { force?: boolean } = {}): Promise<void> {
    const body = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      propagationPolicy: 'Background',
      ...(o.metadata.uid ? { preconditions: { uid: o.metadata.uid } } : {}),
      ...(options.force ? { gracePeriodSeconds: 0 } : {}),
    };
    try {
      await this.rest.call({ method: 'DELETE', path: this.path(plural, o.metadata.name), body });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }

  /** PUT: conditional on the body's resourceVersion (409 when the object changed since). */
  replace(plural: Plural, body: KubeObject): Promise<KubeObject> {
    return this.rest.call<KubeObject>({ method: 'PUT', path: this.path(plural, body.metadata.name), body });
  }

  /** A JSON merge patch of the object, or of its status subresource. */
  mergePatch(plural: Plural, name: string, patch: unknown, status = false): Promise<KubeObject> {
    return this.rest.call<KubeObject>({
      method: 'PATCH',
      path: this.path(plural, name, status),
      body: patch,
      contentType: MERGE_PATCH,
    });
  }
}
