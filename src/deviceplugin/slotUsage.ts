import type { ClusterConnection } from '../kubeclient/connection.js';
import type { KubeRest } from '../kubeclient/kubeRest.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { SlotUsage } from './manager.js';

export interface SlotUsageOptions {
  /** The kubelet's PodResources socket. */
  podResources: string;
  node: string;
  /** In a cluster, the pod list stands in when PodResources does not answer. */
  cluster: ClusterConnection | undefined;
  logger: Logger;
}

/**
 * What the device-plugin manager asks to release slots of pods that are gone: the kubelet's PodResources
 * API; where it does not answer, and in a cluster, the leafbridge resources this node's live pods request.
 */
export function slotUsage(o: SlotUsageOptions): () => Promise<SlotUsage | undefined> {
  const { logger } = o;
  let fellBack = false;
  let podRest: KubeRest | undefined;
  return async () => {
    try {
      const { listPodResources, slotsInUse } = await import('./podResources.js');
      const slots = slotsInUse(await listPodResources(o.podResources));
      fellBack = false;
      return slots;
    } catch (err) {
      const first = !fellBack;
      fellBack = true;
      if (!o.cluster) {
        // Nothing else knows which pods run here: claims stay until PodResources answers or release().
        if (first)
          logger.warn({ err: errorMessage(err) }, 'PodResources unavailable; slots are not reconciled');
        return undefined;
      }
      if (first) logger.warn({ err: errorMessage(err) }, 'PodResources unavailable; using the pod list');
      const [{ KubeRest }, { resourcesRequestedOnNode }] = await Promise.all([
        import('../kubeclient/kubeRest.js'),
        import('./podList.js'),
      ]);
      podRest ??= new KubeRest(o.cluster.kubeConfig);
      return { resources: await resourcesRequestedOnNode(podRest, o.node) };
    }
  };
}
