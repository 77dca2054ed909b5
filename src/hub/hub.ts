import type { IPublishPacket } from 'mqtt';
import { KubeRest } from '../kubeclient/kubeRest.js';
import { customPath } from '../kubeclient/paths.js';
import { Reflector, type ReflectorEvent } from '../kubeclient/reflector.js';
import { API_GROUP } from '../model/resources.js';
import { type Clock, systemClock } from '../util/clock.js';
import { errorMessage, PayloadError } from '../util/errors.js';
import { child, type Logger } from '../util/logger.js';
import { LogThrottle } from '../util/logThrottle.js';
import { DesiredPublisher } from './desired.js';
import { DeviceIndex, indexed } from './deviceIndex.js';
import { WriteGovernor } from './governor.js';
import { HeldStates } from './held.js';
import { type MessageId, messageIdOf, type Origin, parsePresence, parseReport } from './messages.js';
import { HubLink } from './mqttLink.js';
import { SeenIds } from './seen.js';
import type { Pending } from './statusPatch.js';
import { StatusWriter } from './statusWriter.js';
import { TelemetrySink } from './telemetrySink.js';
import { type HubTopic, HubTopics } from './topics.js';
import { emptyMetrics, type HubDevice, type HubMetrics, type HubOptions } from './types.js';

export const HUB_DEFAULTS = {
  prefix: 'leafbridge',
  group: 'leafbridge-hub',
  intervalMs: 1000,
  maxPayloadBytes: 256 * 1024,
  hold: { ms: 30_000, maxBytes: 16 * 2 ** 20 },
  concurrency: 32,
  backoff: { baseMs: 500, maxMs: 30_000 },
  probe: { baseMs: 250, maxMs: 5000 },
} as const;

/**
 * The cloud twin hub: MQTT from the edges → Device status in Kubernetes, Device `spec.desired` → MQTT.
 *
 *  - Reported twins and device presence arrive on shared subscriptions (`$share/{group}/{prefix}/+/devices/
 *    +/twin/reported`, `.../status`, `$share/{group}/{prefix}/+/agent/status`), so replicas split them.
 *  - Each is mapped to its Devices (deviceIndex.ts), dropped when this replica has seen its `lb-msg-id`
 *    (seen.ts), folded into the Device's pending state, and written at most once per interval
 *    (statusWriter.ts) as a monotonic patch (statusPatch.ts): `status.reported`, the `Connected` condition,
 *    `status.lastSeen`.
 *  - Desired twins go out retained, versioned, to every node of the Device (desired.ts).
 *  - Telemetry, when a sink is configured, goes to a JSON-lines file (telemetrySink.ts), never to the API.
 * Every input is untrusted: a message that does not parse is counted (`metrics.invalid`), logged at most 10
 * times a minute, and dropped.
 */
export class TwinHub {
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly topics: HubTopics;
  private readonly index = new DeviceIndex();
  private readonly seen = new SeenIds();
  private readonly held: HeldStates;
  private readonly rest: KubeRest;
  private readonly reflector: Reflector<HubDevice>;
  private readonly writer: StatusWriter;
  private readonly desired: DesiredPublisher;
  private readonly link: HubLink;
  private readonly sink: TelemetrySink | undefined;
  private readonly governor: WriteGovernor;
  private readonly badInput: LogThrottle;
  private readonly counters = emptyMetrics();
  private readonly maxPayloadBytes: number;
  private expiryTimer?: NodeJS.Timeout;
  private linkReady!: () => void;
  private readonly subscribed = new Promise<void>((resolve) => {
    this.linkReady = resolve;
  });

