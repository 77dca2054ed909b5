import type { SecretKeyRef } from '../util/secretRef.js';
import { KubeApiError } from './kubeApiError.js';
import type { KubeRest } from './kubeRest.js';

/**
 * One key of a Secret in `namespace`, decoded. Throws a KubeApiError naming the Secret and key (never the
 * value) when it is missing or not readable.
 */
export async function readSecretKey(rest: KubeRest, namespace: string, ref: SecretKeyRef): Promise<string> {
  const secret = await rest.call<{ data?: Record<string, string> }>({
    method: 'GET',
    path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(ref.name)}`,
  });
  const encoded = secret.data?.[ref.key];
  if (encoded === undefined)
    throw new KubeApiError(404, 'NotFound', `secret ${namespace}/${ref.name} has no key ${ref.key}`);
  return Buffer.from(encoded, 'base64').toString('utf8');
}
