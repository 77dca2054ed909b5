import type { RemoteInfo } from 'node:dgram';
import http from 'node:http';
import https from 'node:https';
import type { DiscoveredDevice, DiscoveryContext } from '../../src/model/handler.js';
import { errorMessage } from '../../src/util/errors.js';
import { logError } from '../../src/util/logger.js';
import { LogThrottle } from '../../src/util/logThrottle.js';
import { ChangeFeed } from './changeFeed.js';
import { OnvifError } from './errors.js';
import { cidrContains, normalizeUuid, passesAnnouncementFilters, passesDeviceFilters } from './filters.js';
import { Limiter } from './limiter.js';
import { wsDiscovery } from './namespaces.js';
import type { OnvifOptions } from './options.js';
import { buildDevice, type CameraTarget, type QueryFailure } from './properties.js';
import { queryCamera } from './queryCamera.js';
import { CameraTable, type TrackedCamera } from './tracker.js';
import { DatagramSource, type DiscoveryTransport, openTransport } from './transport.js';
import {
  buildProbe,
  type DiscoveryMessage,
  type Endpoint,
  newMessageId,
  parseDiscoveryMessage,
} from './wsDiscoveryMessages.js';

const rememberedProbes = 8;
const minTriggeredProbeGapMs = 1_000;

/**
 * WS-Discovery on one interface, plus reading each camera over SOAP. Announcements (Hello, Bye) drive it;
 * a slow re-probe is the safety net. Constructed idle; `start()` opens the sockets.
 */
