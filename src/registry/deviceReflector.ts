import type { KubeRest } from '../kubeclient/kubeRest.js';
import { type CustomResource, customPath } from '../kubeclient/paths.js';
import { Reflector } from '../kubeclient/reflector.js';
import type { DeviceObject } from '../model/resources.js';
import type { Logger } from '../util/logger.js';
import type { Listeners } from './listeners.js';

/** The options the device store passes (its listeners hear each Device change). */
export interface DeviceReflectorOptions {
  rest: KubeRest;
  resource: CustomResource;
  listeners: Listeners;
  logger: Logger;
  backoff: { baseMs: number; maxMs: number };
}

/** The API server's Devices, for the Kubernetes-backed device store. */
export class DeviceReflector extends Reflector<DeviceObject> {
  constructor(o: DeviceReflectorOptions) {
    const { listeners, resource, ...rest } = o;
    super({
      ...rest,
      path: customPath(resource),
      what: 'device',
      normalize,
      emit: (e) => listeners.emit({ type: e.type, object: e.object }),
    });
  }
}

/** An object from the API server in the DeviceObject shape (absent lists and status filled in). */
export function normalize(o: DeviceObject): DeviceObject {
  return {
    ...o,
    metadata: {
      ...o.metadata,
      labels: o.metadata.labels ?? {},
      ownerReferences: o.metadata.ownerReferences ?? [],
    },
    status: { ...{ online: false, conditions: [] }, ...(o.status ?? {}) } as DeviceObject['status'],
  };
}
