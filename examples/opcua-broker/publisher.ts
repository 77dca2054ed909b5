import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { PlcValue } from './plcClient.js';
import type { MqttSettings } from './settings.js';

/**
 * Publishes each value to the agent's edge broker as telemetry of the Device, `devices/{id}/telemetry/{name}`,
 * from where leafbridge forwards it upstream (and through outages, from its outbox). While the broker is
 * unreachable values are dropped, not queued: the next change brings the variable up to date.
 */
export class ValuePublisher {
  private readonly client: MqttClient;
  private dropped = 0;

  constructor(
    private readonly settings: MqttSettings,
    private readonly logger: Logger,
  ) {
    const { deviceId } = settings;
    this.client = mqtt.connect(settings.url, {
      clientId: `opcua-broker-${deviceId}`.slice(0, 64),
      protocolVersion: 5,
      reconnectPeriod: 2_000,
      connectTimeout: 10_000,
      ...(settings.username ? { username: settings.username, password: settings.password ?? '' } : {}),
      will: { topic: `devices/${deviceId}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    this.client.on('connect', () => {
      logger.info({ url: settings.url, deviceId, dropped: this.dropped }, 'connected to the edge broker');
      this.client.publish(`devices/${deviceId}/status`, 'online', { qos: 1, retain: true });
    });
    this.client.on('error', (err) => logger.warn({ err: err.message }, 'edge broker'));
  }

  publish(value: PlcValue): void {
    if (!this.client.connected) {
      this.dropped += 1;
      return;
    }
    const payload = JSON.stringify({
      value: value.value,
      status: value.status,
      sourceTimestamp: value.sourceTimestamp,
    });
    const topic = `devices/${this.settings.deviceId}/telemetry/${value.name.replace(/[#+/]/g, '_')}`;
    this.client.publish(topic, payload, { qos: 1 }, (err) => {
      if (err) this.logger.warn({ topic, err: err.message }, 'value not published');
    });
  }

  async close(): Promise<void> {
    if (this.client.connected) {
      await this.client
        .publishAsync(`devices/${this.settings.deviceId}/status`, 'offline', { qos: 1, retain: true })
        .catch(() => {});
    }
    await this.client.endAsync().catch(() => {});
  }
}
