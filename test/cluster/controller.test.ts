import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, expect, it } from 'vitest';
import { BrokerController } from '../../src/controller/brokerController.js';
import { deviceResource } from '../../src/controller/brokerSpec.js';
import { DEFAULT_BROKER_NAMESPACE } from '../../src/model/podSecurity.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { cameraName, TestCluster } from '../helpers/cluster.js';
import { RealBackend } from '../helpers/clusterBackend.js';
import type { KubeObject } from '../helpers/kubeStore.js';
import { tempDir } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until } from '../helpers/wait.js';

/**
 * The broker controller, as the leafbridge-controller service account, beside agents on the real control
 * plane: broker Pods and Jobs pinned to the nodes that see their device, accepted by the real apiserver,
 * and bound by the real scheduler to a Node whose status advertises the device's resource (the Nodes are
 * written as a kubelet would, advertising what the agents' device plugins would).
 */

const POD_SPEC = { containers: [{ name: 'broker', image: 'example/broker:1' }] };
const JOB_SPEC = { template: { spec: { ...POD_SPEC, restartPolicy: 'Never' } }, backoffLimit: 1 };
const SERVICE = { ports: [{ name: 'http', port: 8080, targetPort: 8080 }] };

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

async function startController(backend: RealBackend, nodeGraceMs = 60_000): Promise<BrokerController> {
  const dir = tempDir('lb-ctrl-');
  dirs.push(dir);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(await backend.kubeconfig(dir.path, 'controller'));
  const c = new BrokerController({
    kubeConfig,
    namespace: backend.namespace,
    logger: process.env.CTRL_DEBUG ? createLogger({ level: 'debug' }) : silentLogger(),
    nodeGraceMs,
    backoff: { baseMs: 100, maxMs: 2000 },
  });
  c.start();
  await c.ready;
  return c;
}

