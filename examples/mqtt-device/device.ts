import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  applyDesired,
  defaultSettings,
  nextTemperature,
  parseDesired,
  type ThermostatSettings,
} from './thermostat.js';

export interface DeviceOptions {
  id: string;
  url: string;
  username: string | undefined;
  password: string | undefined;
  logger: Logger;
}

const identity = { model: 'lb-example-thermostat', firmware: '1.0.0' };

/**
 * The thermostat on the edge broker. On every (re)connection: `status` online (retained; its last will says
 * offline), `birth` with the properties pods get (retained), the whole reported twin, and a subscription to
 * its desired twin, whose retained copy then arrives at once. Each newer desired `$version` is applied and
 * answered on `twin/reported` (a JSON merge patch) with the settings, `desiredVersion` and what was refused.
 */
export class Thermostat {
  private readonly client: MqttClient;
  private settings: ThermostatSettings = { ...defaultSettings };
  private desiredVersion = 0;
  private temperature = 18;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: DeviceOptions) {
    this.client = mqtt.connect(o.url, {
      clientId: o.id,
      protocolVersion: 5,
      reconnectPeriod: 2_000,
      ...(o.username ? { username: o.username, password: o.password ?? '' } : {}),
      will: { topic: this.topic('status'), payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    this.client.on('connect', () => this.onConnect());
    this.client.on('message', (_topic, payload) => this.onDesired(payload));
    this.client.on('error', (err) => o.logger.warn({ err: err.message }, 'broker'));
    this.schedule();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    if (this.client.connected) {
      await this.client.publishAsync(this.topic('status'), 'offline', { qos: 1, retain: true });
    }
    await this.client.endAsync();
  }

  private topic(rest: string): string {
    return `devices/${this.o.id}/${rest}`;
  }

  private onConnect(): void {
    this.o.logger.info({ url: this.o.url }, 'connected');
    this.client.publish(this.topic('status'), 'online', { qos: 1, retain: true });
    const birth = {
      properties: { THERMOSTAT_MODEL: identity.model, THERMOSTAT_FIRMWARE: identity.firmware },
    };
    // A broker whose ACL does not know the birth topic refuses it (MQTT 5: a negative PUBACK); work on without.
    this.publish('birth', birth, 'birth refused; the mqtt discovery handler will not list this device', true);
    this.report({ ...identity, ...this.settings, desiredVersion: this.desiredVersion, refused: [] });
    this.client.subscribe(this.topic('twin/desired'), { qos: 1 });
  }

  private onDesired(payload: Buffer): void {
    const parsed = parseDesired(payload);
    if (!parsed) {
      this.o.logger.warn({ payload: payload.toString('utf8').slice(0, 200) }, 'bad desired twin');
      return;
    }
    if (parsed.version <= this.desiredVersion) return; // seen: redelivered on every (re)subscription
    const { settings, refused } = applyDesired(this.settings, parsed.desired);
    const intervalChanged = settings.telemetryIntervalMs !== this.settings.telemetryIntervalMs;
    this.settings = settings;
    this.desiredVersion = parsed.version;
    if (intervalChanged) this.schedule();
    this.o.logger.info({ desiredVersion: parsed.version, settings, refused }, 'desired twin applied');
    this.report({ ...settings, desiredVersion: parsed.version, refused });
  }

  private report(patch: Record<string, unknown>): void {
    this.publish('twin/reported', patch, 'reported twin not accepted');
  }

  private sendTelemetry(): void {
    this.temperature = nextTemperature(this.temperature, this.settings);
    const { setpoint, mode } = this.settings;
    const reading = { celsius: this.temperature, setpoint, mode, at: Date.now() };
    this.publish('telemetry/temperature', reading, 'telemetry not accepted');
  }

  private schedule(): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.sendTelemetry(), this.settings.telemetryIntervalMs);
  }

  private publish(rest: string, body: unknown, refusal: string, retain = false): void {
    this.client.publish(this.topic(rest), JSON.stringify(body), { qos: 1, retain }, (err) => {
      if (err) this.o.logger.warn({ err: err.message, topic: this.topic(rest) }, refusal);
    });
  }
}
