/** A namespaced custom resource collection. */
export interface CustomResource {
  group: string;
  version: string;
  namespace: string;
  plural: string;
}

/**
 * The REST path of a custom resource collection, of one object in it (`name`), or of an object's
 * subresource (`status`): `/apis/leafbridge.io/v1alpha1/namespaces/ns/devices/cam-1/status`.
 */
export function customPath(r: CustomResource, name?: string, subresource?: string): string {
  const base = `/apis/${r.group}/${r.version}/namespaces/${encodeURIComponent(r.namespace)}/${r.plural}`;
  if (name === undefined) return base;
  return `${base}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
}

/** The content type of a JSON merge patch (RFC 7386), the one patch kind leafbridge sends. */
export const MERGE_PATCH = 'application/merge-patch+json';