  constructor(o: HubOptions) {
    this.logger = child(o.logger, 'hub');
    this.clock = o.clock ?? systemClock;
    this.topics = new HubTopics(o.prefix ?? HUB_DEFAULTS.prefix, o.group ?? HUB_DEFAULTS.group);
    this.maxPayloadBytes = o.maxPayloadBytes ?? HUB_DEFAULTS.maxPayloadBytes;
    this.held = new HeldStates(o.hold ?? HUB_DEFAULTS.hold);
    this.badInput = new LogThrottle(this.clock, 10, 60_000);
    const concurrency = o.concurrency ?? HUB_DEFAULTS.concurrency;
    // One keep-alive connection pool for the watch and every status write (see KubeRest).
    this.rest = new KubeRest(o.kubeConfig);
    const resource = { group: API_GROUP, version: 'v1alpha1', namespace: o.namespace, plural: 'devices' };
    const backoff = o.backoff ?? HUB_DEFAULTS.backoff;
    const probe = o.probe ?? HUB_DEFAULTS.probe;
    this.reflector = new Reflector<HubDevice>({
      rest: this.rest,
      path: customPath(resource),
      logger: child(o.logger, 'hub:devices'),
      backoff: { baseMs: Math.min(backoff.baseMs, probe.baseMs), maxMs: probe.maxMs },
      what: 'device',
      normalize: (d) => d,
      emit: (e) => this.onDevice(e),
    });
    this.writer = new StatusWriter({
      rest: this.rest,
      namespace: o.namespace,
      logger: child(o.logger, 'hub:status'),
      metrics: this.counters,
      intervalMs: o.intervalMs ?? HUB_DEFAULTS.intervalMs,
      concurrency,
      backoff,
      probe,
      known: (name) => this.reflector.known.get(name),
      onRefused: (device, err) => this.warnThrottled({ device, err }, 'Device status write refused; dropped'),
    });
    this.governor = new WriteGovernor(concurrency, (limit) => this.writer.setConcurrency(limit));
    this.link = new HubLink({
      hub: o,
      logger: child(o.logger, 'hub:mqtt'),
      filters: (shared) => this.topics.filters(shared, o.telemetry !== undefined),
      onMessage: (topic, payload, packet) => this.onMessage(topic, payload, packet),
      onReady: () => {
        this.linkReady();
        this.desired.sync();
      },
    });
    this.desired = new DesiredPublisher({
      topics: this.topics,
      index: this.index,
      metrics: this.counters,
      logger: child(o.logger, 'hub:desired'),
      maxPayloadBytes: this.maxPayloadBytes,
      publish: (topic, payload) => this.link.publish(topic, payload),
      connected: () => this.link.connected,
    });
    this.sink = o.telemetry ? new TelemetrySink(o.telemetry, this.counters, this.logger) : undefined;
  }

  /** The counters, as of now. */
  get metrics(): HubMetrics {
    return {
      ...this.counters,
      received: { ...this.counters.received },
      invalid: { ...this.counters.invalid },
      pendingDevices: this.writer.backlog,
      writeConcurrency: this.governor.limit,
      connects: this.link.connects,
      sessionsResumed: this.link.resumed,
    };
  }

  /** Devices the hub knows (from its watch). */
  get devices(): number {
    return this.index.size;
  }

  /** Starts the watch and the broker connection; resolves once the Devices are listed and subscribed. */
  async start(): Promise<void> {
    this.reflector.start();
    this.link.start();
    this.governor.start();
    this.expiryTimer = setInterval(() => {
      this.counters.heldDropped += this.held.expire(this.clock.now());
    }, 1000);
    this.expiryTimer.unref();
    await Promise.all([this.reflector.firstSync, this.subscribed]);
    this.logger.info({ devices: this.index.size }, 'hub ready');
  }

