import type { ControlPlane } from './controlPlane.js';

/**
 * Nodes as a kubelet keeps them, without a kubelet: the Node object with its labels, a Ready status with
 * capacity and allocatable (extended resources included, as the kubelet's device manager reports what
 * device plugins advertise), and the node Lease in kube-node-lease renewed every `heartbeatMs`, so the
 * real node-lifecycle controller sees a healthy node until `silence(name)` stops the heartbeats.
 */
export class FakeNodes {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly cp: ControlPlane,
    private readonly heartbeatMs = 2_000,
  ) {}

  async add(
    name: string,
    labels: Record<string, string> = {},
    extended: Record<string, number> = {},
  ): Promise<void> {
    const created = await this.cp.request('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...labels } },
    });
    if (created.status !== 201)
      throw new Error(`create node ${name}: ${created.status} ${JSON.stringify(created.body)}`);
    await this.setResources(name, extended);
    await this.renew(name, true);
    this.timers.set(
      name,
      setInterval(() => void this.renew(name, false).catch(() => {}), this.heartbeatMs),
    );
  }

  /** The node's extended resources (name → healthy device count), written to its status as the kubelet does. */
  async setResources(name: string, extended: Record<string, number>): Promise<void> {
    const base = { cpu: '4', memory: '8Gi', pods: '110' };
    const resources = {
      ...base,
      ...Object.fromEntries(Object.entries(extended).map(([k, v]) => [k, String(v)])),
    };
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const ready = {
      type: 'Ready',
      status: 'True',
      reason: 'KubeletReady',
      message: 'kubelet is posting ready status',
      lastHeartbeatTime: now,
      lastTransitionTime: now,
    };
    const res = await this.cp.request(
      'PATCH',
      `/api/v1/nodes/${name}/status`,
      { status: { capacity: resources, allocatable: resources, conditions: [ready] } },
      'application/strategic-merge-patch+json',
    );
    if (res.status !== 200) throw new Error(`node ${name} status: ${res.status} ${JSON.stringify(res.body)}`);
  }

  private async renew(name: string, create: boolean): Promise<void> {
    const renewTime = new Date().toISOString().replace(/Z$/, '000Z');
    const path = '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases';
    if (create) {
      const res = await this.cp.request('POST', path, {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name },
        spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime },
      });
      if (res.status !== 201 && res.status !== 409)
        throw new Error(`lease ${name}: ${res.status} ${JSON.stringify(res.body)}`);
      return;
    }
    await this.cp.request(
      'PATCH',
      `${path}/${name}`,
      { spec: { renewTime } },
      'application/merge-patch+json',
    );
  }

  /** Stops the node's heartbeats, as when its kubelet dies: the node-lifecycle controller notices after its grace. */
  silence(name: string): void {
    clearInterval(this.timers.get(name));
    this.timers.delete(name);
  }

  close(): void {
    for (const name of [...this.timers.keys()]) this.silence(name);
  }
}
