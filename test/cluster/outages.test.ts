import { PassThrough } from 'node:stream';
import { afterEach, expect, it } from 'vitest';
import { createLogger } from '../../src/util/logger.js';
import { cameraName, TestCluster } from '../helpers/cluster.js';
import { RealBackend } from '../helpers/clusterBackend.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until } from '../helpers/wait.js';

/**
 * Real outages of the real control plane while agents run: kube-apiserver SIGKILLed and restarted (etcd
 * keeps the state), and etcd compacted under a quiet watch so that it resumes into 410 Gone.
 */

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const ids = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
const idOf = (name: string) => ids.find((id) => cameraName(id) === name) ?? name;

async function summary(c: TestCluster): Promise<string> {
  return [...(await c.deviceList())]
    .map(([name, o]) => {
      const online = (o.status as { online?: boolean } | undefined)?.online === true;
      return `${idOf(name)}: ${online ? 'online' : 'offline'} [${(o.spec as { nodes: string[] }).nodes.join(',')}]`;
    })
    .sort()
    .join();
}

/** A logger whose lines the test can read. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line));
  });
  return { logger: createLogger({ level: 'info', destination: stream }), lines };
}

describeControlPlane('outages of the real control plane', () => {
  it('kube-apiserver SIGKILLed while devices come and go: after its restart the Devices match the truth, updated in place', async () => {
    const backend = await RealBackend.start();
    const c = await TestCluster.on(backend);
    cluster = c;
    await backend.create(c.cameras('cams', ids));
    c.see('n1', ['c1', 'c2', 'c3']);
    c.see('n2', ['c1', 'c4']);
    await c.startNode('n1', { grace: '3s' });
    await c.startNode('n2', { grace: '3s' });
    const before = 'c1: online [n1,n2],c2: online [n1],c3: online [n1],c4: online [n2]';
    await until(async () => (await summary(c)) === before, 20_000, 'the starting devices');
    const uids = new Map([...(await c.deviceList())].map(([n, o]) => [n, o.metadata.uid]));

    await backend.cp.killApiserver();
    c.see('n1', ['c2', 'c5']); // c1 gone from both nodes (past its grace by the end), c3 gone, c5 new
    c.see('n2', ['c4', 'c6']); // c6 new
    await new Promise((r) => setTimeout(r, 8000)); // the agents notice while the server is gone
    await backend.cp.startApiserver();

    // c1 and c3 vanished with the server down and are past their grace: deleted, not left offline.
    const truth = 'c2: online [n1],c4: online [n2],c5: online [n1],c6: online [n2]';
    let last = '';
    const settled = async () => {
      last = await summary(c);
      return last === truth;
    };
    await until(settled, 60_000, 'the truth after the restart').catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${last}`);
    });
    const after = await c.deviceList();
    for (const id of ['c2', 'c4'])
      expect(after.get(cameraName(id))?.metadata.uid).toBe(uids.get(cameraName(id)));
  }, 180_000);

  it('etcd compacted under a quiet watch: the agent meets 410 Gone, re-lists, and follows configs again', async () => {
    // Without the watch cache for the CRDs their watches are served from etcd, where compaction answers 410.
    const backend = await RealBackend.start({
      uncachedWatches: ['discoveryconfigs.leafbridge.io', 'devices.leafbridge.io'],
    });
    const c = await TestCluster.on(backend, { n1: {} });
    cluster = c;
    await backend.create(c.cameras('cams', ['c1']));
    c.see('n1', ['c1', 'c2']);
    const { logger, lines } = capturedLogger();
    await c.startNode('n1', { grace: '2s', logger });
    await until(async () => (await c.deviceList()).has(cameraName('c1')), 20_000, 'the first Device');

    // Other writes move etcd's revision past the agent's; compaction removes the history it would resume from.
    for (let i = 0; i < 20; i++) {
      await backend.cp.request('POST', '/api/v1/namespaces/default/configmaps', {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `filler-${i}` },
        data: { i: String(i) },
      });
    }
    await backend.cp.compactEtcd();
    await backend.cp.killApiserver(); // cut every watch; they resume from their last resourceVersion
    await backend.cp.startApiserver();
    await until(
      () =>
        lines.some(
          (l) => typeof l.msg === 'string' && /watch expired; re-listing/.test(l.msg) && l.code === 410,
        ),
      30_000,
      'a watch answered 410 Gone and re-listed',
    );

    await backend.create(c.cameras('more', ['c2']));
    await until(
      async () => (await c.deviceList()).has(cameraName('c2', 'more')),
      20_000,
      'a config made after the 410 followed',
    );
    await backend.remove('discoveryconfigs', 'cams');
    await until(
      async () => !(await c.deviceList()).has(cameraName('c1')),
      30_000,
      'the deleted config’s Device gone',
    );
  }, 180_000);
});
