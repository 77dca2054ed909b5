import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  CustomObjectsApi,
  createConfiguration,
  type KubeConfig,
  type RequestContext,
  type SecurityAuthentication,
  ServerConfiguration,
} from '@kubernetes/client-node';

/**
 * A CustomObjectsApi whose requests share one keep-alive connection pool. client-node authenticates each
 * request by building a fresh http(s).Agent (`KubeConfig.applySecurityAuthentication`), so every request
 * opens a new TCP connection — and against a real API server a new TLS handshake: at thousands of status
 * writes a second that is most of the cost, and a TIME_WAIT socket per write. Here client-node still does
 * the authentication (tokens, exec plugins, client certificates, CA: all from the kubeconfig), and the
 * agent it built is replaced by one long-lived agent made once with the same TLS options and `keepAlive`.
 * Through a proxy (`proxy-url`) client-node's own agent is kept.
 */
export function keepAliveCustomObjects(kc: KubeConfig, maxSockets: number): CustomObjectsApi {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  let shared: HttpAgent | undefined;
  const auth: SecurityAuthentication = {
    getName: () => 'leafbridge-keepalive',
    async applySecurityAuthentication(context: RequestContext): Promise<void> {
      await kc.applySecurityAuthentication(context);
      const made = context.getAgent() as (HttpAgent & { options?: Record<string, unknown> }) | undefined;
      if (!made || cluster.proxyUrl) return;
      if (!shared) {
        const options = { ...(made.options ?? {}), keepAlive: true, maxSockets };
        shared = made instanceof HttpsAgent ? new HttpsAgent(options) : new HttpAgent(options);
      }
      made.destroy();
      context.setAgent(shared);
    },
  };
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: auth },
  });
  return new CustomObjectsApi(config);
}
