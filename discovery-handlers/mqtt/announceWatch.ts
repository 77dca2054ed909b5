import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { Clock } from '../../src/util/clock.js';
import { type Logger, logError } from '../../src/util/logger.js';
import { LogThrottle } from '../../src/util/logThrottle.js';
import { type Applied, applyAnnouncement } from './announcements.js';
import type { ChangeFeed } from './changeFeed.js';
import { BrokerSession, type SessionListener } from './session.js';
import type { MqttSettings } from './settings.js';
import { deviceTopics } from './topics.js';
import { DeviceTracker } from './tracker.js';

export const MqttProperty = {
  deviceId: 'MQTT_DEVICE_ID',
  brokerUrl: 'MQTT_BROKER_URL',
  telemetryTopic: 'MQTT_TELEMETRY_TOPIC',
  commandTopic: 'MQTT_COMMAND_TOPIC',
} as const;

/**
 * The broker session, the device tracker it feeds, and the bookkeeping between them: bad announcements are
 * logged (at most 10 lines a minute per kind), and every change marks the feed once the session is synced.
 */
export class AnnounceWatch implements SessionListener {
  private readonly tracker: DeviceTracker;
  private readonly session: BrokerSession;
  private readonly rejectLog: LogThrottle;
  private readonly fullLog: LogThrottle;
  private synced = false;

  constructor(
    private readonly settings: MqttSettings,
    private readonly feed: ChangeFeed,
    private readonly deps: { logger: Logger; clock: Clock },
  ) {
    this.tracker = new DeviceTracker({
      maxDevices: settings.maxDevices,
      propertyFilter: settings.propertyFilter,
      toDevice: (id, properties) => this.toDevice(id, properties),
    });
    this.session = new BrokerSession(settings, this, deps);
    this.rejectLog = new LogThrottle(deps.clock);
    this.fullLog = new LogThrottle(deps.clock);
  }

  /** True once the current session's retained messages are in: only then is the list complete. */
  get ready(): boolean {
    return this.synced;
  }

  start(): void {
    this.session.start();
  }

  close(): Promise<void> {
    return this.session.close();
  }

  list(): DiscoveredDevice[] {
    return this.tracker.list();
  }

  onSessionStart(): void {
    this.synced = false;
    this.tracker.clear();
  }

  onMessage(topic: string, payload: Buffer): void {
    try {
      const applied = applyAnnouncement(this.tracker, this.settings.rules, topic, payload);
      if (applied.result === 'applied' && this.synced) this.feed.mark();
      else this.report(applied, topic, payload.length);
    } catch (err) {
      // A bug, not bad input (that is a rejection): contained here, never thrown into mqtt.js.
      logError(this.deps.logger, 'announcement handling failed', err, { topic: topic.slice(0, 200) });
    }
  }

  onSynced(): void {
    this.synced = true;
    this.deps.logger.debug({ tracked: this.tracker.size }, 'retained announcements read');
    this.feed.mark();
  }

  private report(applied: Applied, topic: string, bytes: number): void {
    if (applied.result === 'rejected') {
      const allowed = this.rejectLog.allow();
      if (!allowed) return;
      const { id, reason } = applied;
      this.deps.logger.warn(
        { id, topic: topic.slice(0, 200), bytes, reason, ...allowed },
        'announcement ignored',
      );
    } else if (applied.result === 'full') {
      const allowed = this.fullLog.allow();
      if (!allowed) return;
      this.deps.logger.warn(
        { id: applied.id, maxDevices: this.settings.maxDevices, ...allowed },
        'device ignored: maxDevices ids are tracked already',
      );
    }
  }

  private toDevice(id: string, properties: Readonly<Record<string, string>>): DiscoveredDevice {
    const topics = deviceTopics(this.settings.rules.topics.prefix, id);
    return {
      id,
      properties: {
        ...properties,
        [MqttProperty.deviceId]: id,
        [MqttProperty.brokerUrl]: this.settings.publicUrl,
        [MqttProperty.telemetryTopic]: topics.telemetry,
        [MqttProperty.commandTopic]: topics.commands,
      },
    };
  }
}
