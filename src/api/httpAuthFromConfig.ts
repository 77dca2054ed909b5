import type { AgentConfig } from '../config/load.js';
import type { ClusterConnection } from '../kubeclient/connection.js';
import type { Logger } from '../util/logger.js';
import { HttpAuth, type HttpAuthOptions } from './httpAuth.js';
import { TokenFile } from './tokenFile.js';

export interface HttpAuthFromConfigOptions {
  auth: AgentConfig['http']['auth'];
  /** In a cluster: the API server reviews tokens and rights (RBAC) in `namespace`. */
  cluster?: ClusterConnection;
  namespace: string;
  logger: Logger;
}

/**
 * Who may use the HTTP API: the tokens file (read now, and again when it changes), and in a cluster the API
 * server's reviews. With neither and no anonymous access, only /healthz and /readyz answer: said once, at warn.
 */
export async function httpAuthFromConfig(o: HttpAuthFromConfigOptions): Promise<HttpAuth> {
  const { auth, logger } = o;
  let tokens: TokenFile | undefined;
  if (auth.tokensFile) {
    tokens = new TokenFile(auth.tokensFile, logger);
    tokens.load();
  }
  const cluster = o.cluster ? await accessReviews(o.cluster, o.namespace) : undefined;
  if (!tokens && !cluster && auth.anonymous === 'none')
    logger.warn('no http.auth.tokensFile and no cluster: the HTTP API answers only /healthz and /readyz');
  return new HttpAuth({
    logger,
    anonymous: auth.anonymous,
    cacheTtlMs: auth.cacheTtlMs,
    ...(tokens ? { tokens } : {}),
    ...(cluster ? { cluster } : {}),
  });
}

/** The Kubernetes client loads only in a cluster. */
async function accessReviews(
  cluster: ClusterConnection,
  namespace: string,
): Promise<NonNullable<HttpAuthOptions['cluster']>> {
  const [{ KubeRest }, { AccessReviews }] = await Promise.all([
    import('../kubeclient/kubeRest.js'),
    import('../kubeclient/accessReview.js'),
  ]);
  const rest = new KubeRest(cluster.kubeConfig, { timeoutMs: 10_000 });
  return { reviews: new AccessReviews(rest), namespace };
}
