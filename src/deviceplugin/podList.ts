import type { KubeRest } from '../kubeclient/kubeRest.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { LEAFBRIDGE_RESOURCE_PREFIX } from './podResources.js';

/** Pods in these phases have stopped for good: the kubelet has let go of their devices. */
const FINISHED_PHASES: ReadonlySet<string> = new Set(['Succeeded', 'Failed']);

type Loose = Record<string, unknown>;

const asRecord = (v: unknown): Loose | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Loose) : undefined;
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * The fallback when the PodResources API is unavailable: the extended resources (names starting with
 * `prefix`) that pods on `node` ask for in the limits or requests of their containers or init containers,
 * whatever the quantity. Pods that have finished (Succeeded, Failed) are left out. The API server only says
 * which resources a pod holds, not which devices: a resource listed here keeps all its claimed slots.
 * Malformed pods are skipped; a failed list is a `PODLIST_UNAVAILABLE`.
 */
export async function resourcesRequestedOnNode(
  rest: KubeRest,
  node: string,
  prefix = LEAFBRIDGE_RESOURCE_PREFIX,
): Promise<Set<string>> {
  let items: unknown;
  try {
    const query = { fieldSelector: `spec.nodeName=${node}` };
    items = (await rest.call<{ items?: unknown }>({ method: 'GET', path: '/api/v1/pods', query })).items;
  } catch (err) {
    throw new LeafbridgeError(
      'PODLIST_UNAVAILABLE',
      `listing the pods of node ${node} failed: ${errorMessage(err)}`,
      { cause: err },
    );
  }
  const names = new Set<string>();
  for (const pod of asArray(items)) {
    for (const name of requestedResources(pod)) if (name.startsWith(prefix)) names.add(name);
  }
  return names;
}

/** The resource names in a running or pending pod's container limits and requests; none for anything else. */
function requestedResources(pod: unknown): string[] {
  const p = asRecord(pod);
  const phase = asRecord(p?.status)?.phase;
  if (!p || (typeof phase === 'string' && FINISHED_PHASES.has(phase))) return [];
  const spec = asRecord(p.spec);
  const containers = [...asArray(spec?.initContainers), ...asArray(spec?.containers)];
  return containers.flatMap((c) => {
    const resources = asRecord(asRecord(c)?.resources);
    return [
      ...Object.keys(asRecord(resources?.limits) ?? {}),
      ...Object.keys(asRecord(resources?.requests) ?? {}),
    ];
  });
}
