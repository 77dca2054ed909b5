import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Condition, DiscoveryConfigObject } from '../model/resources.js';
import { parseEdgeTopic } from '../model/topics.js';
import type { DeviceStore } from '../registry/deviceStore.js';
import type { SyncEventBus, SyncedMessage } from '../sync/syncEvents.js';
import type { Twin } from '../sync/twins.js';
import { type Clock, systemClock } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { Ring } from '../util/ring.js';
import { type SseEvent, SseHub, type SseHubOptions } from './events.js';
import { sendJson } from './http.js';
import { TelemetryStats } from './telemetryStats.js';

export const UpstreamState = { connected: 'connected', disconnected: 'disconnected', none: 'none' } as const;
export type UpstreamState = (typeof UpstreamState)[keyof typeof UpstreamState];

/** One sample of the agent's sync state, taken every `sampleIntervalMs`. */
export interface LiveSample {
  /** Epoch ms. */
  t: number;
  outboxMessages: number;
  outboxBytes: number;
  upstream: UpstreamState;
  /** Device messages accepted, since the agent started. */
  received: number;
  /** Messages acknowledged by the upstream broker, since the agent started. */
  forwarded: number;
  /** Messages dropped by the outbox overflow policy, since the agent started. */
  dropped: number;
}

export interface TwinView extends Twin {
  device: string;
}

/** The feed's name as the owner of its event listeners. */
const LISTENER = 'api:live';

export interface LiveFeedOptions {
  node: string;
  logger: Logger;
  /** Read once per sample. */
  sample: () => Omit<LiveSample, 't'>;
  devices: Pick<DeviceStore, 'list' | 'watch'>;
  /** The configs with this node's runtime conditions, as the API serves them. */
  configs: () => DiscoveryConfigObject[];
  twins: { devices(): string[]; get(device: string): Twin };
  /** The sync layer's accepted messages and desired twins, listened to only while a page watches. */
  events: Pick<SyncEventBus, 'on' | 'removeOwner'>;
  clock?: Clock;
  /** Default 1 s. */
  sampleIntervalMs?: number;
  /** Samples kept for a page that opens later. Default 600 (ten minutes at one a second). */
  historySamples?: number;
  /** Devices whose telemetry is tracked, and twins sent, at most. Default 1000. */
  maxDevices?: number;
  stream?: Pick<SseHubOptions, 'maxClients' | 'maxBufferedBytes' | 'heartbeatMs' | 'retryMs'>;
}

/**
 * What the dashboard watches, as server-sent events on `GET /api/v1/events`: a snapshot when a page
 * connects (`hello`, `samples`, `devices`, `configs`, `twins`, `telemetry`), then a `sample` every
 * interval and the `devices`, `configs`, `twins` and `telemetry` that changed. The sample ring runs
 * always (one read of a few counters a second); telemetry and twin changes are tracked only while a page
 * is open: only then does the feed listen to the sync layer's events.
 */
export class LiveFeed {
  readonly samples: Ring<LiveSample>;
  private readonly hub: SseHub;
  private readonly clock: Clock;
  private readonly interval: number;
  private readonly maxDevices: number;
  private timer?: NodeJS.Timeout;
  private telemetry?: TelemetryStats;
  private readonly dirtyTwins = new Set<string>();
  private devicesDirty = false;
  private unwatchDevices?: () => void;
  private lastConfigs = '';
  private failing = false;

  constructor(private readonly o: LiveFeedOptions) {
    this.clock = o.clock ?? systemClock;
    this.interval = o.sampleIntervalMs ?? 1000;
    this.maxDevices = o.maxDevices ?? 1000;
    this.samples = new Ring(o.historySamples ?? 600);
    this.hub = new SseHub({
      ...o.stream,
      logger: o.logger,
      onWatching: (on) => (on ? this.startWatching() : this.stopWatching()),
    });
  }

  start(): void {
    this.schedule();
  }

  stop(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.hub.close();
  }

  /** Pages watching now. */
  get watchers(): number {
    return this.hub.size;
  }

