import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { CONTROLLER_LEASE } from '../../src/cli/controllerCommand.js';
import { LABEL_BROKER } from '../../src/controller/brokerSpec.js';
import type { KubeObject } from '../../src/kubeclient/informer.js';
import type { LeaseRecord } from '../../src/kubeclient/leaderElection.js';
import { DEFAULT_BROKER_NAMESPACE } from '../../src/model/podSecurity.js';
import { cameraName, TestCluster } from '../helpers/cluster.js';
import { RealBackend } from '../helpers/clusterBackend.js';
import { CLI, stopProcess, tempDir, waitForLine } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until } from '../helpers/wait.js';

/**
 * Two (then three) `leafbridge controller` processes with the shipped election timings (15 s lease, 10 s
 * renew deadline, 2 s retry), as the leafbridge-controller service account on the real control plane (its
 * RBAC as deploy/ grants it): exactly one holds the Lease and only it writes; SIGKILL of the leader → the
 * standby takes over after the lease expires and makes the broker of a device that came meanwhile; SIGTERM
 * of a leader → it releases the Lease and a standby takes over at its next try. The failover times are
 * printed (`failover` lines), as docs/operations.md quotes them.
 */

const POD_SPEC = { containers: [{ name: 'broker', image: 'example/broker:1' }] };

interface Replica {
  child: ChildProcess;
  identity: string;
  healthPort: number;
  stdout: string[];
}

let cluster: TestCluster | undefined;
let backend: RealBackend | undefined;
const replicas: Replica[] = [];
const dirs: { remove(): void }[] = [];

afterEach(async () => {
  for (const r of replicas.splice(0)) await stopProcess(r.child, 'SIGKILL');
  await cluster?.close();
  cluster = undefined;
  await backend?.close();
  backend = undefined;
  for (const d of dirs.splice(0)) d.remove();
});

async function startReplica(b: RealBackend, name: string): Promise<Replica> {
  const dir = tempDir('lb-leader-');
  dirs.push(dir);
  const kubeconfig = await b.kubeconfig(dir.path, 'controller');
  const child = spawn(
    process.execPath,
    [CLI, 'controller', '--kubeconfig', kubeconfig, '-n', b.namespace, '--health-addr', '127.0.0.1:0'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { PATH: process.env.PATH, LEAFBRIDGE_LOG_LEVEL: 'info', POD_NAME: name },
    },
  );
  const stdout: string[] = [];
  child.stdout?.on('data', (d: Buffer) => stdout.push(d.toString()));
  const healthPort = await waitForLine(child, (l) =>
    l.msg === 'health endpoints listening' ? (l.port as number) : undefined,
  );
  const identity = await waitForLine(child, (l) =>
    l.msg === 'controller starting as a candidate' ? (l.identity as string) : undefined,
  );
  const r = { child, identity, healthPort, stdout };
  replicas.push(r);
  return r;
}

async function lease(b: RealBackend): Promise<LeaseRecord | undefined> {
  const path = `/apis/coordination.k8s.io/v1/namespaces/${b.namespace}/leases/${CONTROLLER_LEASE}`;
  const res = await b.cp.request('GET', path);
  return res.status === 200 ? ((res.body as { spec?: LeaseRecord }).spec ?? {}) : undefined;
}

async function health(r: Replica, path: '/healthz' | '/readyz') {
  const res = await fetch(`http://127.0.0.1:${r.healthPort}${path}`);
  return { status: res.status, ...((await res.json()) as { role: string; synced: boolean }) };
}

const logged = (r: Replica, msg: string) => r.stdout.join('').includes(`"msg":"${msg}"`);

/** The broker Pods (in the broker namespace), by name, with their uids (a Pod made twice would change its uid). */
async function brokerPods(b: RealBackend): Promise<Map<string, string>> {
  const res = await b.cp.request('GET', `/api/v1/namespaces/${DEFAULT_BROKER_NAMESPACE}/pods`);
  if (res.status !== 200) throw new Error(`list pods: ${res.status} ${JSON.stringify(res.body)}`);
  const pods = (res.body as { items: KubeObject[] }).items.filter(
    (p) => p.metadata.labels?.[LABEL_BROKER] === 'pod',
  );
  return new Map(pods.map((p) => [p.metadata.name, p.metadata.uid ?? '']));
}

