import mqtt, { type MqttClient } from 'mqtt';

export interface MqttSensorOptions {
  /** The edge broker, e.g. mqtt://127.0.0.1:1883. */
  url: string;
  id: string;
  username?: string;
  password?: string;
  /** Telemetry period; default 1 s. */
  intervalMs?: number;
  /** Extra properties announced in the birth message (read by the mqtt discovery handler). */
  properties?: Record<string, string>;
  protocolVersion?: 4 | 5;
}

export interface MqttSensor {
  readonly id: string;
  /** The desired twin last applied, and how many telemetry messages were acknowledged. */
  readonly state: { desired: Record<string, unknown>; desiredVersion: number; sent: number };
  stop(): Promise<void>;
  /** Vanish without a DISCONNECT, so the broker publishes the last will. */
  crash(): void;
}

/**
 * A simulated MQTT sensor: a retained birth message (`devices/{id}/status` online, with the last will
 * offline), temperature telemetry, a reported twin, and desired twin changes applied and reported back.
 */
export async function startMqttSensor(options: MqttSensorOptions): Promise<MqttSensor> {
  const { id } = options;
  const state = { desired: {} as Record<string, unknown>, desiredVersion: 0, sent: 0 };
  const client = mqtt.connect(options.url, {
    clientId: id,
    protocolVersion: options.protocolVersion ?? 5,
    reconnectPeriod: 1000,
    ...(options.username ? { username: options.username } : {}),
    ...(options.password ? { password: options.password } : {}),
    will: { topic: `devices/${id}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  client.on('connect', () => announce(client, id, options.properties));
  await announce(client, id, options.properties);
  client.on('message', (topic, payload) => {
    if (topic !== `devices/${id}/twin/desired`) return;
    applyDesired(client, id, state, payload);
  });
  await client.subscribeAsync(`devices/${id}/twin/desired`, { qos: 1 });
  let interval = 20;
  const timer = setInterval(() => {
    interval = 20 + 5 * Math.sin(Date.now() / 60_000) + Math.random() * 0.5;
    client
      .publishAsync(
        `devices/${id}/telemetry/temperature`,
        JSON.stringify({ celsius: Number(interval.toFixed(2)), at: Date.now() }),
        { qos: 1 },
      )
      .then(
        () => state.sent++,
        () => {},
      );
  }, options.intervalMs ?? 1000);
  return {
    id,
    state,
    async stop() {
      clearInterval(timer);
      await client.publishAsync(`devices/${id}/status`, 'offline', { qos: 1, retain: true }).catch(() => {});
      await client.endAsync();
    },
    crash() {
      clearInterval(timer);
      client.stream.destroy();
      client.end(true);
    },
  };
}

async function announce(
  client: MqttClient,
  id: string,
  properties: Record<string, string> | undefined,
): Promise<void> {
  await client.publishAsync(`devices/${id}/status`, 'online', { qos: 1, retain: true });
  await client.publishAsync(
    `devices/${id}/twin/reported`,
    JSON.stringify({ model: 'lb-sim-temp', firmware: '1.0.0', ...properties }),
    { qos: 1 },
  );
}

function applyDesired(client: MqttClient, id: string, state: MqttSensor['state'], payload: Buffer): void {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    return;
  }
  const version = typeof doc.$version === 'number' ? doc.$version : 0;
  if (version <= state.desiredVersion) return;
  const { $version: _v, ...desired } = doc;
  state.desired = desired;
  state.desiredVersion = version;
  // A real device would act on it; the simulator reports that it did.
  client.publish(`devices/${id}/twin/reported`, JSON.stringify(desired), { qos: 1 });
}
