import { KubeConfig } from '@kubernetes/client-node';
import type { MqttClient } from 'mqtt';
import { afterEach, expect, it } from 'vitest';
import { TwinHub } from '../../src/hub/hub.js';
import { deviceName } from '../../src/model/naming.js';
import { silentLogger } from '../../src/util/logger.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { RealBackend } from '../helpers/clusterBackend.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { collect, startInProcessAgent } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until } from '../helpers/wait.js';

/**
 * The cloud twin hub as the leafbridge-hub service account on the real control plane, with a real edge:
 * an in-process agent (as leafbridge-agent) writing its Device to the real apiserver and bridging its edge
 * broker to mosquitto, the cloud broker the hub reads. spec.desired travels to the device; the device's
 * report lands in status.reported, through RBAC as deploy/ grants it.
 */

const stops: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
});

describeControlPlane('the twin hub on the real control plane', () => {
  it('round-trips a twin: spec.desired reaches the device through its edge, its report lands in status.reported', async () => {
    const backend = await RealBackend.start();
    stops.push(() => backend.close());
    await backend.addNode('edge-1');
    const cloud = new Mosquitto();
    await cloud.start();
    stops.push(() => cloud.stop());
    const dir = tempDir('lb-hub-real-');
    stops.push(async () => dir.remove());

    await backend.create({
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name: 'sensors' },
      spec: {
        handler: { name: 'debug-echo', details: { devices: [{ id: 'th-1', properties: { ROOM: 'a' } }] } },
      },
    });
    const edge = await startInProcessAgent(
      agentConfig(dir.path, cloud.url, { kubernetes: await backend.kubeconfig(dir.path, 'agent') }),
    );
    stops.push(() => edge.agent.stop());
    const name = deviceName('sensors', 'th-1', 'edge-1');
    const device = async () => (await backend.list('devices')).find((o) => o.metadata.name === name);
    await until(async () => (await device()) !== undefined, 20_000, 'the Device written by the agent');

    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(await backend.kubeconfig(dir.path, 'hub'));
    const hub = new TwinHub({
      brokerUrl: cloud.url,
      kubeConfig,
      namespace: backend.namespace,
      intervalMs: 200,
      logger: silentLogger(),
      backoff: { baseMs: 100, maxMs: 1000 },
      probe: { baseMs: 50, maxMs: 300 },
      reconnectMs: 200,
    });
    await hub.start();
    stops.push(() => hub.stop(200));
    await until(() => hub.devices >= 1, 20_000, 'the hub to see the Device');

    const leaf = await collect(edge.url, 'devices/th-1/twin/desired', { clientId: 'th-1' });
    stops.push(() => (leaf.client as MqttClient).endAsync());
    const patched = await backend.cp.request(
      'PATCH',
      `/apis/leafbridge.io/v1alpha1/namespaces/${backend.namespace}/devices/${name}`,
      { spec: { desired: { $version: 1, mode: 'eco' } } },
      'application/merge-patch+json',
    );
    expect(patched.status).toBe(200);
    await until(
      () => leaf.messages.some((m) => m.topic.endsWith('/twin/desired')),
      20_000,
      'the desired twin at the device',
    );
    const desired = leaf.messages.find((m) => m.topic.endsWith('/twin/desired'));
    expect(JSON.parse(desired?.payload.toString() ?? '{}')).toEqual({ $version: 1, mode: 'eco' });

    await leaf.client.publishAsync('devices/th-1/twin/reported', JSON.stringify({ mode: 'eco', fw: '1.2' }), {
      qos: 1,
    });
    const reported = async () =>
      ((await device())?.status as { reported?: Record<string, unknown> } | undefined)?.reported;
    await until(async () => (await reported())?.$version === 1, 20_000, 'status.reported written by the hub');
    expect(await reported()).toMatchObject({ mode: 'eco', fw: '1.2', $node: 'edge-1' });
    // The agent's own status fields survive the hub's writes.
    expect(((await device())?.status as { online?: boolean } | undefined)?.online).toBe(true);
  }, 180_000);
});
