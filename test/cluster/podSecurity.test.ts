import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, expect, it } from 'vitest';
import { BrokerController } from '../../src/controller/brokerController.js';
import { deviceResource } from '../../src/controller/brokerSpec.js';
import { PodSecurityAllowance } from '../../src/controller/podSecurity.js';
import { defaultInstallOptions } from '../../src/install/manifests.js';
import { brokerRbac } from '../../src/install/rbac.js';
import { brokerNamespaceManifest } from '../../src/install/workloads.js';
import { brokerNamespace, DEFAULT_BROKER_NAMESPACE } from '../../src/model/podSecurity.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { cameraName, TestCluster } from '../helpers/cluster.js';
import { RealBackend } from '../helpers/clusterBackend.js';
import type { KubeObject } from '../helpers/kubeStore.js';
import { tempDir } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until } from '../helpers/wait.js';

/**
 * Broker Pods in their own namespace under Pod Security Admission, on the real control plane (the
 * PodSecurity admission plugin is on by default) with the controller as its own service account and the
 * RBAC of deploy/: the restricted namespace of the install, its label enforced by the API server, the
 * restricted defaults the controller fills in, a privileged broker refused or admitted by the controller's
 * own option, and brokers deleted by the controller when their Device goes (no owner reference can cross
 * namespaces), while it runs and while it is stopped.
 */

const BROKERS = DEFAULT_BROKER_NAMESPACE;
const PRIVILEGED_NS = brokerNamespace(BROKERS, 'privileged');
const POD_SPEC = { containers: [{ name: 'broker', image: 'example/broker:1' }] };
const PRIVILEGED_SPEC = {
  containers: [{ name: 'broker', image: 'example/broker:1', securityContext: { privileged: true } }],
};

let cluster: TestCluster | undefined;
let controller: BrokerController | undefined;
const dirs: { remove(): void }[] = [];

afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await cluster?.close();
  cluster = undefined;
  for (const d of dirs.splice(0)) d.remove();
});

async function startController(backend: RealBackend, allow: string[] = []): Promise<BrokerController> {
  const dir = tempDir('lb-psa-');
  dirs.push(dir);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(await backend.kubeconfig(dir.path, 'controller'));
  const c = new BrokerController({
    kubeConfig,
    namespace: backend.namespace,
    allowance: PodSecurityAllowance.parse(allow),
    logger: process.env.CTRL_DEBUG ? createLogger({ level: 'debug' }) : silentLogger(),
    backoff: { baseMs: 100, maxMs: 2000 },
  });
  c.start();
  await c.ready;
  return c;
}

async function podIn(backend: RealBackend, namespace: string, name: string): Promise<KubeObject | undefined> {
  const res = await backend.cp.request('GET', `/api/v1/namespaces/${namespace}/pods/${name}`);
  return res.status === 200 ? (res.body as KubeObject) : undefined;
}

async function brokersReady(backend: RealBackend, config: string) {
  const o = (await backend.list('discoveryconfigs')).find((x) => x.metadata.name === config);
  const conditions = (o?.status as { conditions?: { type: string; reason?: string; message?: string }[] })
    ?.conditions;
  return conditions?.find((c) => c.type === 'BrokersReady');
}

/** Deleted: gone, or terminating (no kubelet runs on the test nodes to confirm a graceful deletion). */
async function deleted(backend: RealBackend, name: string): Promise<boolean> {
  const pod = await podIn(backend, BROKERS, name);
  return pod === undefined || pod.metadata.deletionTimestamp !== undefined;
}

const nodeName = (pod: KubeObject | undefined) => (pod?.spec as { nodeName?: string } | undefined)?.nodeName;

