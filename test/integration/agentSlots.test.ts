import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlotRecord } from '../../src/model/resources.js';
import { cameraName, NS, TestCluster } from '../helpers/cluster.js';
import { until } from '../helpers/wait.js';

/**
 * Capacity slots of a shared camera claimed from two nodes: two agents, each with its test kubelet (the
 * device-plugin gRPC API on unix sockets), against one test API server (Kubernetes REST and watch; no real
 * kube-apiserver or kubelet runs here). Claims are recorded in the Device's `status.slots`.
 */

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const CAM = cameraName('c1');
const OWN = `leafbridge.io/${CAM}`;

const RELEASE = { interval: '200ms', grace: '500ms' };

/** Both agents in this process, or (`n1AsProcess`) n1's as a process of its own, which a test can kill. */
async function twoNodesOneCamera(n1AsProcess = false): Promise<TestCluster> {
  const c = await TestCluster.start();
  cluster = c;
  c.api.seed('discoveryconfigs', c.cameras('cams', ['c1'], { capacity: 2 }));
  c.see('n1', ['c1']);
  c.see('n2', ['c1']);
  if (n1AsProcess) await c.startNodeProcess('n1', { kubelet: true, release: RELEASE });
  else await c.startNode('n1', { kubelet: true, release: RELEASE });
  await c.startNode('n2', { kubelet: true, release: RELEASE });
  // The Device is on the server with both nodes, and the agents' writes have settled.
  await until(
    () => {
      const spec = c.api.object('devices', NS, CAM)?.spec as { nodes?: string[] } | undefined;
      return spec?.nodes?.join() === 'n1,n2';
    },
    10_000,
    'one Device on the server, seen by both nodes',
  );
  await until(
    async () => (await c.pendingWrites('n1')) === 0 && (await c.pendingWrites('n2')) === 0,
    10_000,
    'both agents to have written everything',
  );
  for (const n of ['n1', 'n2']) {
    await c.kubelet(n).waitFor(
      () =>
        c
          .kubelet(n)
          .devices(OWN)
          .filter((d) => d.health === 'Healthy').length === 2
          ? true
          : undefined,
      10_000,
      `${n}: both slots of the camera healthy`,
    );
  }
  return c;
}

function slotsOnServer(c: TestCluster): Record<string, SlotRecord> {
  const o = c.api.object('devices', NS, CAM);
  return ((o?.status ?? {}) as { slots?: Record<string, SlotRecord> }).slots ?? {};
}

const health = (c: TestCluster, node: string, resource = OWN) =>
  c
    .kubelet(node)
    .devices(resource)
    .map((d) => `${d.ID}:${d.health}`)
    .join(' ');

/** A pod with one container asking for `n` of `resource`. */
const pod = (name: string, resource = OWN, n = 1) => ({
  name,
  containers: [{ name: 'app', resources: { [resource]: n } }],
});

