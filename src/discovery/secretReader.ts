import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClusterConnection } from '../kubeclient/connection.js';
import { LeafbridgeError } from '../util/errors.js';
import type { SecretReader } from '../util/secretRef.js';

export interface SecretReaderOptions {
  /** Standalone: secrets are the files DIR/NAME/KEY. */
  dir: string;
  /** In a cluster: Secrets of `namespace`. */
  cluster?: ClusterConnection;
  namespace: string;
}

/**
 * Where `{secretKeyRef: {name, key}}` in handler details is read: the Secret of the agent's namespace in a
 * cluster, else the file dir/NAME/KEY. Errors name the Secret and key, never a value.
 */
export async function secretReader(o: SecretReaderOptions): Promise<SecretReader> {
  if (!o.cluster) return fileSecrets(o.dir);
  // The Kubernetes client loads only in a cluster.
  const [{ KubeRest }, { readSecretKey }] = await Promise.all([
    import('../kubeclient/kubeRest.js'),
    import('../kubeclient/secrets.js'),
  ]);
  const rest = new KubeRest(o.cluster.kubeConfig, { timeoutMs: 10_000 });
  return (ref) => readSecretKey(rest, o.namespace, ref);
}

function fileSecrets(dir: string): SecretReader {
  return async ({ name, key }) => {
    try {
      return (await readFile(join(dir, name, key), 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      throw new LeafbridgeError(
        'SECRET_UNREADABLE',
        `secret ${name}/${key}: cannot read it under ${dir} (${(err as { code?: string }).code ?? 'error'})`,
      );
    }
  };
}