  /** Stops taking messages, writes what is pending (for up to `drainMs`), and stops. */
  async stop(drainMs = 2000): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.governor.stop();
    await this.link.stop();
    await this.writer.drain(drainMs);
    this.writer.close();
    this.reflector.stop();
    this.rest.close();
    await this.sink?.close();
  }

  // ------------------------------------------------------------------------------------- Devices

  private onDevice(e: ReflectorEvent<HubDevice>): void {
    const name = e.object.metadata.name;
    if (e.type === 'DELETED') {
      this.index.remove(name);
      this.desired.remove(name);
      this.writer.forget(name);
      return;
    }
    this.writer.observed(e.object);
    const d = indexed(e.object);
    if (!d) {
      this.index.remove(name);
      this.desired.remove(name);
      return;
    }
    this.index.put(d);
    this.desired.update(name, d, e.object.spec?.desired);
    this.held.take(d.id, (node, pending) => {
      const names = this.index.lookup(node, d.id);
      if (names.length === 0) return false;
      for (const n of names) this.writer.offer(n, pending);
      this.counters.heldApplied++;
      return true;
    });
  }

  // ------------------------------------------------------------------------------------ messages

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const t = this.topics.parse(topic);
    if (!t) {
      this.counters.received.other++;
      this.refuse('TOPIC_UNKNOWN', topic);
      return;
    }
    this.counters.received[t.kind]++;
    try {
      if (payload.length > this.maxPayloadBytes) {
        throw new PayloadError('PAYLOAD_TOO_LARGE', `${payload.length} bytes, over ${this.maxPayloadBytes}`);
      }
      const msgId = messageIdOf(packet.properties);
      if (msgId && this.seen.check(t.node, msgId)) {
        this.counters.duplicates++;
        return;
      }
      this.dispatch(t, payload, msgId);
    } catch (err) {
      if (err instanceof PayloadError) this.refuse(err.code, topic, err.message);
      else {
        this.counters.invalid.INTERNAL = (this.counters.invalid.INTERNAL ?? 0) + 1;
        this.logger.error({ topic: topic.slice(0, 200), err: errorMessage(err) }, 'message handling failed');
      }
    }
  }

  private dispatch(t: HubTopic, payload: Buffer, msgId: MessageId | undefined): void {
    const receivedAt = this.clock.now();
    switch (t.kind) {
      case 'agentStatus': {
        const value = payload.toString('utf8');
        if (value === 'online') this.desired.resendNode(t.node);
        else if (value !== 'offline')
          throw new PayloadError('STATUS_INVALID', 'agent status must be online or offline');
        return;
      }
      case 'telemetry':
        this.sink?.write(
          {
            node: t.node,
            device: t.device,
            stream: t.stream,
            ...(msgId ? { msgId: msgId.text } : {}),
            receivedAt: new Date(receivedAt).toISOString(),
          },
          payload,
        );
        return;
      case 'reported':
      case 'status': {
        const origin: Origin = { node: t.node, receivedAt, ...(msgId ? { epoch: msgId.epoch } : {}) };
        const pending: Pending =
          t.kind === 'reported'
            ? { report: parseReport(payload, origin) }
            : { presence: parsePresence(payload, origin, msgId) };
        this.accept(t.node, t.device, pending, payload.length, receivedAt);
        return;
      }
    }
  }

  private accept(node: string, id: string, pending: Pending, bytes: number, now: number): void {
    const names = this.index.lookup(node, id);
    if (names.length === 0) {
      this.counters.unknownDevice++;
      this.counters.heldDropped += this.held.hold(node, id, pending, bytes, now);
      return;
    }
    let newer = false;
    for (const name of names) newer = this.writer.offer(name, pending) || newer;
    if (newer) this.counters.accepted++;
    else this.counters.stale++;
  }

  private refuse(reason: string, topic: string, detail?: string): void {
    this.counters.invalid[reason] = (this.counters.invalid[reason] ?? 0) + 1;
    this.warnThrottled(
      { reason, topic: topic.slice(0, 200), ...(detail ? { detail } : {}) },
      'message dropped',
    );
  }

  private warnThrottled(fields: Record<string, unknown>, msg: string): void {
    const allowed = this.badInput.allow();
    if (!allowed) return;
    this.logger.warn(
      { ...fields, ...(allowed.suppressed > 0 ? { suppressed: allowed.suppressed } : {}) },
      msg,
    );
  }
}
