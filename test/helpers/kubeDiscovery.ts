import type { ResourceType } from './kubeStore.js';

/**
 * The discovery documents clients read before they talk to a resource
 * (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api), in the unaggregated form
 * (a client asking for the aggregated one falls back to it), plus /version and the health endpoints.
 * Undefined when `path` is none of them.
 */
export function discoveryDocument(path: string, types: ResourceType[], port: number): unknown {
  const seg = path.split('/').filter(Boolean);
  if (path === '/version') {
    return { major: '1', minor: '31', gitVersion: 'v1.31.0-leafbridge-test', platform: 'linux/amd64' };
  }
  if (['/healthz', '/livez', '/readyz'].includes(path)) return 'ok';
  if (path === '/api') {
    return {
      kind: 'APIVersions',
      versions: ['v1'],
      serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }],
    };
  }
  if (path === '/apis') return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups(types) };
  if (seg[0] === 'apis' && seg.length === 2) return groups(types).find((g) => g.name === seg[1]);
  const gv =
    seg[0] === 'api' && seg.length === 2
      ? { group: '', version: seg[1] }
      : seg[0] === 'apis' && seg.length === 3
        ? { group: seg[1], version: seg[2] }
        : undefined;
  const served = gv ? types.filter((t) => t.group === gv.group && t.version === gv.version) : [];
  if (!gv || served.length === 0) return undefined;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: gv.group ? `${gv.group}/${gv.version}` : gv.version,
    resources: served.flatMap(apiResources),
  };
}

function groups(types: ResourceType[]) {
  const names = [...new Set(types.filter((t) => t.group).map((t) => t.group))];
  return names.map((name) => {
    const versions = [...new Set(types.filter((t) => t.group === name).map((t) => t.version))].map(
      (version) => ({ groupVersion: `${name}/${version}`, version }),
    );
    return { kind: 'APIGroup', apiVersion: 'v1', name, versions, preferredVersion: versions[0]! };
  });
}

function apiResources(t: ResourceType) {
  const main = {
    name: t.plural,
    singularName: t.singular,
    namespaced: t.namespaced,
    kind: t.kind,
    verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
    ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
    ...(t.categories.length ? { categories: t.categories } : {}),
  };
  if (!t.statusSubresource) return [main];
  const status = { name: `${t.plural}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind };
  return [main, { ...status, verbs: ['get', 'patch', 'update'] }];
}