describeControlPlane('broker Pods under Pod Security Admission, on the real control plane', () => {
  it('a default broker: admitted into the restricted namespace with the defaults filled in, bound by the scheduler; deleted when its Device goes, while the controller runs and while it is stopped', async () => {
    const backend = await RealBackend.start();
    const [d1, d2] = [cameraName('c1'), cameraName('c2')];
    cluster = await TestCluster.on(backend, {});
    await backend.addNode('n1', {}, { [deviceResource(d1)]: 1, [deviceResource(d2)]: 1 });
    await backend.create(cluster.cameras('cams', ['c1', 'c2'], { brokerPodSpec: POD_SPEC }));
    cluster.see('n1', ['c1', 'c2']);
    await cluster.startNode('n1');
    await until(async () => (await cluster?.deviceList())?.size === 2, 20_000, 'both Devices');

    // The install's label is enforced: a privileged pod made there directly, even by the admin, is refused.
    const direct = await backend.cp.request('POST', `/api/v1/namespaces/${BROKERS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'not-compliant' },
      spec: PRIVILEGED_SPEC,
    });
    expect(direct.status).toBe(403);
    expect((direct.body as { message?: string }).message).toMatch(/violates PodSecurity "restricted:latest"/);

    controller = await startController(backend);
    for (const d of [d1, d2])
      await until(
        async () => nodeName(await podIn(backend, BROKERS, `${d}-pod`)) === 'n1',
        60_000,
        `${d} bound`,
      );
    const pod = (await podIn(backend, BROKERS, `${d1}-pod`))!;
    const spec = pod.spec as {
      securityContext: Record<string, unknown>;
      containers: { securityContext: Record<string, unknown> }[];
    };
    expect(spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(spec.containers[0]?.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.metadata.ownerReferences ?? []).toEqual([]);
    expect(pod.metadata.labels?.['leafbridge.io/namespace']).toBe(backend.namespace);
    expect(await podIn(backend, backend.namespace, `${d1}-pod`)).toBeUndefined();

    // The agent stops (it would make the Devices again); the Devices are deleted by hand.
    await cluster.stopNode('n1');
    await backend.remove('devices', d1);
    await until(() => deleted(backend, `${d1}-pod`), 60_000, 'd1 broker deleted');

    await controller.stop();
    controller = undefined;
    await backend.remove('devices', d2);
    // The garbage collector is no help here: nothing deletes the broker while the controller is down.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await deleted(backend, `${d2}-pod`)).toBe(false);
    controller = await startController(backend);
    await until(() => deleted(backend, `${d2}-pod`), 60_000, 'd2 broker deleted after the restart');
  }, 400_000);

  it('a broker that must run privileged: refused by the controller with a condition unless allowed, then admitted into the privileged namespace', async () => {
    const backend = await RealBackend.start();
    const device = cameraName('c1', 'plc');
    cluster = await TestCluster.on(backend, {});
    await backend.addNode('n1', {}, { [deviceResource(device)]: 1 });
    await backend.create(cluster.cameras('plc', ['c1'], { brokerPodSpec: PRIVILEGED_SPEC }));
    cluster.see('n1', ['c1']);
    await cluster.startNode('n1');
    await until(async () => (await cluster?.deviceList())?.has(device) === true, 20_000, 'the Device');

    controller = await startController(backend);
    await until(
      async () => (await brokersReady(backend, 'plc'))?.reason === 'PodSecurityNotAllowed',
      60_000,
      'the refusal on the config',
    );
    const refused = await brokersReady(backend, 'plc');
    expect(refused?.message).toContain('privileged');
    expect(refused?.message).toContain('securityContext.privileged');
    expect(await podIn(backend, BROKERS, `${device}-pod`)).toBeUndefined();
    expect(await podIn(backend, PRIVILEGED_NS, `${device}-pod`)).toBeUndefined();
    await controller.stop();

    // The admin makes the privileged broker namespace with the controller's Role in it, and allows the config.
    const options = { ...defaultInstallOptions(), namespace: backend.namespace };
    for (const o of [
      brokerNamespaceManifest(PRIVILEGED_NS, 'privileged'),
      ...brokerRbac(options, 'controller', PRIVILEGED_NS),
    ]) {
      const path =
        o.kind === 'Namespace'
          ? '/api/v1/namespaces'
          : `/apis/rbac.authorization.k8s.io/v1/namespaces/${PRIVILEGED_NS}/${o.kind === 'Role' ? 'roles' : 'rolebindings'}`;
      const res = await backend.cp.request('POST', path, o);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    controller = await startController(backend, [`privileged=${backend.namespace}/plc`]);
    await until(
      async () => nodeName(await podIn(backend, PRIVILEGED_NS, `${device}-pod`)) === 'n1',
      60_000,
      'the privileged broker admitted and bound',
    );
    const pod = (await podIn(backend, PRIVILEGED_NS, `${device}-pod`))!;
    const container = (pod.spec as { containers: { securityContext: Record<string, unknown> }[] })
      .containers[0];
    expect(container?.securityContext).toEqual({ privileged: true }); // nothing added to what the user set
    await until(
      async () => (await brokersReady(backend, 'plc'))?.reason !== 'PodSecurityNotAllowed',
      30_000,
      'the refusal cleared',
    );
  }, 400_000);
});
