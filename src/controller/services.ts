import type { KubeObject } from '../kubeclient/informer.js';
import { stableJson } from '../util/json.js';
import { brokerOwnerOf } from './brokerSpec.js';
import type { BrokerSpace, ControllerContext, Problem } from './context.js';
import { asArray, asRecord, type Loose } from './objects.js';

/**
 * Makes the Service `name` of the broker namespace `space` match `desired` (absent: no Service wanted): created, patched when its type,
 * selector, ports or owner differ (a JSON merge patch that keeps the node ports already allocated), or
 * deleted. Fields Kubernetes fills in (clusterIP, nodePort, defaults) are not compared.
 */
export async function syncService(
  ctx: ControllerContext,
  space: BrokerSpace,
  name: string,
  current: KubeObject | undefined,
  desired: KubeObject | undefined,
  fields: Record<string, string>,
): Promise<Problem | undefined> {
  if (!desired) {
    if (current && !current.metadata.deletionTimestamp) {
      await space.writer.delete('services', current);
      ctx.logger.info({ ...fields, namespace: space.namespace, service: name }, 'broker service deleted');
    }
    return undefined;
  }
  if (!current) {
    const created = await space.writer.create('services', desired);
    if (created !== 'exists') {
      ctx.logger.info({ ...fields, namespace: space.namespace, service: name }, 'broker service created');
      return undefined;
    }
    const found = await space.writer.get('services', name);
    const [had, want] = [found && brokerOwnerOf(found), brokerOwnerOf(desired)];
    if (
      found &&
      (had?.kind !== want?.kind || had?.namespace !== want?.namespace || had?.name !== want?.name)
    ) {
      return {
        reason: 'NameConflict',
        message: `a Service named ${name} exists that leafbridge does not manage`,
      };
    }
    return undefined; // ours: the watch has not brought it yet
  }
  if (sameService(current, desired)) return undefined;
  await space.writer.mergePatch('services', name, servicePatch(current, desired));
  ctx.logger.info({ ...fields, namespace: space.namespace, service: name }, 'broker service updated');
  return undefined;
}

function sameService(current: KubeObject, desired: KubeObject): boolean {
  const [c, d] = [asRecord(current.spec) ?? {}, asRecord(desired.spec) ?? {}];
  const labels = current.metadata.labels ?? {};
  const annotations = current.metadata.annotations ?? {};
  return (
    Object.entries(desired.metadata.labels ?? {}).every(([k, v]) => labels[k] === v) &&
    Object.entries(desired.metadata.annotations ?? {}).every(([k, v]) => annotations[k] === v) &&
    (c.type ?? 'ClusterIP') === d.type &&
    stableJson(c.selector ?? {}) === stableJson(d.selector) &&
    stableJson(comparable(c.ports)) === stableJson(comparable(d.ports))
  );
}

function comparable(ports: unknown): unknown[] {
  return asArray(ports).map((p) => {
    const r = asRecord(p) ?? {};
    return {
      name: r.name ?? '',
      port: r.port,
      targetPort: r.targetPort ?? r.port,
      protocol: r.protocol ?? 'TCP',
    };
  });
}

function servicePatch(current: KubeObject, desired: KubeObject): Loose {
  const c = asRecord(current.spec) ?? {};
  const d = asRecord(desired.spec) ?? {};
  const selector: Loose = { ...(d.selector as Loose) };
  for (const key of Object.keys(asRecord(c.selector) ?? {})) if (!(key in selector)) selector[key] = null;
  const keepNodePorts = d.type !== 'ClusterIP';
  const ports = asArray(d.ports).map((p) => {
    const want = asRecord(p) ?? {};
    const had = asArray(c.ports)
      .map((x) => asRecord(x) ?? {})
      .find((x) => (want.name ? x.name === want.name : x.port === want.port));
    return keepNodePorts && typeof had?.nodePort === 'number' ? { ...want, nodePort: had.nodePort } : want;
  });
  return {
    metadata: { labels: desired.metadata.labels, annotations: desired.metadata.annotations },
    spec: { type: d.type, selector, ports },
  };
}