export class OnvifDiscovery {
  private readonly table: CameraTable;
  private readonly feed = new ChangeFeed<DiscoveredDevice[]>();
  private readonly limiter: Limiter;
  private readonly badPackets: LogThrottle;
  private readonly agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 2 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 2 }),
  };
  private readonly probeIds: string[] = [];
  private transport: DiscoveryTransport | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastProbeAt = Number.NEGATIVE_INFINITY;
  private droppedWhileFull = 0;
  private stopped = false;

  constructor(
    private readonly options: OnvifOptions,
    private readonly ctx: DiscoveryContext,
  ) {
    this.table = new CameraTable(options.maxDevices);
    this.limiter = new Limiter(options.maxConcurrentQueries);
    this.badPackets = new LogThrottle(ctx.clock);
  }

  async start(): Promise<void> {
    const address = this.options.bound.address;
    this.transport = await openTransport(
      address,
      (m, from, source) => this.onDatagram(m, from, source),
      this.ctx.logger,
    );
    this.ctx.logger.info({ interface: address }, 'ONVIF discovery started');
    await this.probeRound(true);
  }

  /** The full device list, each time it changes; ends when the context's signal aborts. */
  lists(): AsyncGenerator<DiscoveredDevice[]> {
    return this.feed.snapshots(() => this.table.devices(), this.ctx.signal);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) this.ctx.clock.clearTimeout(this.timer);
    for (const camera of this.table.all()) camera.query?.abort();
    this.limiter.drain();
    await this.transport?.close();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private async probeRound(first: boolean): Promise<void> {
    const startedAt = this.ctx.clock.now();
    await this.sendProbe();
    this.timer = this.ctx.clock.setTimeout(
      () => this.endRound(startedAt, first),
      this.options.probeTimeoutMs,
    );
  }

  private async sendProbe(): Promise<void> {
    const id = newMessageId();
    this.probeIds.push(id);
    if (this.probeIds.length > rememberedProbes) this.probeIds.shift();
    this.lastProbeAt = this.ctx.clock.now();
    try {
      await this.transport?.sendProbe(buildProbe(id));
    } catch (err) {
      logError(this.ctx.logger, 'sending the WS-Discovery probe failed', err);
    }
  }

  /** After each probe window: forget cameras silent for three rounds, retry failed ones, schedule the next. */
  private endRound(startedAt: number, first: boolean): void {
    if (this.stopped) return;
    const round = this.options.probeIntervalMs + this.options.probeTimeoutMs;
    let removed = false;
    for (const camera of this.table.unseenSince(startedAt - 2.5 * round)) {
      this.table.remove(camera.target.id);
      this.ctx.logger.info({ id: camera.target.id }, 'camera silent for three probe rounds, dropped');
      removed = true;
    }
    for (const camera of this.table.all())
      if (camera.failure !== undefined && !camera.query) this.scheduleQuery(camera);
    if (first || removed) this.feed.notify();
    this.timer = this.ctx.clock.setTimeout(() => void this.probeRound(false), this.options.probeIntervalMs);
  }

  private onDatagram(message: Buffer, from: RemoteInfo, source: DatagramSource): void {
    const parsed = this.read(message, from);
    if (!parsed) return;
    try {
      this.dispatch(parsed, from, source);
    } catch (err) {
      logError(this.ctx.logger, 'handling a WS-Discovery message failed', err, { from: from.address });
    }
  }

  /** Parses a datagram, or drops it (oversized, hostile, malformed) and says so in a throttled log line. */
  private read(message: Buffer, from: RemoteInfo): DiscoveryMessage | undefined {
    if (this.stopped) return undefined;
    if (message.length > wsDiscovery.maxDatagramBytes) {
      this.drop('oversized datagram', from);
      return undefined;
    }
    const head = message.toString('latin1', 0, Math.min(message.length, 4_096));
    if (!/ProbeMatch|Hello|Bye/.test(head)) return undefined;
    try {
      return parseDiscoveryMessage(message.toString('utf8'));
    } catch (err) {
      this.drop(errorMessage(err), from);
      return undefined;
    }
  }

  private dispatch(message: DiscoveryMessage, from: RemoteInfo, source: DatagramSource): void {
    const onLink = source === DatagramSource.group && cidrContains(this.options.bound.subnet, from.address);
    if (message.kind === 'probeMatches') {
      const ours = source === DatagramSource.probe && this.probeIds.includes(message.relatesTo);
      if (!ours) this.drop('ProbeMatches that answer none of our probes', from);
      else for (const endpoint of message.endpoints) this.announce(endpoint);
    } else if (message.kind === 'hello' || message.kind === 'bye') {
      if (!onLink) this.drop(`${message.kind} from off the interface`, from);
      else if (message.kind === 'hello') this.announce(message.endpoint);
      else this.bye(message.address);
    }
  }

  private drop(why: string, from: RemoteInfo): void {
    const allowed = this.badPackets.allow();
    if (allowed)
      this.ctx.logger.warn({ from: from.address, ...allowed }, `WS-Discovery datagram dropped: ${why}`);
  }

  private announce(endpoint: Endpoint): void {
    const target = targetOf(endpoint, this.options);
    if (!target) {
      if (this.ctx.clock.now() - this.lastProbeAt >= minTriggeredProbeGapMs) void this.sendProbe();
      return;
    }
    const camera = { uuid: target.id, ipAddress: target.ipAddress, scopes: target.scopes };
    if (!passesAnnouncementFilters(this.options.filters, camera)) {
      if (this.table.remove(target.id)) this.feed.notify();
      return;
    }
    const result = this.table.upsert(target, endpoint.metadataVersion, this.ctx.clock.now());
    if (result === 'full') {
      this.rejectWhileFull(target.id);
      return;
    }
    this.droppedWhileFull = 0;
    const tracked = this.table.get(target.id);
    if (tracked && (result !== 'same' || this.retryDue(tracked))) this.scheduleQuery(tracked);
  }

  /** A camera that could not be read is read again when it announces itself, at most once per probe window. */
  private retryDue(camera: TrackedCamera): boolean {
    const gap = this.ctx.clock.now() - camera.queriedAt;
    return camera.failure !== undefined && !camera.query && gap >= this.options.probeTimeoutMs;
  }

  private rejectWhileFull(id: string): void {
    if (this.droppedWhileFull++ === 0) {
      this.ctx.logger.warn(
        { id, maxDevices: this.options.maxDevices },
        'camera ignored: the tracked-camera limit (maxDevices) is reached',
      );
    }
  }

  private bye(address: string): void {
    const removed = this.table.remove(normalizeUuid(address));
    if (!removed) return;
    this.ctx.logger.info({ id: removed.target.id }, 'camera said Bye');
    if (removed.device) this.feed.notify();
  }

  private scheduleQuery(camera: TrackedCamera): void {
    const generation = ++camera.generation;
    camera.query?.abort();
    camera.query = undefined;
    this.limiter
      .run(() => this.runQuery(camera, generation))
      .catch((err) => {
        logError(this.ctx.logger, 'camera query crashed', err, { id: camera.target.id });
      });
  }

  private current(camera: TrackedCamera, generation: number): boolean {
    return !this.stopped && this.table.get(camera.target.id) === camera && camera.generation === generation;
  }

  private async runQuery(camera: TrackedCamera, generation: number): Promise<void> {
    if (!this.current(camera, generation)) return;
    const controller = new AbortController();
    camera.query = controller;
    const { target } = camera;
    const credentials = this.options.credentialsFor({ uuid: target.id, ipAddress: target.ipAddress });
    const result = await queryCamera(target, credentials, {
      clock: this.ctx.clock,
      timeoutMs: this.options.soapTimeoutMs,
      maxResponseBytes: this.options.maxResponseBytes,
      signal: controller.signal,
      agent: this.agents,
    });
    if (!this.current(camera, generation)) return;
    camera.query = undefined;
    camera.queriedAt = this.ctx.clock.now();
    this.logOutcome(camera, result.failure);
    camera.device = buildDevice(target, result.facts, result.failure);
    camera.visible = passesDeviceFilters(this.options.filters, result.facts);
    this.feed.notify();
  }

  /**
   * Changes of state only: the first failure and a change of reason at error, the recovery at info. The same
   * failure again (a camera retried on every announcement) goes to debug.
   */
  private logOutcome(camera: TrackedCamera, failure: QueryFailure | undefined): void {
    const { target } = camera;
    const fields = { id: target.id, url: target.deviceServiceUrl };
    const before = camera.failure;
    camera.failure = failure?.code;
    if (!failure) {
      if (before !== undefined) this.ctx.logger.info({ ...fields, was: before }, 'camera can be read again');
      return;
    }
    if (failure.code === before) {
      this.ctx.logger.debug(
        { ...fields, reason: failure.code },
        `camera still cannot be read: ${failure.message}`,
      );
      return;
    }
    const err =
      failure.error instanceof Error ? failure.error : new OnvifError(failure.code, failure.message);
    logError(this.ctx.logger, `camera could not be read: ${failure.message}`, err, {
      ...fields,
      reason: failure.code,
    });
  }
}

/** The device service URL to use: an http(s) XAddr, preferring one on the interface's subnet. */
export function targetOf(endpoint: Endpoint, options: Pick<OnvifOptions, 'bound'>): CameraTarget | undefined {
  const urls = endpoint.xaddrs.flatMap((x) => {
    try {
      const url = new URL(x);
      return url.protocol === 'http:' || url.protocol === 'https:' ? [url] : [];
    } catch {
      return [];
    }
  });
  const onLink = urls.find((u) => cidrContains(options.bound.subnet, u.hostname));
  const chosen = onLink ?? urls[0];
  if (!chosen) return undefined;
  const id = normalizeUuid(endpoint.address);
  const former = endpoint.address
    .trim()
    .replace(/^urn:uuid:/i, '')
    .toLowerCase();
  return {
    id,
    ...(former !== id && { formerId: former }),
    deviceServiceUrl: chosen.href,
    ipAddress: /^\d+\.\d+\.\d+\.\d+$/.test(chosen.hostname) ? chosen.hostname : undefined,
    scopes: endpoint.scopes,
  };
}
