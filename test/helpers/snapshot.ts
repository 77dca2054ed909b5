import type { KubeObject } from './kubeStore.js';

/**
 * An object as a comparison between API servers sees it: what each server makes up (uids, resource
 * versions, timestamps, managed fields, generated names) taken out, everything leafbridge wrote kept.
 */
export function comparable(o: KubeObject): Record<string, unknown> {
  const { uid, resourceVersion, creationTimestamp, managedFields, generation, selfLink, ...meta } =
    o.metadata as KubeObject['metadata'] & Record<string, unknown>;
  void [uid, resourceVersion, creationTimestamp, managedFields, generation, selfLink];
  const owners = (meta.ownerReferences as Record<string, unknown>[] | undefined)?.map(
    ({ uid: _u, ...r }) => r,
  );
  return scrub({
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: { ...meta, ...(owners ? { ownerReferences: owners } : {}) },
    spec: o.spec,
    status: o.status,
  }) as Record<string, unknown>;
}

const TIME_KEYS = new Set(['lastSeen', 'lastTransitionTime', 'since', 'lastHeartbeatTime', 'observedAt']);

function scrub(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(scrub);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k, v]) => v !== undefined && !TIME_KEYS.has(k))
        .map(([k, v]) => [k, scrub(v)]),
    );
  }
  return value;
}

/** Objects by name, comparable. */
export const comparableByName = (objects: KubeObject[]): Record<string, Record<string, unknown>> =>
  Object.fromEntries(
    objects.map((o) => [o.metadata.name, comparable(o)] as const).sort(([a], [b]) => a.localeCompare(b)),
  );
