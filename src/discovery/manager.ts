import { randomUUID } from 'node:crypto';
import type { DiscoveryConfigEntry } from '../config/schema.js';
import { backoffDelay, type Clock, sleep } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { child, type Logger } from '../util/logger.js';
import { resolvedDetails, toConfigObject } from './configs.js';
import type { DeviceCondition, DiscoveredDevice, DiscoveryHandler } from './handler.js';
import { deviceName } from './naming.js';
import type { DeviceRegistry } from './registry.js';
import { API_VERSION, type Condition, type DeviceObject, type DiscoveryConfigObject } from './types.js';

export interface DiscoveryManagerOptions {
  node: string;
  namespace: string;
  handlers: readonly DiscoveryHandler[];
  registry: DeviceRegistry;
  logger: Logger;
  clock: Clock;
  /** How long a vanished device stays, offline, before its Device is deleted. */
  gracePeriodMs: number;
}

const MAX_ID_LENGTH = 256;
const MAX_PROPERTIES = 256;

interface Run {
  config: DiscoveryConfigObject;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * Runs each DiscoveryConfig's handler, and turns the lists it yields into Device objects: new ones added,
 * changed ones updated, vanished ones marked offline at once and deleted only after the grace period, so a
 * flapping device keeps its object (and the pods using it). One failing handler never stops the others:
 * it is restarted with backoff, and its config says why in a `Running` condition.
 */
export class DiscoveryManager {
  private readonly runs = new Map<string, Run>();
  private readonly removals = new Map<string, NodeJS.Timeout>();
  private readonly logger: Logger;

  constructor(private readonly o: DiscoveryManagerOptions) {
    this.logger = child(o.logger, 'discovery');
  }

  configs(): DiscoveryConfigObject[] {
    return [...this.runs.values()].map((r) => r.config);
  }

  start(entries: readonly DiscoveryConfigEntry[]): void {
    for (const entry of entries) {
      const handler = this.o.handlers.find((h) => h.name === entry.spec.handler.name);
      const config = toConfigObject(entry, this.o.namespace);
      const abort = new AbortController();
      if (!handler) {
        setCondition(
          config,
          'Valid',
          'False',
          'UnknownHandler',
          `no handler named ${entry.spec.handler.name}`,
          this.o.clock,
        );
        this.runs.set(entry.name, { config, abort, done: Promise.resolve() });
        continue;
      }
      setCondition(config, 'Valid', 'True', 'Valid', 'details accepted by the handler schema', this.o.clock);
      const done = this.run(config, handler, abort.signal);
      this.runs.set(entry.name, { config, abort, done });
    }
  }

  async stop(): Promise<void> {
    for (const r of this.runs.values()) r.abort.abort();
    await Promise.all([...this.runs.values()].map((r) => r.done));
    for (const t of this.removals.values()) this.o.clock.clearTimeout(t);
    this.removals.clear();
  }

  private async run(
    config: DiscoveryConfigObject,
    handler: DiscoveryHandler,
    signal: AbortSignal,
  ): Promise<void> {
    const logger = child(this.o.logger, `discovery:${handler.name}`).child({ config: config.metadata.name });
    const details = resolvedDetails(handler, config.spec.handler.details);
    let attempt = 0;
    while (!signal.aborted) {
      try {
        for await (const list of handler.discover(details as never, {
          logger,
          clock: this.o.clock,
          signal,
        })) {
          if (signal.aborted) break;
          attempt = 0;
          setCondition(config, 'Running', 'True', 'Discovering', 'the handler is running', this.o.clock);
          this.apply(config, handler, list, logger);
        }
        if (signal.aborted) return;
        throw new Error('the handler stopped yielding');
      } catch (err) {
        if (signal.aborted) return;
        const delay = backoffDelay(attempt++, 500, 60_000);
        setCondition(config, 'Running', 'False', 'HandlerFailed', errorMessage(err), this.o.clock);
        logger.error({ err: errorMessage(err), retryInMs: delay }, 'discovery handler failed');
        logger.debug(
          { stack: err instanceof Error ? err.stack : undefined },
          'discovery handler failed (stack)',
        );
        await sleep(delay, signal);
      }
    }
  }

  /** One full list from a handler: reconcile this config's devices with it. */
  private apply(
    config: DiscoveryConfigObject,
    handler: DiscoveryHandler,
    list: DiscoveredDevice[],
    logger: Logger,
  ): void {
    const seen = new Set<string>();
    const shared =
      handler.sharedFor?.(resolvedDetails(handler, config.spec.handler.details) as never) ?? handler.shared;
    for (const found of list) {
      const problem = deviceProblem(found);
      if (problem) {
        logger.warn(
          { id: String(found?.id).slice(0, 80), problem },
          'handler reported an unusable device; ignored',
        );
        continue;
      }
      const name = deviceName(config.metadata.name, found.id, shared ? undefined : this.o.node);
      seen.add(name);
      this.upsert(name, config, handler, found, shared);
    }
    const devices = this.o.registry.byConfig(config.metadata.name);
    for (const device of devices) {
      if (!seen.has(device.metadata.name) && device.status.online) this.markOffline(device);
    }
    config.status.devices = devices.length;
  }

