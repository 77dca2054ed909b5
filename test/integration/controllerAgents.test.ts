import { afterEach, describe, expect, it } from 'vitest';
import { BrokerController } from '../../src/controller/brokerController.js';
import { DEFAULT_BROKER_NAMESPACE as BROKERS } from '../../src/model/podSecurity.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { cameraName, NS, TestCluster } from '../helpers/cluster.js';
import { kubeClients } from '../helpers/kubeClient.js';
import { until } from '../helpers/wait.js';

/**
 * The broker controller beside two real agents (in-process), all against one test API server (the
 * Kubernetes REST and watch protocol; no real kube-apiserver, scheduler or kubelet runs in these tests):
 * the agents write the Device and the config's `Valid` condition, the controller the broker Pod and the
 * config's `BrokersReady`; neither erases the other's, and a NotReady node whose agent still sees the
 * device does not turn into a write loop between them.
 */

const MERGE = 'application/merge-patch+json';
const POD_SPEC = { containers: [{ name: 'broker', image: 'example/broker:1' }] };

let cluster: TestCluster | undefined;
let controller: BrokerController | undefined;

afterEach(async () => {
  await controller?.stop();
  controller = undefined;
  await cluster?.close();
  cluster = undefined;
});

function setReady(c: TestCluster, node: string, status: string): void {
  const conditions = [{ type: 'Ready', status, lastTransitionTime: new Date().toISOString() }];
  c.api.resources.patch(
    c.api.type('nodes'),
    undefined,
    node,
    MERGE,
    { status: { conditions } },
    {
      subresource: 'status',
    },
  );
}

function conditionTypes(c: TestCluster): string[] {
  const status = c.api.object('discoveryconfigs', NS, 'cams')?.status as
    | { conditions?: { type: string }[] }
    | undefined;
  return (status?.conditions ?? []).map((x) => x.type).sort();
}

const statusWrites = (c: TestCluster) =>
  c.api.requests({ verb: 'patch', resource: 'discoveryconfigs', subresource: 'status' }).length;
const deviceWrites = (c: TestCluster) => c.api.writes('devices');

describe('broker controller with two agents (test API server)', () => {
  it('agents and controller share the config status; a NotReady node its agent re-adds is no write loop', async () => {
    const c = await TestCluster.start();
    cluster = c;
    for (const n of ['n1', 'n2']) setReady(c, n, 'True');
    c.api.seed('discoveryconfigs', c.cameras('cams', ['c1'], { brokerPodSpec: POD_SPEC }));
    c.see('n1', ['c1']);
    c.see('n2', ['c1']);
    await c.startNode('n1');
    await c.startNode('n2');
    const device = cameraName('c1');
    const nodesOf = () =>
      (c.api.object('devices', NS, device)?.spec as { nodes?: string[] } | undefined)?.nodes;
    await until(() => nodesOf()?.join() === 'n1,n2', 10_000, 'the Device seen by both nodes');
    controller = new BrokerController({
      kubeConfig: kubeClients(c.api).kc,
      namespace: NS,
      logger: process.env.CTRL_DEBUG ? createLogger({ level: 'debug' }) : silentLogger(),
      nodeGraceMs: 1000,
      backoff: { baseMs: 50, maxMs: 500 },
    });
    controller.start();
    await controller.ready;

    const podName = `${device}-pod`;
    await until(
      () => c.api.object('pods', BROKERS, podName)?.metadata.annotations?.['leafbridge.io/nodes'] === 'n1,n2',
      15_000,
      'the broker pod for both nodes',
    );
    await until(() => conditionTypes(c).join() === 'BrokersReady,Valid', 10_000, 'both conditions');
    // At rest neither writer undoes the other: the conditions stay, and the status writes stop.
    await new Promise((r) => setTimeout(r, 1000));
    const before = statusWrites(c);
    await new Promise((r) => setTimeout(r, 1500));
    expect(conditionTypes(c)).toEqual(['BrokersReady', 'Valid']);
    expect(statusWrites(c) - before).toBeLessThanOrEqual(1);

    // The pod runs on n1; n1 goes NotReady but its agent still sees the camera and re-adds n1 at once.
    const first = c.api.object('pods', BROKERS, podName);
    c.api.resources.patch(c.api.type('pods'), BROKERS, podName, MERGE, { spec: { nodeName: 'n1' } }, {});
    c.api.resources.patch(
      c.api.type('pods'),
      BROKERS,
      podName,
      MERGE,
      { status: { phase: 'Running' } },
      {
        subresource: 'status',
      },
    );
    setReady(c, 'n1', 'Unknown');
    await until(
      () => {
        const p = c.api.object('pods', BROKERS, podName);
        return p !== undefined && p.metadata.uid !== first?.metadata.uid;
      },
      10_000,
      'the broker pod made again',
    );
    expect(c.api.object('pods', BROKERS, podName)?.metadata.annotations?.['leafbridge.io/nodes']).toBe('n2');
    // Removed once, re-added by the agent; then the controller waits out its backoff instead of fighting.
    await until(() => nodesOf()?.join() === 'n1,n2', 5000, 'n1 re-added by its agent');
    const moved = c.api.object('pods', BROKERS, podName)?.metadata.uid;
    const writes = deviceWrites(c);
    await new Promise((r) => setTimeout(r, 2000));
    expect(deviceWrites(c) - writes).toBeLessThanOrEqual(2);
    expect(nodesOf()).toEqual(['n1', 'n2']);
    expect(c.api.object('pods', BROKERS, podName)?.metadata.uid).toBe(moved); // stays off the NotReady node

    // With the controller stopped, the agents' own status reports (after a device change) keep BrokersReady.
    await controller.stop();
    controller = undefined;
    const reports = statusWrites(c);
    c.see('n2', []);
    await until(() => nodesOf()?.join() === 'n1', 5000, 'n2 lost the camera');
    await new Promise((r) => setTimeout(r, 1500)); // the agents report ~500 ms after a change
    expect(conditionTypes(c)).toEqual(['BrokersReady', 'Valid']);
    expect(statusWrites(c) - reports).toBe(0); // what they report is what is stored already
  }, 45_000);
});
