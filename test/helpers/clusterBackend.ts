import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdManifests } from '../../src/install/crds.js';
import { ControlPlane, type ControlPlaneOptions, INSTALL_NS } from './controlPlane.js';
import { FakeNodes } from './fakeNodes.js';
import { KubeApiServer } from './kubeApiServer.js';
import type { KubeObject } from './kubeStore.js';

/**
 * One face for the two Kubernetes API servers the scenarios run on: the test double (fast, in memory, with
 * fault injection) and the real control plane (etcd, kube-apiserver with RBAC, controller-manager,
 * scheduler). A scenario written against this runs on both, and the objects each leaves can be compared.
 */
export interface ClusterBackend {
  readonly kind: 'double' | 'real';
  /** Where Devices and DiscoveryConfigs live (the real install binds the agents' Role in `leafbridge`). */
  readonly namespace: string;
  /** A kubeconfig for one of leafbridge's components (its service account on the real server), in `dir`. */
  kubeconfig(dir: string, who: Component): Promise<string>;
  /** A Node as a kubelet registers it, Ready, with `labels` and extended resources. */
  addNode(name: string, labels?: Record<string, string>, extended?: Record<string, number>): Promise<void>;
  /** Creates `object` as the admin (namespaced kinds in this backend's namespace unless they say). */
  create(object: KubeObject | Record<string, unknown>): Promise<KubeObject>;
  /** Deletes an object as the admin (foreground propagation off: the garbage collector cascades). */
  remove(resource: Resource, name: string): Promise<void>;
  /** The objects of a resource, read as the admin. */
  list(resource: Resource): Promise<KubeObject[]>;
  close(): Promise<void>;
}

export type Component = 'agent' | 'controller' | 'hub' | 'admin';
export type Resource = 'devices' | 'discoveryconfigs' | 'pods' | 'services' | 'jobs' | 'nodes';

const SERVICE_ACCOUNTS: Record<Exclude<Component, 'admin'>, string> = {
  agent: 'leafbridge-agent',
  controller: 'leafbridge-controller',
  hub: 'leafbridge-hub',
};

/** The REST collection path of `resource` in `namespace`. */
export function collectionPath(resource: Resource, namespace: string): string {
  switch (resource) {
    case 'devices':
    case 'discoveryconfigs':
      return `/apis/leafbridge.io/v1alpha1/namespaces/${namespace}/${resource}`;
    case 'jobs':
      return `/apis/batch/v1/namespaces/${namespace}/jobs`;
    case 'nodes':
      return '/api/v1/nodes';
    default:
      return `/api/v1/namespaces/${namespace}/${resource}`;
  }
}

function resourceOf(object: Record<string, unknown>): Resource {
  const kind = object.kind as string;
  const map: Record<string, Resource> = {
    Device: 'devices',
    DiscoveryConfig: 'discoveryconfigs',
    Pod: 'pods',
    Service: 'services',
    Job: 'jobs',
    Node: 'nodes',
  };
  const r = map[kind];
  if (!r) throw new Error(`no resource for kind ${kind}`);
  return r;
}

export class DoubleBackend implements ClusterBackend {
  readonly kind = 'double';

  private constructor(
    readonly api: KubeApiServer,
    readonly namespace: string,
  ) {}

  /** The double with leafbridge's CRDs; `namespace` as the real install's to compare objects with it. */
  static async start(namespace = 'default'): Promise<DoubleBackend> {
    const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 200 });
    return new DoubleBackend(api, namespace);
  }

  async kubeconfig(dir: string): Promise<string> {
    return this.api.writeKubeconfig(dir, this.namespace);
  }

  async addNode(name: string, labels: Record<string, string> = {}, extended: Record<string, number> = {}) {
    const resources = { cpu: '4', memory: '8Gi', pods: '110', ...stringValues(extended) };
    this.api.seed('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...labels } },
      status: {
        capacity: resources,
        allocatable: resources,
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }],
      },
    });
  }

  async create(object: Record<string, unknown>): Promise<KubeObject> {
    const meta = (object.metadata ?? {}) as Record<string, unknown>;
    const namespaced = object.kind !== 'Node';
    return this.api.seed(resourceOf(object), {
      ...object,
      metadata: { ...meta, ...(namespaced ? { namespace: meta.namespace ?? this.namespace } : {}) },
    });
  }

  async remove(resource: Resource, name: string): Promise<void> {
    const res = await fetch(`${this.api.url}${collectionPath(resource, this.namespace)}/${name}`, {
      method: 'DELETE',
    });
    if (!res.ok) throw new Error(`delete ${resource}/${name}: ${res.status}`);
  }

  async list(resource: Resource): Promise<KubeObject[]> {
    return this.api.objects(resource, resource === 'nodes' ? undefined : this.namespace);
  }

  async close(): Promise<void> {
    await this.api.close();
  }
}

export class RealBackend implements ClusterBackend {
  readonly kind = 'real';
  readonly namespace = INSTALL_NS;
  readonly nodes: FakeNodes;

  private constructor(readonly cp: ControlPlane) {
    this.nodes = new FakeNodes(cp);
  }

  /** A control plane with leafbridge installed from deploy/ (CRDs, namespace, service accounts, RBAC). */
  static async start(options: ControlPlaneOptions = {}): Promise<RealBackend> {
    const cp = await ControlPlane.start(options);
    try {
      await cp.installDeploy();
      return new RealBackend(cp);
    } catch (err) {
      await cp.close();
      throw err;
    }
  }

  kubeconfig(dir: string, who: Component): Promise<string> {
    return this.cp.writeKubeconfig(
      dir,
      who === 'admin' ? 'admin' : { serviceAccount: SERVICE_ACCOUNTS[who] },
    );
  }

  addNode(name: string, labels?: Record<string, string>, extended?: Record<string, number>): Promise<void> {
    return this.nodes.add(name, labels, extended);
  }

  async create(object: Record<string, unknown>): Promise<KubeObject> {
    const resource = resourceOf(object);
    const meta = (object.metadata ?? {}) as { namespace?: string };
    const res = await this.cp.request(
      'POST',
      collectionPath(resource, meta.namespace ?? this.namespace),
      object,
    );
    if (res.status !== 201) throw new Error(`create ${resource}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as KubeObject;
  }

  async remove(resource: Resource, name: string): Promise<void> {
    const res = await this.cp.request('DELETE', `${collectionPath(resource, this.namespace)}/${name}`);
    if (res.status !== 200 && res.status !== 202) {
      throw new Error(`delete ${resource}/${name}: ${res.status} ${JSON.stringify(res.body)}`);
    }
  }

  async list(resource: Resource): Promise<KubeObject[]> {
    const res = await this.cp.request('GET', collectionPath(resource, this.namespace));
    if (res.status !== 200) throw new Error(`list ${resource}: ${res.status} ${JSON.stringify(res.body)}`);
    return (res.body as { items: KubeObject[] }).items;
  }

  async close(): Promise<void> {
    this.nodes.close();
    await this.cp.close();
  }
}

const stringValues = (o: Record<string, number>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, String(v)]));
