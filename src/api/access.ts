/**
 * What an HTTP request to the agent needs, in the terms RBAC uses: a verb on a leafbridge.io resource
 * (`list devices`, `create discoveryconfigs`), or a verb on a path (`get /metrics`) for what is not a
 * resource. Liveness, readiness and the dashboard's static files (which hold no data) are public.
 */
export type Access =
  | { kind: 'public' }
  | { kind: 'resource'; resource: 'devices' | 'discoveryconfigs'; verb: string; name?: string }
  | { kind: 'path'; path: string; verb: string };

/** Roles of the standalone tokens file (and of anonymous requests, when the config allows them). */
export const ROLES = ['read-only', 'read-write'] as const;
export type Role = (typeof ROLES)[number];

const READ_VERBS: ReadonlySet<string> = new Set(['get', 'list', 'watch']);

/** True when the access changes nothing (a read). */
export function isRead(access: Access): boolean {
  return access.kind === 'public' || READ_VERBS.has(access.verb);
}

/** Whether `role` covers `access`: read-only covers reads, read-write everything. */
export function roleAllows(role: Role | 'none', access: Access): boolean {
  if (access.kind === 'public') return true;
  if (role === 'read-write') return true;
  return role === 'read-only' && isRead(access);
}

const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);
const RESOURCE_VERBS: Record<string, { collection: string; item: string }> = {
  GET: { collection: 'list', item: 'get' },
  HEAD: { collection: 'list', item: 'get' },
  POST: { collection: 'create', item: 'create' },
  PUT: { collection: 'update', item: 'update' },
  PATCH: { collection: 'patch', item: 'patch' },
  DELETE: { collection: 'deletecollection', item: 'delete' },
};

/** The access a request needs, from its method and path alone (before any handler runs). */
export function accessOf(method: string, pathname: string): Access {
  const read = method === 'GET' || method === 'HEAD';
  if (PUBLIC_PATHS.has(pathname) && read) return { kind: 'public' };
  if (read && (pathname === '/' || pathname === '/dashboard' || pathname.startsWith('/dashboard/')))
    return { kind: 'public' };
  const verbs = RESOURCE_VERBS[method];
  if (pathname === '/api/v1/events' && read) return { kind: 'resource', resource: 'devices', verb: 'watch' };
  if (pathname.startsWith('/api/v1/twins/') && read)
    return { kind: 'resource', resource: 'devices', verb: 'get' };
  const m = /^\/api\/v1\/(devices|discoveryconfigs)(?:\/([^/]+))?\/?$/.exec(pathname);
  if (m && verbs) {
    const resource = m[1] as 'devices' | 'discoveryconfigs';
    const name = m[2] === undefined ? undefined : safeDecode(m[2]);
    return name === undefined
      ? { kind: 'resource', resource, verb: verbs.collection }
      : { kind: 'resource', resource, verb: verbs.item, name };
  }
  // Anything else (/metrics, unknown paths): a verb on the path, as RBAC's nonResourceURLs have it.
  return { kind: 'path', path: pathname, verb: read ? 'get' : method.toLowerCase() };
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
