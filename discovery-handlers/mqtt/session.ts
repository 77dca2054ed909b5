import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type ISubscriptionGrant, type MqttClient } from 'mqtt';
import type { Clock } from '../../src/util/clock.js';
import { backoffDelay } from '../../src/util/clock.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { MqttSettings } from './settings.js';

export const sessionTimings = {
  /** The retained messages count as delivered once none arrived for this long after the SUBACK… */
  settleQuietMs: 100,
  /** …or this long after the SUBACK at the latest, so a first list comes within a second. */
  settleMaxMs: 750,
  reconnectBaseMs: 500,
  reconnectMaxMs: 30_000,
  connectTimeoutMs: 5_000,
  keepaliveSeconds: 30,
} as const;

export interface SessionListener {
  /** A new session began: what was known is to be forgotten, the retained messages will tell it again. */
  onSessionStart(): void;
  onMessage(topic: string, payload: Buffer): void;
  /** The retained messages of the new session have (most likely) all arrived. */
  onSynced(): void;
}

/**
 * One MQTT client subscribed to the announcement topics, with a clean session, reconnecting with exponential
 * backoff (mqtt.js's fixed reconnectPeriod is off; this class schedules the reconnects).
 */
export class BrokerSession {
  private client: MqttClient | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private settleQuiet: NodeJS.Timeout | undefined;
  private settleMax: NodeJS.Timeout | undefined;
  private settling = false;
  private attempt = 0;
  private closing = false;
  private lastError: string | undefined;
  private wasConnected = false;

  constructor(
    private readonly settings: MqttSettings,
    private readonly listener: SessionListener,
    private readonly deps: { logger: Logger; clock: Clock },
  ) {}

  /** Throws only when mqtt.js refuses the options (it validates the URL synchronously). */
  start(): void {
    const client = mqtt.connect(this.settings.brokerUrl, this.clientOptions());
    this.client = client;
    client.on('connect', () => this.connected(client));
    client.on('message', (topic, payload) => this.message(topic, payload));
    client.on('error', (err) => this.failed(err));
    client.on('close', () => this.closed());
  }

  async close(): Promise<void> {
    this.closing = true;
    this.clearTimers();
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
  }

  private clientOptions(): IClientOptions {
    const { username, password } = this.settings;
    return {
      clientId: `leafbridge-discovery-${randomBytes(6).toString('hex')}`,
      protocolVersion: 5,
      clean: true,
      resubscribe: false,
      reconnectPeriod: 0,
      connectTimeout: sessionTimings.connectTimeoutMs,
      keepalive: sessionTimings.keepaliveSeconds,
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
    };
  }

  private connected(client: MqttClient): void {
    this.deps.logger.info({ broker: this.settings.publicUrl, attempt: this.attempt }, 'connected to broker');
    this.attempt = 0;
    this.lastError = undefined;
    this.wasConnected = true;
    this.listener.onSessionStart();
    this.settling = true;
    const filters = [...this.settings.rules.topics.filters];
    client.subscribe(filters, { qos: 1 }, (err, granted) => {
      if (err) this.failed(err);
      else this.subscribed(granted ?? []);
    });
  }

  private subscribed(granted: ISubscriptionGrant[]): void {
    const refused = granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
    if (refused.length > 0) {
      this.deps.logger.error({ refused }, 'broker refused the subscriptions; check the handler credentials');
    }
    this.settleMax = this.deps.clock.setTimeout(() => this.synced(), sessionTimings.settleMaxMs);
    this.armQuietTimer();
  }

  private message(topic: string, payload: Buffer): void {
    this.listener.onMessage(topic, payload);
    if (this.settling && this.settleMax) this.armQuietTimer();
  }

  private armQuietTimer(): void {
    if (this.settleQuiet) this.deps.clock.clearTimeout(this.settleQuiet);
    this.settleQuiet = this.deps.clock.setTimeout(() => this.synced(), sessionTimings.settleQuietMs);
  }

  private synced(): void {
    this.clearSettleTimers();
    if (!this.settling) return;
    this.settling = false;
    this.listener.onSynced();
  }

  private failed(err: Error): void {
    const message = errorMessage(err);
    if (message === this.lastError) return;
    this.lastError = message;
    this.deps.logger.warn({ broker: this.settings.publicUrl, err: message }, 'broker connection problem');
  }

  private closed(): void {
    this.clearSettleTimers();
    this.settling = false;
    if (this.closing || this.reconnectTimer) return;
    if (this.wasConnected) {
      this.wasConnected = false;
      this.deps.logger.warn({ broker: this.settings.publicUrl }, 'lost the broker connection; reconnecting');
    }
    const delay = backoffDelay(this.attempt++, sessionTimings.reconnectBaseMs, sessionTimings.reconnectMaxMs);
    this.deps.logger.debug(
      { broker: this.settings.publicUrl, delay },
      'broker connection closed; reconnecting',
    );
    this.reconnectTimer = this.deps.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closing) this.client?.reconnect();
    }, delay);
  }

  private clearSettleTimers(): void {
    if (this.settleQuiet) this.deps.clock.clearTimeout(this.settleQuiet);
    if (this.settleMax) this.deps.clock.clearTimeout(this.settleMax);
    this.settleQuiet = undefined;
    this.settleMax = undefined;
  }

  private clearTimers(): void {
    this.clearSettleTimers();
    if (this.reconnectTimer) this.deps.clock.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
  }
}
