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
  /**
   * Publish the retained birth message `devices/{id}/birth` after the `online` status. A broker that refuses
   * it with an MQTT 5 negative PUBACK does not stop the sensor; a 3.1.1 broker can only refuse by dropping
   * the connection, so the default is true for MQTT 5 and false for 3.1.1.
   */
  birth?: boolean;
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

/** What the sensor announces in its birth message, before the caller's extra properties. */
export const sensorBirthProperties = { SENSOR_MODEL: 'lb-sim-temp', SENSOR_FIRMWARE: '1.0.0' } as const;

/**
 * A simulated MQTT sensor: retained presence (`devices/{id}/status` online, with the last will offline), a
 * retained birth message with its properties (`devices/{id}/birth`, read by the mqtt discovery handler),
 * temperature telemetry, a reported twin, and desired twin changes applied and reported back. Stopping sets
 * the status offline and leaves the birth in place.
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
  const announceNow = () => announce(client, id, options);
  client.on('connect', () => void announceNow().catch(() => {}));
  await announceNow();
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

async function announce(client: MqttClient, id: string, options: MqttSensorOptions): Promise<void> {
  const { properties } = options;
  await client.publishAsync(`devices/${id}/status`, 'online', { qos: 1, retain: true });
  if (options.birth ?? true) {
    const birth = JSON.stringify({ properties: { ...sensorBirthProperties, ...properties } });
    // Brokers whose ACL does not know the birth topic refuse it; the sensor works on without.
    await client.publishAsync(`devices/${id}/birth`, birth, { qos: 1, retain: true }).catch(() => {});
  }
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