/** The broker objects in the broker namespace (the install's, Pod Security restricted). */
async function brokerList(
  backend: RealBackend,
  resource: 'pods' | 'jobs' | 'services',
): Promise<KubeObject[]> {
  const group = resource === 'jobs' ? '/apis/batch/v1' : '/api/v1';
  const res = await backend.cp.request('GET', `${group}/namespaces/${DEFAULT_BROKER_NAMESPACE}/${resource}`);
  if (res.status !== 200) throw new Error(`list ${resource}: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { items: KubeObject[] }).items;
}

const byName = async (backend: RealBackend, resource: 'pods' | 'jobs' | 'services', name: string) =>
  (await brokerList(backend, resource)).find((o) => o.metadata.name === name);

/** The pods the Job controller made for Job `job`. */
const jobPods = async (backend: RealBackend, job: string): Promise<KubeObject[]> =>
  (await brokerList(backend, 'pods')).filter((p) => p.metadata.labels?.['job-name'] === job);

const nodeName = (pod: KubeObject | undefined) => (pod?.spec as { nodeName?: string } | undefined)?.nodeName;

describeControlPlane('the broker controller on the real control plane', () => {
  it('a device seen by two nodes: its broker Pod is accepted and scheduled onto a node advertising its resource; Services made', async () => {
    const backend = await RealBackend.start();
    const device = cameraName('c1');
    const resource = deviceResource(device);
    // n3 does not see the camera and advertises nothing: the scheduler must not choose it.
    cluster = await TestCluster.on(backend, {});
    await backend.addNode('n1', {}, { [resource]: 2 });
    await backend.addNode('n2', {}, { [resource]: 2 });
    await backend.addNode('n3');
    await backend.create(
      cluster.cameras('cams', ['c1'], {
        brokerPodSpec: POD_SPEC,
        deviceService: SERVICE,
        configService: SERVICE,
      }),
    );
    cluster.see('n1', ['c1']);
    cluster.see('n2', ['c1']);
    await cluster.startNode('n1');
    await cluster.startNode('n2');
    await until(
      async () =>
        ((await cluster?.deviceList())?.get(device)?.spec as { nodes?: string[] })?.nodes?.join() === 'n1,n2',
      20_000,
      'the Device seen by both nodes',
    );
    controller = await startController(backend);

    // The apiserver's answer decides: a refused broker shows in the config's BrokersReady, with its message.
    const rejected = async () => {
      const config = (await backend.list('discoveryconfigs')).find((o) => o.metadata.name === 'cams');
      const conditions = (
        config?.status as { conditions?: { reason?: string; message?: string }[] } | undefined
      )?.conditions;
      return conditions?.find((x) => x.reason === 'BrokerRejected')?.message;
    };
    await until(
      async () =>
        (await byName(backend, 'pods', `${device}-pod`)) !== undefined || (await rejected()) !== undefined,
      30_000,
      'the broker pod, or its refusal',
    );
    expect(await rejected()).toBeUndefined();
    await until(
      async () => nodeName(await byName(backend, 'pods', `${device}-pod`)) !== undefined,
      30_000,
      'the broker pod scheduled',
    );
    const pod = await byName(backend, 'pods', `${device}-pod`);
    expect(['n1', 'n2']).toContain(nodeName(pod));
    const limits = (
      (pod?.spec ?? { containers: [] }) as {
        containers: { resources?: { limits?: Record<string, string> } }[];
      }
    ).containers[0]?.resources?.limits;
    expect(limits?.[resource]).toBe('1');
    await until(
      async () => (await byName(backend, 'services', `${device}-svc`)) !== undefined,
      15_000,
      'the device Service',
    );
    await until(
      async () => (await byName(backend, 'services', 'cams-svc')) !== undefined,
      15_000,
      'the config Service',
    );
    // The agents own Valid, the controller BrokersReady: each writes its own without reverting the other's.
    const types = async () => {
      const config = (await backend.list('discoveryconfigs')).find((o) => o.metadata.name === 'cams');
      return ((config?.status as { conditions?: { type: string }[] } | undefined)?.conditions ?? [])
        .map((x) => x.type)
        .sort()
        .join();
    };
    await until(
      async () => (await types()) === 'BrokersReady,Valid',
      15_000,
      'both conditions on the config',
    );
    cluster.see('n2', []); // the agents report again; the controller's condition stays
    await until(
      async () =>
        ((await cluster?.deviceList())?.get(device)?.spec as { nodes?: string[] })?.nodes?.join() === 'n1',
      15_000,
      'n2 lost the camera',
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect(await types()).toBe('BrokersReady,Valid');
  }, 180_000);

  it('a Job broker for a device one node sees: the Job controller makes its pod, the scheduler binds it to that node', async () => {
    const backend = await RealBackend.start();
    const device = cameraName('c1', 'jobs');
    cluster = await TestCluster.on(backend, {});
    await backend.addNode('n1', {}, { [deviceResource(device)]: 1 });
    await backend.addNode('n2');
    await backend.create(cluster.cameras('jobs', ['c1'], { brokerJobSpec: JOB_SPEC }));
    cluster.see('n1', ['c1']);
    await cluster.startNode('n1');
    await until(async () => (await cluster?.deviceList())?.has(device) === true, 20_000, 'the Device');
    controller = await startController(backend);
    await until(
      async () => (await byName(backend, 'jobs', `${device}-job`)) !== undefined,
      20_000,
      'the broker Job',
    );
    await until(
      async () => (await jobPods(backend, `${device}-job`)).some((p) => nodeName(p) === 'n1'),
      30_000,
      "the Job's pod bound to n1",
    );
  }, 180_000);

  it('a node whose kubelet falls silent: the real node-lifecycle controller marks it, and the controller takes it off the Device', async () => {
    const backend = await RealBackend.start({ nodeMonitorGracePeriod: '10s' });
    const device = cameraName('c1');
    cluster = await TestCluster.on(backend);
    await backend.create(cluster.cameras('cams', ['c1']));
    cluster.see('n1', ['c1']);
    cluster.see('n2', ['c1']);
    await cluster.startNode('n1');
    await cluster.startNode('n2');
    const nodesOf = async () =>
      ((await cluster?.deviceList())?.get(device)?.spec as { nodes?: string[] } | undefined)?.nodes?.join();
    await until(async () => (await nodesOf()) === 'n1,n2', 20_000, 'the Device seen by both nodes');
    controller = await startController(backend, 2000);
    // n2's kubelet dies (its agent goes with it): no more Lease renewals.
    backend.nodes.silence('n2');
    await cluster.stopNode('n2');
    await new Promise((r) => setTimeout(r, 2000));
    expect(await nodesOf()).toBe('n1,n2'); // an agent that stops leaves its node on the Device
    const ready = async () => {
      const node = (await backend.list('nodes')).find((n) => n.metadata.name === 'n2');
      const conditions = (node?.status as { conditions?: { type: string; status: string }[] } | undefined)
        ?.conditions;
      return conditions?.find((x) => x.type === 'Ready')?.status;
    };
    await until(
      async () => (await ready()) === 'Unknown',
      40_000,
      'n2 marked Unknown by the node-lifecycle controller',
    );
    await until(async () => (await nodesOf()) === 'n1', 20_000, 'n2 taken off the Device');
  }, 180_000);
});
