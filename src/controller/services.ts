import type { KubeObject } from '../kubeclient/informer.js';
import { stableJson } from '../util/json.js';
import type { ControllerContext, Problem } from './context.js';
import { asArray, asRecord, controllerOf, type Loose } from './objects.js';

/**
 * Makes the Service `name` match `desired` (absent: no Service wanted): created, patched when its type,
 * selector, ports or owner differ (a JSON merge patch that keeps the node ports already allocated), or
 * deleted. Fields Kubernetes fills in (clusterIP, nodePort, defaults) are not compared.
 */
export async function syncService(
  ctx: ControllerContext,
  name: string,
  current: KubeObject | undefined,
  desired: KubeObject | undefined,
  fields: Record<string, string>,
): Promise<Problem | undefined> {
  if (!desired) {
    if (current && !current.metadata.deletionTimestamp) {
      await ctx.writer.delete('services', current);
      ctx.logger.info({ ...fields, service: name }, 'broker service deleted');
    }
    return undefined;
  }
  if (!current) {
    const created = await ctx.writer.create('services', desired);
    if (created !== 'exists') {
      ctx.logger.info({ ...fields, service: name }, 'broker service created');
      return undefined;
    }
    const found = await ctx.writer.get('services', name);
    const owner = desired.metadata.ownerReferences?.[0];
    if (found && controllerOf(found)?.name !== owner?.name) {
      return {
        reason: 'NameConflict',
        message: `a Service named ${name} exists that leafbridge does not manage`,
      };
    }
    return undefined; // ours: the watch has not brought it yet
  }
  if (sameService(current, desired)) return undefined;
  await ctx.writer.mergePatch('services', name, servicePatch(current, desired));
  ctx.logger.info({ ...fields, service: name }, 'broker service updated');
  return undefined;
}

function sameService(current: KubeObject, desired: KubeObject): boolean {
  const [c, d] = [asRecord(current.spec) ?? {}, asRecord(desired.spec) ?? {}];
  const labels = current.metadata.labels ?? {};
  return (
    controllerOf(current)?.uid === desired.metadata.ownerReferences?.[0]?.uid &&
    Object.entries(desired.metadata.labels ?? {}).every(([k, v]) => labels[k] === v) &&
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
    metadata: { labels: desired.metadata.labels, ownerReferences: desired.metadata.ownerReferences },
    spec: { type: d.type, selector, ports },
  };
}
