import { systemClock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { LogThrottle } from '../util/logThrottle.js';
import type { DeviceIndex, IndexedDevice } from './deviceIndex.js';
import { type HubTopics, topicLevelOk } from './topics.js';
import type { HubMetrics } from './types.js';

export interface DesiredOptions {
  topics: HubTopics;
  index: DeviceIndex;
  metrics: HubMetrics;
  logger: Logger;
  maxPayloadBytes: number;
  /** Publishes retained at QoS 1; resolves on the broker's PUBACK. */
  publish: (topic: string, payload: Buffer) => Promise<void>;
  connected: () => boolean;
}

interface Want {
  id: string;
  version: number;
  payload: Buffer;
}

/**
 * Desired twins, Device `spec.desired` → `{prefix}/{node}/devices/{id}/twin/desired` (retained, QoS 1), for
 * every node the Device is on (deviceIndex.ts `targets`). Per (Device, node) the hub remembers the version it
 * has handed to the broker and publishes only a higher one; a publish that fails is forgotten, so the next
 * connection publishes it again. On start every Device's twin is published once (the broker may have lost
 * its retained store), and when an edge says `online` on `{prefix}/{node}/agent/status` that node's twins go
 * again: retained messages cover an edge that reconnects, this covers a cloud broker that lost them.
 *
 * Several replicas publish the same twins; that is harmless: a twin is whole and versioned, and the edge
 * takes only a `$version` higher than the one it holds (src/sync/twins.ts `applyDesired`), so a lagging
 * replica's older retained twin is ignored by the edges and replaced on the broker once its watch catches up.
 * A `$version` must only grow: a Device whose `$version` goes down is not published again until it passes
 * the highest one already sent.
 */
export class DesiredPublisher {
  private readonly want = new Map<string, Want>();
  private readonly sent = new Map<string, Map<string, number>>();
  private readonly invalid = new Set<string>();
  private readonly throttle = new LogThrottle(systemClock, 10, 60_000);

  constructor(private readonly o: DesiredOptions) {}

  /** A Device was added or changed: publish its twin where it has not gone yet. */
  update(name: string, d: IndexedDevice | undefined, desired: unknown): void {
    if (desired === undefined || d === undefined) {
      this.want.delete(name);
      this.invalid.delete(name);
      return;
    }
    const want = this.check(name, d.id, desired);
    if (!want) return;
    this.want.set(name, want);
    this.publishDevice(name);
  }

  remove(name: string): void {
    this.want.delete(name);
    this.sent.delete(name);
    this.invalid.delete(name);
  }

  /** An edge came (back) online: its Devices' twins go again. */
  resendNode(node: string): void {
    for (const name of this.o.index.onNode(node)) {
      this.sent.get(name)?.delete(node);
      this.publishDevice(name);
    }
  }

  /** (Re)connected: publish whatever has not been handed to the broker. */
  sync(): void {
    for (const name of this.want.keys()) this.publishDevice(name);
  }

  private publishDevice(name: string): void {
    if (!this.o.connected()) return; // sync() on connect
    const want = this.want.get(name);
    if (!want) return;
    let sent = this.sent.get(name);
    if (!sent) {
      sent = new Map();
      this.sent.set(name, sent);
    }
    for (const node of this.o.index.targets(name)) {
      if ((sent.get(node) ?? 0) >= want.version) continue;
      sent.set(node, want.version);
      this.o.metrics.desiredPublished++;
      this.o.publish(this.o.topics.desired(node, want.id), want.payload).then(
        () => {
          this.o.metrics.desiredAcked++;
        },
        (err: unknown) => {
          const now = this.sent.get(name);
          if (now?.get(node) === want.version) now.delete(node); // goes again on the next connection
          if (this.throttle.allow())
            this.o.logger.warn({ device: name, node, err: String(err) }, 'desired twin not published');
        },
      );
    }
  }

  private check(name: string, id: string, desired: unknown): Want | undefined {
    let problem: string | undefined;
    let payload: Buffer | undefined;
    const version = (desired as { $version?: unknown } | null)?.$version;
    if (typeof desired !== 'object' || desired === null || Array.isArray(desired)) problem = 'not an object';
    else if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1)
      problem = 'no integer $version >= 1';
    else if (!topicLevelOk(id)) problem = `spec.id ${JSON.stringify(id.slice(0, 80))} is not one topic level`;
    else {
      payload = Buffer.from(JSON.stringify(desired));
      if (payload.length > this.o.maxPayloadBytes) problem = `over ${this.o.maxPayloadBytes} bytes`;
    }
    if (problem || !payload) {
      if (!this.invalid.has(name)) {
        this.invalid.add(name);
        this.o.metrics.desiredInvalid++;
        if (this.throttle.allow())
          this.o.logger.warn({ device: name, problem }, 'spec.desired not published');
      }
      this.want.delete(name);
      return undefined;
    }
    this.invalid.delete(name);
    return { id, version: version as number, payload };
  }
}
