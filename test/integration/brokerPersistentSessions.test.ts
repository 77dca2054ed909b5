import { type MqttClient, Store } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/util/password.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { connect, startInProcessAgent, until } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';

type Version = 4 | 5;
interface Got {
  topic: string;
  payload: string;
  qos: number;
  dup: boolean;
}

const interop = { username: 'interop', password: 'interop-secret' } as const;

function clientOptions(clientId: string, protocolVersion: Version) {
  return { clientId, protocolVersion, username: interop.username, password: interop.password };
}

function sessionOptions(clientId: string, protocolVersion: Version) {
  return {
    ...clientOptions(clientId, protocolVersion),
    clean: false,
    protocolVersion,
    ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
  };
}

function record(client: MqttClient): Got[] {
  const got: Got[] = [];
  client.on('message', (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), qos: packet.qos, dup: packet.dup }),
  );
  return got;
}

/** An incoming store that never stores: mqtt.js then never sends the PUBREC. */
class SilentStore extends Store {
  override put(): this {
    return this;
  }
}

/** Waits (bounded) until `want` messages came, then a little longer for any duplicate. */
async function settled(got: Got[], want: number): Promise<void> {
  await until(() => got.filter((m) => m.payload !== 'qos0').length >= want, 5000).catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
}

describe('edge broker: persistent sessions never lose a QoS >= 1 message (mqtt.js)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function agent() {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    // The Paho interoperability topics are no device topics: a user granted every topic, as for a gateway.
    const config = agentConfig(dir.path, undefined, {
      auth: {
        allowAnonymous: false,
        users: [
          {
            username: interop.username,
            passwordHash: await hashPassword(interop.password),
            publish: ['#'],
            subscribe: ['#'],
          },
        ],
      },
    });
    let edge = await startInProcessAgent(config);
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : edge.agent.stop()));
    return {
      url: () => edge.url,
      restart: async () => {
        stopped = true;
        await edge.agent.stop();
        edge = await startInProcessAgent(config);
        stopped = false;
      },
    };
  }

  for (const version of [4, 5] as const) {
    for (const restart of [false, true]) {
      const how = `MQTT ${version === 5 ? '5' : '3.1.1'}${restart ? ', agent restarted while offline' : ''}`;

      it(`queues QoS 1 and 2 for an offline persistent session (${how})`, async () => {
        const edge = await agent();
        const id = `offline-v${version}`;
        const sub = await connect(edge.url(), sessionOptions(id, version));
        await sub.subscribeAsync('+/+', { qos: 2 });
        await sub.endAsync();

        const pub = await connect(edge.url(), clientOptions(`pub-v${version}`, version));
        await pub.publishAsync('TopicA/B', 'qos0', { qos: 0 });
        await pub.publishAsync('Topic/C', 'qos1', { qos: 1 });
        await pub.publishAsync('TopicA/C', 'qos2', { qos: 2 });
        await pub.endAsync();
        if (restart) await edge.restart();

        const again = await connect(edge.url(), sessionOptions(id, version));
        cleanups.push(() => again.endAsync(true));
        const got = record(again);
        await settled(got, 2);
        expect(
          got
            .filter((m) => m.payload !== 'qos0')
            .map((m) => m.payload)
            .sort(),
        ).toEqual(['qos1', 'qos2']);
      });

      it(`redelivers unacknowledged QoS 1 and 2 on reconnect (${how})`, async () => {
        const edge = await agent();
        const id = `inflight-v${version}`;
        const sub = await connect(edge.url(), {
          ...sessionOptions(id, version),
          incomingStore: new SilentStore(),
        });
        await sub.subscribeAsync('+/+', { qos: 2 });
        // Never acknowledge: no PUBACK (handleMessage never finishes), no PUBREC (the store never stores).
        sub.handleMessage = () => {};
        const firstRound = record(sub);
        const pub = await connect(edge.url(), clientOptions(`pub-v${version}`, version));
        await pub.publishAsync('Topic/C', 'qos1', { qos: 1 });
        await pub.publishAsync('TopicA/C', 'qos2', { qos: 2 });
        await pub.endAsync();
        await until(() => firstRound.length === 1, 5000, 'the QoS 1 message, unacknowledged');
        await new Promise((r) => setTimeout(r, 200)); // the QoS 2 PUBLISH follows it on the wire
        sub.end(true);
        if (restart) await edge.restart();

        const again = await connect(edge.url(), sessionOptions(id, version));
        cleanups.push(() => again.endAsync(true));
        const got = record(again);
        await settled(got, 2);
        expect(got.map((m) => m.payload).sort()).toEqual(['qos1', 'qos2']);
      });
    }
  }
});