  /** `GET /api/v1/events`. */
  readonly route = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    if (url.pathname !== '/api/v1/events')
      return sendJson(res, 404, { status: 'error', error: { code: 'NOT_FOUND', message: url.pathname } });
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      return sendJson(res, 405, {
        status: 'error',
        error: { code: 'METHOD_NOT_ALLOWED', message: 'GET only' },
      });
    }
    this.hub.open(req, res, this.hub.full ? [] : await this.snapshot());
  };

  private twinChanged(device: string): void {
    if (this.hub.size > 0 && this.dirtyTwins.size < this.maxDevices) this.dirtyTwins.add(device);
  }

  private schedule(): void {
    this.timer = this.clock.setTimeout(() => {
      this.schedule();
      this.tick();
    }, this.interval);
    this.timer.unref?.();
  }

  private tick(): void {
    try {
      const sample: LiveSample = { t: this.clock.now(), ...this.o.sample() };
      this.samples.push(sample);
      if (this.hub.size === 0) return;
      this.hub.broadcast([{ event: 'sample', data: sample }, ...this.changes()]);
      if (this.devicesDirty) void this.pushDevices();
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.o.logger.error({ err: errorMessage(err) }, 'live feed sample failed');
      this.failing = true;
    }
  }

  private changes(): SseEvent[] {
    const events: SseEvent[] = [];
    const telemetry = this.telemetry?.tick() ?? [];
    if (telemetry.length > 0) events.push({ event: 'telemetry', data: { items: telemetry } });
    if (this.dirtyTwins.size > 0) {
      const items = [...this.dirtyTwins].map((device) => this.twin(device));
      this.dirtyTwins.clear();
      events.push({ event: 'twins', data: { items } });
    }
    const configs = this.o.configs();
    const text = JSON.stringify(configs);
    if (text !== this.lastConfigs) {
      this.lastConfigs = text;
      events.push({ event: 'configs', data: { items: configs } });
    }
    return events;
  }

  private async pushDevices(): Promise<void> {
    this.devicesDirty = false;
    try {
      const items = await this.o.devices.list();
      this.hub.broadcast([{ event: 'devices', data: { items } }]);
    } catch (err) {
      this.devicesDirty = true;
      this.o.logger.warn({ err: errorMessage(err) }, 'live feed: devices not listed');
    }
  }

  private async snapshot(): Promise<SseEvent[]> {
    const devices = await this.o.devices.list();
    const twins = this.o.twins
      .devices()
      .slice(0, this.maxDevices)
      .map((d) => this.twin(d));
    return [
      {
        event: 'hello',
        data: { node: this.o.node, sampleIntervalMs: this.interval, historySamples: this.samples.capacity },
      },
      { event: 'samples', data: { items: this.samples.items() } },
      { event: 'devices', data: { items: devices } },
      { event: 'configs', data: { items: this.o.configs() } },
      { event: 'twins', data: { items: twins } },
      { event: 'telemetry', data: { items: this.telemetry?.all() ?? [] } },
    ];
  }

  private twin(device: string): TwinView {
    return { device, ...this.o.twins.get(device) };
  }

  private startWatching(): void {
    const stats = new TelemetryStats(this.maxDevices, this.interval / 1000);
    this.telemetry = stats;
    this.lastConfigs = JSON.stringify(this.o.configs());
    this.unwatchDevices = this.o.devices.watch(() => {
      this.devicesDirty = true;
    });
    this.o.events.on('accepted', LISTENER, (message) => this.observe(stats, message));
    this.o.events.on('desired', LISTENER, (device) => this.twinChanged(device));
  }

  /** Telemetry into the stats; a reported twin marks its device's twin as changed. */
  private observe(stats: TelemetryStats, { topic, payload }: SyncedMessage): void {
    try {
      const parsed = parseEdgeTopic(topic);
      if (parsed?.kind === 'telemetry') stats.record(parsed.device, parsed.stream, payload, this.clock.now());
      else if (parsed?.kind === 'reported') this.twinChanged(parsed.device);
    } catch (err) {
      this.o.logger.debug({ err: errorMessage(err) }, 'live feed: message not observed');
    }
  }

  private stopWatching(): void {
    this.o.events.removeOwner(LISTENER);
    this.telemetry = undefined;
    this.unwatchDevices?.();
    this.unwatchDevices = undefined;
    this.dirtyTwins.clear();
    this.devicesDirty = false;
  }
}

/** The config with this node's runtime conditions replacing stored ones of the same type (a copy). */
export function withRuntimeConditions(
  config: DiscoveryConfigObject,
  runtime: Condition[],
): DiscoveryConfigObject {
  if (runtime.length === 0) return config;
  const types = new Set(runtime.map((c) => c.type));
  const stored = (config.status?.conditions ?? []).filter((c) => !types.has(c.type));
  return {
    ...config,
    status: { ...config.status, devices: config.status?.devices ?? 0, conditions: [...stored, ...runtime] },
  };
}
