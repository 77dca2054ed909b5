import type { KubeObject, OwnerReference } from '../kubeclient/informer.js';
import type { Condition } from '../model/resources.js';

/**
 * The parts of the objects the controller reads, taken defensively from what the API server sent: a field
 * of the wrong type reads as absent, so a malformed object cannot throw in the middle of a reconcile.
 */

export type Loose = Record<string, unknown>;

export const asRecord = (v: unknown): Loose | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Loose) : undefined;
export const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export interface DeviceView {
  namespace: string;
  name: string;
  uid: string;
  resourceVersion: string;
  configName: string;
  nodes: string[];
  online: boolean;
  /** Milliseconds; NaN when unknown. */
  lastSeen: number;
  conditions: Condition[];
  raw: KubeObject;
}

export interface ConfigView {
  namespace: string;
  name: string;
  uid: string;
  generation: number | undefined;
  resourceVersion: string;
  spec: Loose;
  status: Loose;
  conditions: Condition[];
  raw: KubeObject;
}

export function deviceView(o: KubeObject | undefined): DeviceView | undefined {
  if (!o) return undefined;
  const spec = asRecord(o.spec) ?? {};
  const status = asRecord(o.status) ?? {};
  return {
    namespace: o.metadata.namespace ?? '',
    name: o.metadata.name,
    uid: o.metadata.uid ?? '',
    resourceVersion: o.metadata.resourceVersion ?? '',
    configName: asString(spec.configName) ?? o.metadata.labels?.['leafbridge.io/config'] ?? '',
    nodes: asArray(spec.nodes).filter((n): n is string => typeof n === 'string' && n !== ''),
    online: status.online === true,
    lastSeen: Date.parse(asString(status.lastSeen) ?? ''),
    conditions: conditionsOf(status),
    raw: o,
  };
}

export function configView(o: KubeObject | undefined): ConfigView | undefined {
  if (!o) return undefined;
  const status = asRecord(o.status) ?? {};
  return {
    namespace: o.metadata.namespace ?? '',
    name: o.metadata.name,
    uid: o.metadata.uid ?? '',
    generation: typeof o.metadata.generation === 'number' ? o.metadata.generation : undefined,
    resourceVersion: o.metadata.resourceVersion ?? '',
    spec: asRecord(o.spec) ?? {},
    status,
    conditions: conditionsOf(status),
    raw: o,
  };
}

export function conditionsOf(status: Loose): Condition[] {
  return asArray(status.conditions).filter(
    (c): c is Condition => typeof asRecord(c)?.type === 'string' && typeof asRecord(c)?.status === 'string',
  );
}

/** The phase of a Pod; a pod without one (just created) is Pending. */
export function podPhase(pod: KubeObject): string {
  return asString(asRecord(pod.status)?.phase) ?? 'Pending';
}

export function podNode(pod: KubeObject): string | undefined {
  return asString(asRecord(pod.spec)?.nodeName) || undefined;
}

/** Whether a Job has finished: its `Complete` or `Failed` condition is True. */
export function jobFinished(job: KubeObject): 'Complete' | 'Failed' | undefined {
  for (const c of asArray(asRecord(job.status)?.conditions)) {
    const r = asRecord(c);
    if (r?.status === 'True' && (r.type === 'Complete' || r.type === 'Failed')) return r.type;
  }
  return undefined;
}

export function jobActive(job: KubeObject): boolean {
  const active = asRecord(job.status)?.active;
  return typeof active === 'number' && active > 0;
}

/** The owner reference with `controller: true`, if any. */
export function controllerOf(o: KubeObject): OwnerReference | undefined {
  return o.metadata.ownerReferences?.find((r) => r?.controller === true);
}

/** A time stamp in milliseconds; NaN when absent or unreadable. */
export function timeOf(v: unknown): number {
  return typeof v === 'string' ? Date.parse(v) : Number.NaN;
}
