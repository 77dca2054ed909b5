import { isNotFound } from '../kubeclient/kubeApiError.js';
import type { KubeRest } from '../kubeclient/kubeRest.js';
import { type CustomResource, customPath } from '../kubeclient/paths.js';
import { Reflector } from '../kubeclient/reflector.js';
import type { DeviceObject } from '../model/resources.js';
import type { Logger } from '../util/logger.js';

/** An owner reference as Kubernetes stores it: the uid is required. */
export type OwnerRef = { apiVersion: string; kind: string; name: string; uid: string };

/** A DiscoveryConfig as far as owner references need it. */
interface ConfigMeta {
  metadata: { name: string; uid: string; resourceVersion?: string };
}

export interface ConfigOwnersOptions {
  rest: KubeRest;
  /** The Devices' resource; the configs are `discoveryconfigs` beside it. */
  resource: CustomResource;
  logger: Logger;
  backoff: { baseMs: number; maxMs: number };
  /** A config now has this uid under its name (created, or deleted and created again). */
  onNewUid: (name: string, uid: string) => void;
}

const CONFIG_KIND = 'DiscoveryConfig';

/**
 * The uids of the DiscoveryConfigs that own Devices, following the configs as they are deleted and created
 * again: a list+watch of the configs (a name not in it yet is read from the server, not remembered). The
 * garbage collector looks an owner up by uid, so a reference with the uid of a config deleted since is
 * dangling, even when a config of that name exists again: its Device would be collected. Owner references
 * of configs are therefore always written with the uid of the config that exists now.
 */
export class ConfigOwners {
  private readonly reflector: Reflector<ConfigMeta>;
  private readonly configs: CustomResource;

  constructor(private readonly o: ConfigOwnersOptions) {
    this.configs = { ...o.resource, plural: 'discoveryconfigs' };
    this.reflector = new Reflector<ConfigMeta>({
      rest: o.rest,
      path: customPath(this.configs),
      logger: o.logger,
      backoff: o.backoff,
      what: CONFIG_KIND,
      normalize: ({ metadata: m }) => ({
        metadata: { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion },
      }),
      emit: (e) => {
        const uid = e.object.metadata.uid;
        if (e.type !== 'DELETED' && uid !== e.old?.metadata.uid) o.onNewUid(e.object.metadata.name, uid);
      },
    });
  }

  start(): void {
    this.reflector.start();
  }

  stop(): void {
    this.reflector.stop();
  }

  /**
   * `want`'s owner references with the uid Kubernetes requires. A config's is its current uid, whatever
   * uid `want` carries; a config that does not exist is left out, unless `want` names its (old) uid: that
   * reference stays dangling, so the garbage collector removes the Device with its deleted config.
   */
  async of(want: DeviceObject): Promise<OwnerRef[]> {
    const out: OwnerRef[] = [];
    for (const ref of want.metadata.ownerReferences ?? []) {
      const given = (ref as { uid?: string }).uid;
      const current = ref.kind === CONFIG_KIND ? await this.uidOf(ref.name) : undefined;
      const uid = current ?? given;
      if (uid) out.push({ apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name, uid });
    }
    return out;
  }

  /** Whether `ref` names a config by a uid other than its current one (it was deleted and created again). */
  stale(ref: Partial<OwnerRef>): boolean {
    if (ref.kind !== CONFIG_KIND || !ref.name) return false;
    const uid = this.reflector.known.get(ref.name)?.metadata.uid;
    return uid !== undefined && uid !== ref.uid;
  }

  private async uidOf(name: string): Promise<string | undefined> {
    const known = this.reflector.known.get(name);
    if (known) return known.metadata.uid;
    try {
      const path = customPath(this.configs, name);
      const config = await this.o.rest.call<{ metadata: { uid: string } }>({ method: 'GET', path });
      return config.metadata.uid;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}
