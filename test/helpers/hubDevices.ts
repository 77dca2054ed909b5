// Devices as the hub finds them on the API server, seeded into the test API server (kubeApiServer.ts), and
// edges as the hub hears them on the cloud broker.
import { deviceName } from '../../src/model/naming.js';
import type { KubeApiServer } from './kubeApiServer.js';
import { connect } from './mqtt.js';

/** When the agent last saw the seeded Devices; the hub's `lastSeen` must move past it. */
export const SEEN_AT = '2026-01-01T00:00:00Z';

/**
 * A Device as the mqtt handler's discovery makes one for `id` on `node` (a local device of DiscoveryConfig
 * `config`), with the agent's status: online, its Online condition. Returns the Device's name.
 */
export function seedHubDevice(
  api: KubeApiServer,
  ns: string,
  config: string,
  id: string,
  node: string,
): string {
  const name = deviceName(config, id, node);
  api.seed('devices', {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'Device',
    metadata: { name, namespace: ns, labels: { 'leafbridge.io/config': config } },
    spec: {
      id,
      configName: config,
      handler: 'mqtt',
      shared: false,
      nodes: [node],
      capacity: 1,
      properties: { MQTT_DEVICE_ID: id },
      deviceNodes: [],
      mounts: [],
    },
  });
  const status = {
    online: true,
    lastSeen: SEEN_AT,
    conditions: [
      {
        type: 'Online',
        status: 'True',
        reason: 'Discovered',
        message: `seen by mqtt from ${node}`,
        lastTransitionTime: SEEN_AT,
      },
    ],
  };
  api.resources.patch(
    api.type('devices'),
    ns,
    name,
    'application/merge-patch+json',
    { status },
    {
      subresource: 'status',
    },
  );
  return name;
}

/** What an edge publishes about a device, under `{prefix}/{node}/devices/{id}/`. */
export type EdgeTopic = 'twin/reported' | 'status' | `telemetry/${string}`;

/**
 * A simulated edge: an MQTT 5 client on the cloud broker `url` publishing the upstream topics of `node` at QoS
 * 1, each with the next `lb-msg-id` of `epoch` (`{epoch}-{seq}`) unless given one. The caller ends `client`.
 */
export async function simulatedEdge(url: string, prefix: string, node: string, epoch = 'feedc0de0001') {
  const client = await connect(url, { clientId: `sim-${node}-${Math.random().toString(16).slice(2)}` });
  let seq = 0;
  return {
    client,
    nextSeq: () => ++seq,
    publish: (device: string, kind: EdgeTopic, payload: string | Buffer, id?: string) =>
      client.publishAsync(`${prefix}/${node}/devices/${device}/${kind}`, payload, {
        qos: 1,
        properties: { userProperties: { 'lb-msg-id': id ?? `${epoch}-${++seq}` } },
      }),
  };
}