  private upsert(
    name: string,
    config: DiscoveryConfigObject,
    handler: DiscoveryHandler,
    found: DiscoveredDevice,
    shared: boolean,
  ): void {
    const removal = this.removals.get(name);
    if (removal) {
      this.o.clock.clearTimeout(removal);
      this.removals.delete(name);
    }
    const now = new Date(this.o.clock.now()).toISOString();
    const existing = this.o.registry.get(name);
    const spec: DeviceObject['spec'] = {
      id: found.id,
      configName: config.metadata.name,
      handler: handler.name,
      shared,
      nodes: [this.o.node],
      capacity: config.spec.capacity,
      properties: { ...config.spec.properties, ...found.properties },
      deviceNodes: found.deviceNodes ?? [],
      mounts: found.mounts ?? [],
    };
    const conditions = mergeConditions(
      existing?.status.conditions ?? [],
      [
        {
          type: 'Online',
          status: 'True',
          reason: 'Discovered',
          message: `seen by ${handler.name} on ${this.o.node}`,
        },
        ...(found.conditions ?? []),
      ],
      now,
    );
    if (
      existing?.status.online &&
      sameJson(existing.spec, spec) &&
      sameJson(existing.status.conditions, conditions)
    ) {
      return; // nothing changed: no write (lastSeen is refreshed on real changes and by the handler's next news)
    }
    this.o.registry.put({
      apiVersion: API_VERSION,
      kind: 'Device',
      metadata: existing?.metadata ?? {
        name,
        namespace: this.o.namespace,
        uid: randomUUID(),
        creationTimestamp: now,
        resourceVersion: '0',
        labels: { 'leafbridge.io/config': config.metadata.name, 'leafbridge.io/handler': handler.name },
        ownerReferences: [{ apiVersion: API_VERSION, kind: 'DiscoveryConfig', name: config.metadata.name }],
      },
      spec,
      status: { online: true, lastSeen: now, conditions },
    });
    if (!existing)
      this.logger.info({ device: name, id: found.id, config: config.metadata.name }, 'device found');
    else if (!existing.status.online) this.logger.info({ device: name, id: found.id }, 'device back online');
  }

  private markOffline(device: DeviceObject): void {
    const now = new Date(this.o.clock.now()).toISOString();
    const graceS = Math.round(this.o.gracePeriodMs / 1000);
    this.o.registry.put({
      ...device,
      status: {
        ...device.status,
        online: false,
        lastSeen: now,
        conditions: mergeConditions(
          device.status.conditions,
          [
            {
              type: 'Online',
              status: 'False',
              reason: 'Vanished',
              message: `not seen; deleted in ${graceS} s unless it returns`,
            },
          ],
          now,
        ),
      },
    });
    this.logger.info({ device: device.metadata.name, graceS }, 'device offline');
    const name = device.metadata.name;
    this.removals.set(
      name,
      this.o.clock.setTimeout(() => {
        this.removals.delete(name);
        this.o.registry.delete(name);
        this.logger.info({ device: name }, 'device removed after its grace period');
      }, this.o.gracePeriodMs),
    );
  }
}

function deviceProblem(d: DiscoveredDevice | undefined): string | undefined {
  if (!d || typeof d.id !== 'string' || d.id.length === 0) return 'no id';
  if (d.id.length > MAX_ID_LENGTH) return `id longer than ${MAX_ID_LENGTH}`;
  if (typeof d.properties !== 'object' || d.properties === null) return 'no properties';
  const entries = Object.entries(d.properties);
  if (entries.length > MAX_PROPERTIES) return `more than ${MAX_PROPERTIES} properties`;
  if (entries.some(([, v]) => typeof v !== 'string')) return 'a property value is not a string';
  return undefined;
}

function mergeConditions(old: Condition[], updates: DeviceCondition[], now: string): Condition[] {
  const byType = new Map(old.map((c) => [c.type, c]));
  for (const u of updates) {
    const prev = byType.get(u.type);
    const changed = !prev || prev.status !== u.status;
    byType.set(u.type, { ...u, lastTransitionTime: changed ? now : prev.lastTransitionTime });
  }
  return [...byType.values()];
}

function setCondition(
  config: DiscoveryConfigObject,
  type: string,
  status: Condition['status'],
  reason: string,
  message: string,
  clock: Clock,
): void {
  config.status.conditions = mergeConditions(
    config.status.conditions,
    [{ type, status, reason, message }],
    new Date(clock.now()).toISOString(),
  );
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