describeControlPlane('controller leader election on the real control plane', () => {
  it('one leader writes; SIGKILL → the standby takes over after the lease expires; SIGTERM → released, fast failover', async () => {
    backend = await RealBackend.start();
    const b = backend;
    cluster = await TestCluster.on(b, {});
    await b.addNode('n1');
    await b.create(cluster.cameras('cams', ['c1', 'c2', 'c3'], { brokerPodSpec: POD_SPEC }));
    cluster.see('n1', ['c1']);
    await cluster.startNode('n1');
    const [c1, c2, c3] = ['c1', 'c2', 'c3'].map((id) => cameraName(id));
    await until(async () => (await cluster?.deviceList())?.has(c1!) === true, 30_000, 'Device c1');

    const first = await startReplica(b, 'controller-a');
    const second = await startReplica(b, 'controller-b');
    await until(async () => (await lease(b))?.holderIdentity !== undefined, 60_000, 'a holder in the Lease');
    const holder = (await lease(b))!.holderIdentity;
    const [leader, standby] = holder === first.identity ? [first, second] : [second, first];
    expect([first.identity, second.identity]).toContain(holder);
    await until(async () => (await brokerPods(b)).has(`${c1}-pod`), 60_000, "c1's broker Pod");
    const c1Uid = (await brokerPods(b)).get(`${c1}-pod`);
    // Both healthy and ready; the leader says so, the standby waits, and has not started reconciling.
    expect(await health(leader, '/readyz')).toMatchObject({ status: 200, role: 'leader' });
    expect(await health(standby, '/healthz')).toMatchObject({
      status: 200,
      role: 'candidate',
      synced: false,
    });
    expect(await health(standby, '/readyz')).toMatchObject({ status: 200, role: 'candidate' });
    expect(logged(standby, 'caches synced; reconciling')).toBe(false);
    expect(logged(leader, 'caches synced; reconciling')).toBe(true);

    // SIGKILL: the Lease still names the dead leader; the standby waits out its 15 s, then takes over.
    const killedAt = Date.now();
    leader.child.kill('SIGKILL');
    cluster.see('n1', ['c1', 'c2']); // a device that comes while no one leads
    let leaseAt = 0;
    let podAt = 0;
    await until(
      async () => {
        if (!leaseAt && (await lease(b))?.holderIdentity === standby.identity) leaseAt = Date.now();
        if (!podAt && (await brokerPods(b)).has(`${c2}-pod`)) podAt = Date.now();
        return leaseAt > 0 && podAt > 0;
      },
      90_000,
      "the standby holding the Lease and c2's broker Pod",
    );
    expect(await health(standby, '/readyz')).toMatchObject({ status: 200, role: 'leader' });
    // The first broker was made once: the new leader found it and left it alone.
    const pods = await brokerPods(b);
    expect(pods.get(`${c1}-pod`)).toBe(c1Uid);
    expect([...pods.keys()].sort()).toEqual([`${c1}-pod`, `${c2}-pod`].sort());
    const killed = { leaseMs: leaseAt - killedAt, brokerMs: podAt - killedAt };
    // Never before the lease duration, measured on the standby's clock from the last renewal it saw.
    expect(killed.leaseMs).toBeGreaterThanOrEqual(15_000 - 2_000 * 2.2);

    // SIGTERM: the leader stops its work, releases the Lease, exits 0; a third replica takes over at its next try.
    const third = await startReplica(b, 'controller-c');
    await until(
      async () => (await health(third, '/readyz')).role === 'candidate',
      20_000,
      'a third candidate',
    );
    const before = await lease(b);
    const termAt = Date.now();
    const exited = stopProcess(standby.child, 'SIGTERM');
    cluster.see('n1', ['c1', 'c2', 'c3']);
    let releasedAt = 0;
    let termPodAt = 0;
    await until(
      async () => {
        if (!releasedAt && (await lease(b))?.holderIdentity === third.identity) releasedAt = Date.now();
        if (!termPodAt && (await brokerPods(b)).has(`${c3}-pod`)) termPodAt = Date.now();
        return releasedAt > 0 && termPodAt > 0;
      },
      90_000,
      "the third replica holding the Lease and c3's broker Pod",
    );
    expect(await exited).toBe(0);
    expect(logged(standby, 'released the lease')).toBe(true);
    expect((await lease(b))?.leaseTransitions).toBe((before?.leaseTransitions ?? 0) + 1);
    const terminated = { leaseMs: releasedAt - termAt, brokerMs: termPodAt - termAt };
    console.log(JSON.stringify({ failover: { sigkill: killed, sigterm: terminated } }));
  }, 420_000);
});
