import { existsSync, readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';

const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ClusterConnection {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Where the connection came from, for the start-up log line. */
  source: string;
}

/**
 * The cluster the agent talks to, from the `kubernetes` config key: `off` none; a path, that kubeconfig;
 * `auto` the pod's service account when running in a cluster, else `$KUBECONFIG` when set, else none (the
 * agent then keeps its objects in its own store). `auto` never falls back to ~/.kube/config: a developer's
 * laptop must not start writing to whatever cluster happens to be current.
 *
 * client-node is imported only in this file (for kubeconfig loading and credentials) and only when a cluster
 * is configured: it costs ~70 MB. Every request then goes through KubeRest (kubeRest.ts).
 */
export async function clusterConnection(
  setting: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ClusterConnection | undefined> {
  if (setting === 'off') return undefined;
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST) && existsSync(`${SERVICE_ACCOUNT}/token`);
  const file = setting === 'auto' ? (inCluster ? undefined : env.KUBECONFIG) : setting;
  if (setting === 'auto' && !inCluster && !file) return undefined;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  if (file) {
    // KUBECONFIG may list several files (a:b); client-node merges them like kubectl does.
    if (file.includes(':') && setting === 'auto') kubeConfig.loadFromDefault();
    else kubeConfig.loadFromFile(file);
    const context = kubeConfig.getContextObject(kubeConfig.getCurrentContext());
    return { kubeConfig, namespace: context?.namespace || 'default', source: file };
  }
  kubeConfig.loadFromCluster();
  const namespace = readFileSync(`${SERVICE_ACCOUNT}/namespace`, 'utf8').trim() || 'default';
  return { kubeConfig, namespace, source: 'in-cluster service account' };
}

/**
 * A kubeconfig as kubectl finds it: `file`, or the usual search ($KUBECONFIG, ~/.kube/config, the in-cluster
 * service account), with its current context's namespace. For commands a user runs by hand, not the agent.
 */
export async function loadKubeConfig(file?: string): Promise<{ kubeConfig: KubeConfig; namespace: string }> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  if (file !== undefined) kubeConfig.loadFromFile(file);
  else kubeConfig.loadFromDefault();
  const context = kubeConfig.getContextObject(kubeConfig.getCurrentContext());
  return { kubeConfig, namespace: context?.namespace || 'default' };
}