describe('slots of a shared camera across two nodes', () => {
  it('capacity 2: one pod per node, a third pod is refused cleanly and the plugin names the holders', async () => {
    const c = await twoNodesOneCamera();
    const a = await c.kubelet('n1').admitPod(pod('a'));
    const [sa] = a.containers[0]?.devices[OWN] ?? [];
    expect(slotsOnServer(c)[sa as string]).toMatchObject({ node: 'n1', resource: OWN });
    const sb = sa === `${CAM}-0` ? `${CAM}-1` : `${CAM}-0`;
    // n2 learns of the claim through its watch: that slot stops being offered there.
    await until(
      () =>
        c
          .kubelet('n2')
          .devices(OWN)
          .find((d) => d.ID === sa)?.health === 'Unhealthy',
      2000,
      'n2',
    );

    const b = await c.kubelet('n2').admitPod(pod('b'));
    expect(b.containers[0]?.devices[OWN]).toEqual([sb]);
    expect(b.allocations[0]?.response.envs).toMatchObject({
      CAMERA: 'c1',
      LEAFBRIDGE_SLOTS: sb,
    });
    // Through the config resource both slots are held already: the kubelet has nothing healthy to give.
    await until(
      () => health(c, 'n1', 'leafbridge.io/cams') === `${CAM}-0:Unhealthy ${CAM}-1:Unhealthy`,
      2000,
      'config resource full on n1',
    );
    await expect(c.kubelet('n1').admitPod(pod('c', 'leafbridge.io/cams'))).rejects.toThrow(
      /requested number of devices unavailable for leafbridge.io\/cams/,
    );

    // The plugin asked directly for a held slot (a kubelet with a stale view): refused, naming the holder,
    // decided from the claims it knows, with no write and no retry loop.
    c.api.clearLog();
    await expect(
      c.kubelet('n1').allocate('leafbridge.io/cams', [sb], { check: false }),
    ).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: expect.stringContaining(`${sb} is held through ${OWN} on node n2`),
    });
    expect(c.api.writes('devices')).toBe(0);
    expect(Object.keys(slotsOnServer(c)).sort()).toEqual([`${CAM}-0`, `${CAM}-1`]);

    // A pod that is gone gives its slot back, once its claim is past the release grace; a pod that runs
    // keeps its claim (PodResources lists it), though it is past that grace too by then.
    const graceOver = Date.parse(slotsOnServer(c)[sa as string]?.since ?? '') + 500;
    await until(() => Date.now() > graceOver, 2000, "a's claim past the release grace");
    c.kubelet('n2').deletePod('default', 'b');
    await until(() => slotsOnServer(c)[sb] === undefined, 5000, 'slot of the deleted pod released');
    expect(slotsOnServer(c)[sa as string]).toMatchObject({ node: 'n1', resource: OWN });
    await until(
      () =>
        c
          .kubelet('n1')
          .devices(OWN)
          .find((d) => d.ID === sb)?.health === 'Healthy',
      2000,
      'n1',
    );
    const c2 = await c.kubelet('n1').admitPod(pod('c2'));
    expect(c2.containers[0]?.devices[OWN]).toEqual([sb]);
  }, 60_000);

  it('two nodes claim the last slot at the same moment: one wins, the other is refused after one re-read', async () => {
    const c = await twoNodesOneCamera();
    const s0 = `${CAM}-0`;
    c.api.clearLog();
    // Neither node knows of the other's claim yet: both write against the same resourceVersion. The server
    // holds every request 400 ms before serving it, so both claims are on their way before the first lands
    // (and before its watch event can reach the other node): the second one must meet a 409.
    c.api.slow(400);
    const results = await Promise.allSettled([
      c.kubelet('n1').allocate(OWN, [s0]),
      c.kubelet('n2').allocate(OWN, [s0]),
    ]);
    c.api.slow(0);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    const holder = slotsOnServer(c)[s0]?.node;
    expect(['n1', 'n2']).toContain(holder);
    // One successful status write and exactly one conflict, for the loser, which re-read and gave up: no hot loop.
    const patches = c.api.requests({ verb: 'patch', resource: 'devices' }).map((r) => r.status);
    expect(patches.sort()).toEqual([200, 409]);
    expect((lost[0] as PromiseRejectedResult).reason.details).toContain(
      `${s0} is held through ${OWN} on node ${holder}`,
    );
  }, 60_000);

  it('claims survive an agent killed with SIGKILL; the kubelet allocating the same slot again (node reboot) is no conflict', async () => {
    const c = await twoNodesOneCamera(true);
    const kubelet = c.kubelet('n1');
    const a = await kubelet.admitPod(pod('a'));
    const b = await kubelet.admitPod(pod('b'));
    const [sa] = a.containers[0]?.devices[OWN] ?? [];
    const [sb] = b.containers[0]?.devices[OWN] ?? [];
    expect(Object.keys(slotsOnServer(c)).sort()).toEqual([sa, sb].sort());
    await c.killNode('n1'); // no shutdown code runs
    kubelet.deletePod('default', 'b'); // while the agent is gone
    const restarted = performance.now();
    await c.startNodeProcess('n1', { kubelet: true, release: RELEASE });
    await kubelet.waitFor(
      () => {
        const p = kubelet.plugin(OWN);
        return p?.connected && p.registeredAt > restarted && kubelet.devices(OWN).length === 2
          ? true
          : undefined;
      },
      10_000,
      'n1 registered again',
    );
    // The restarted agent reconciles its claims with the pods the kubelet reports: b's slot goes (so the
    // release pass has run, past its grace) ...
    await until(() => slotsOnServer(c)[sb as string] === undefined, 5000, "the deleted pod's slot released");
    await until(() => health(c, 'n2').includes(`${sb}:Healthy`), 2000, `${sb} free on n2`);
    // ... and a's stays: its pod still runs, so n2 still may not use that slot.
    expect(slotsOnServer(c)[sa as string]).toMatchObject({ node: 'n1', resource: OWN });
    expect(health(c, 'n2')).toContain(`${sa}:Unhealthy`);
    // After a node reboot the kubelet calls Allocate again for the slot it had (Akri #801): no conflict.
    const again = await kubelet.allocate(OWN, [sa as string], { check: false });
    expect(again.container_responses[0]?.envs).toMatchObject({ LEAFBRIDGE_SLOTS: sa });
    expect(slotsOnServer(c)[sa as string]).toMatchObject({ node: 'n1', resource: OWN });
  }, 60_000);

  it('a pod deleted while its agent was down: its slot is released when the agent starts again', async () => {
    const c = await twoNodesOneCamera();
    const a = await c.kubelet('n1').admitPod(pod('a'));
    const [sa] = a.containers[0]?.devices[OWN] ?? [];
    await c.stopNode('n1');
    c.kubelet('n1').deletePod('default', 'a');
    const graceOver = Date.parse(slotsOnServer(c)[sa as string]?.since ?? '') + 500;
    await until(() => Date.now() > graceOver, 2000, 'the claim past the release grace');
    expect(slotsOnServer(c)[sa as string]).toMatchObject({ node: 'n1' });
    await c.startNode('n1', { kubelet: true, release: RELEASE });
    await until(() => slotsOnServer(c)[sa as string] === undefined, 5000, 'released at start');
    await until(
      () =>
        c
          .kubelet('n2')
          .devices(OWN)
          .every((d) => d.health === 'Healthy'),
      2000,
      'free on n2',
    );
  }, 60_000);

  it('with the API server down, a claim on a shared camera is refused at once with UNAVAILABLE', async () => {
    const c = await twoNodesOneCamera();
    await c.api.down();
    const t0 = performance.now();
    await expect(c.kubelet('n1').allocate(OWN, [`${CAM}-0`])).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringContaining('cannot be claimed now'),
    });
    expect(performance.now() - t0).toBeLessThan(5000);
    await c.api.up();
    // Back: the claim goes through.
    await until(
      async () => {
        try {
          await c.kubelet('n1').allocate(OWN, [`${CAM}-0`]);
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      'claim after up()',
    );
    expect(slotsOnServer(c)[`${CAM}-0`]).toMatchObject({ node: 'n1' });
  }, 60_000);
});
