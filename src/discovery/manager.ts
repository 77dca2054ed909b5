import { randomUUID } from 'node:crypto';
import { detailsProblems, resolvedDetails } from '../model/discoveryConfigs.js';
import type { DiscoveredDevice, DiscoveryHandler } from '../model/handler.js';
import {
  API_VERSION,
  type Condition,
  type DeviceObject,
  type DiscoveryConfigObject,
} from '../model/resources.js';
import { mergeConditions, withSighting } from '../model/sighting.js';
import type { DeviceRegistry } from '../registry/deviceRegistry.js';
import type { DeviceStore } from '../registry/deviceStore.js';
import { backoffDelay, type Clock, sleep } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { child, type Logger } from '../util/logger.js';
import { resolveSecretRefs, type SecretReader } from '../util/secretRef.js';
import { DeviceNames } from './deviceNames.js';

export interface DiscoveryManagerOptions {
  node: string;
  namespace: string;
  handlers: readonly DiscoveryHandler[];
  /** This node's view: the devices it sees (and those within their grace period), for the device plugins. */
  registry: DeviceRegistry;
  /** The shared view: Device objects as every node's sightings make them (Kubernetes, or the local store). */
  store: DeviceStore;
  logger: Logger;
  clock: Clock;
  /** How long a vanished device stays, offline, before its Device is deleted. */
  gracePeriodMs: number;
  /** Prefixes of the device files handlers may write to (serial probes); see DiscoveryContext. */
  probeWritePaths?: readonly string[];
  /** Reads the Secrets a config's details reference (`{secretKeyRef}`), before its handler starts. */
  readSecret?: SecretReader;
  /** A config's cluster-wide status changed (its Valid condition, its device count). */
  onConfigStatus?: (name: string, status: { conditions: Condition[]; devices?: number }) => void;
}

const MAX_ID_LENGTH = 256;
const MAX_PROPERTIES = 256;

interface Run {
  config: DiscoveryConfigObject;
  /** Stable JSON of what makes a run differ: a change restarts it. */
  key: string;
  /** Node-local conditions (`Running`), not written to the shared object: each node has its own. */
  local: Condition[];
  valid: Condition;
  /** The handler has yielded its first list: from then on, what it does not list, this node does not see. */
  listed: boolean;
  /** The names of this config's Devices, stored and to come: which name a found device gets. */
  names: DeviceNames;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * Runs each DiscoveryConfig's handler, and turns the lists it yields into Device objects: new ones added,
 * changed ones updated, vanished ones marked offline at once and deleted only after the grace period, so a
 * flapping device keeps its object (and the pods using it). One failing handler never stops the others:
 * it is restarted with backoff, and its config says why in a `Running` condition.
 *
 * Two views are kept. The registry is this node's: what it sees, for its device plugins. The store is
 * shared: each change is written there as this node's sighting (`withSighting`), merged with the other
 * nodes' into one Device per shared device. Changes to the store that contradict this node's view (the
 * object deleted by someone, or written while this agent was away) are put right as they are seen.
 */
export class DiscoveryManager {
  private readonly runs = new Map<string, Run>();
  private readonly removals = new Map<string, NodeJS.Timeout>();
  private readonly statusTimers = new Map<string, NodeJS.Timeout>();
  private readonly logger: Logger;
  private readonly unwatch: () => void;

  constructor(private readonly o: DiscoveryManagerOptions) {
    this.logger = child(o.logger, 'discovery');
    this.unwatch = o.store.watch((e) => {
      const run = this.runs.get(e.object.spec?.configName ?? '');
      if (!run) return;
      if (e.type === 'DELETED') run.names.forget(e.object.metadata.name);
      else run.names.note(e.object.metadata.name, e.object.spec.id);
      this.reconcile(run, e.object.metadata.name, e.type === 'DELETED' ? undefined : e.object);
      this.scheduleStatus(run);
    });
  }

  /** The configs this node runs or refused, with their local status (`Valid`, `Running`). */
  configs(): DiscoveryConfigObject[] {
    return [...this.runs.values()].map((r) => this.view(r));
  }

  /** This node's conditions for a config (`Valid`, `Running`), to show beside its stored status. */
  runtime(name: string): Condition[] {
    const run = this.runs.get(name);
    return run ? [run.valid, ...run.local] : [];
  }

  /** Runs exactly `configs`: new ones start, changed ones restart, missing ones stop (their devices go). */
  sync(configs: readonly DiscoveryConfigObject[]): void {
    const wanted = new Map(configs.map((c) => [c.metadata.name, c]));
    for (const [name, run] of this.runs) {
      const next = wanted.get(name);
      if (!next || runKey(next) !== run.key) void this.retire(run, !next);
    }
    for (const config of configs) {
      const old = this.runs.get(config.metadata.name);
      if (old && old.key === runKey(config)) {
        old.config = structuredClone(config);
        continue;
      }
      this.launch(structuredClone(config));
    }
  }

  async stop(): Promise<void> {
    this.unwatch();
    for (const r of this.runs.values()) r.abort.abort();
    await Promise.all([...this.runs.values()].map((r) => r.done));
    for (const t of [...this.removals.values(), ...this.statusTimers.values()]) this.o.clock.clearTimeout(t);
    this.removals.clear();
    this.statusTimers.clear();
  }

  private launch(config: DiscoveryConfigObject): void {
    const name = config.metadata.name;
    const handler = this.o.handlers.find((h) => h.name === config.spec.handler.name);
    const problems = handler ? detailsProblems(handler, config.spec.handler.details) : [];
    const now = this.nowIso();
    const valid: Condition = !handler
      ? condition(
          'Valid',
          'False',
          'UnknownHandler',
          `no handler named ${config.spec.handler.name} on ${this.o.node} (known: ${this.o.handlers.map((h) => h.name).join(', ')})`,
          now,
        )
      : problems.length > 0
        ? condition(
            'Valid',
            'False',
            'InvalidDetails',
            problems.map((p) => `spec.handler.details${p}`).join('; '),
            now,
          )
        : condition('Valid', 'True', 'Valid', 'details accepted by the handler schema', now);
    const abort = new AbortController();
    const run: Run = {
      config,
      key: runKey(config),
      local: [],
      valid,
      listed: false,
      names: new DeviceNames(name, this.o.node),
      abort,
      done: Promise.resolve(),
    };
    this.runs.set(name, run);
    if (valid.status === 'False') {
      this.logger.error({ config: name, reason: valid.reason, problem: valid.message }, 'config refused');
    } else if (handler) {
      run.done = this.run(run, handler, abort.signal);
    }
    this.scheduleStatus(run, 0);
  }

  /** Stops a run; when its config is gone (not just changed), this node no longer sees its devices. */
  private async retire(run: Run, gone: boolean): Promise<void> {
    const name = run.config.metadata.name;
    if (this.runs.get(name) === run) this.runs.delete(name);
    run.abort.abort();
    await run.done;
    if (!gone) return;
    const timer = this.statusTimers.get(name);
    if (timer) this.o.clock.clearTimeout(timer);
    this.statusTimers.delete(name);
    for (const device of this.o.registry.byConfig(name)) {
      this.cancelRemoval(device.metadata.name);
      this.o.registry.delete(device.metadata.name);
      // The config no longer runs here: no grace period, this node simply stops seeing its devices.
      this.write(device.metadata.name, undefined, this.nowIso(), 0);
    }
    this.logger.info({ config: name }, 'config no longer runs on this node');
  }

  private async run(run: Run, handler: DiscoveryHandler, signal: AbortSignal): Promise<void> {
    const config = run.config;
    const logger = child(this.o.logger, `discovery:${handler.name}`).child({ config: config.metadata.name });
    const details = resolvedDetails(handler, config.spec.handler.details);
    await this.loadNames(run, logger);
    let attempt = 0;
    while (!signal.aborted) {
      try {
        // Read at each (re)start: a rotated Secret takes effect when the handler restarts.
        const withSecrets = this.o.readSecret ? await resolveSecretRefs(details, this.o.readSecret) : details;
        for await (const list of handler.discover(withSecrets as never, {
          logger,
          node: this.o.node,
          clock: this.o.clock,
          signal,
          ...(this.o.probeWritePaths ? { probeWritePaths: this.o.probeWritePaths } : {}),
          report: (status, reason, message) => this.setLocal(run, 'Running', status, reason, message),
        })) {
          if (signal.aborted) break;
          attempt = 0;
          this.setLocal(run, 'Running', 'True', 'Discovering', 'the handler is running');
          this.apply(run, handler, list, logger);
        }
        if (signal.aborted) return;
        throw new Error('the handler stopped yielding');
      } catch (err) {
        if (signal.aborted) return;
        const delay = backoffDelay(attempt++, 500, 60_000);
        this.setLocal(run, 'Running', 'False', 'HandlerFailed', errorMessage(err));
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
  private apply(run: Run, handler: DiscoveryHandler, list: DiscoveredDevice[], logger: Logger): void {
    const config = run.config;
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
      const name = run.names.nameFor(found.id, shared, logger, found.formerIds);
      if (name === undefined) continue;
      seen.add(name);
      this.upsert(name, config, handler, found, shared);
    }
    for (const device of this.o.registry.byConfig(config.metadata.name)) {
      if (!seen.has(device.metadata.name) && device.status.online) this.markOffline(device);
    }
    if (!run.listed) {
      run.listed = true;
      // What the store holds from before this list (another node, or this agent before a restart).
      void this.o.store
        .list({ 'leafbridge.io/config': config.metadata.name })
        .then((devices) => {
          for (const d of devices) this.reconcile(run, d.metadata.name, d);
        })
        .catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'device store list failed'));
    }
    this.scheduleStatus(run);
  }

  /**
   * The names this config's Devices have in the store before the handler's first list: a Device named by the
   * older 6-digit scheme keeps its name (its pods hold it), and a name held by another id is not taken.
   */
  private async loadNames(run: Run, logger: Logger): Promise<void> {
    try {
      const stored = await this.o.store.list({ 'leafbridge.io/config': run.config.metadata.name });
      for (const d of stored) run.names.note(d.metadata.name, d.spec.id);
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'device store list failed; naming without it');
    }
  }

  private upsert(
    name: string,
    config: DiscoveryConfigObject,
    handler: DiscoveryHandler,
    found: DiscoveredDevice,
    shared: boolean,
  ): void {
    this.cancelRemoval(name);
    const now = this.nowIso();
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
    const object: DeviceObject = {
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
    };
    this.o.registry.put(object);
    this.write(name, object);
    if (!existing)
      this.logger.info({ device: name, id: found.id, config: config.metadata.name }, 'device found');
    else if (!existing.status.online) this.logger.info({ device: name, id: found.id }, 'device back online');
  }

  private markOffline(device: DeviceObject): void {
    const now = this.nowIso();
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
    this.write(device.metadata.name, undefined, now);
    this.logger.info({ device: device.metadata.name, graceS }, 'device offline');
    const name = device.metadata.name;
    this.scheduleRemoval(name, this.o.gracePeriodMs, now, () => {
      this.o.registry.delete(name);
      this.logger.info({ device: name }, 'device removed after its grace period');
    });
  }

  /**
   * Puts right a stored device that contradicts this node's view: this node sees it but is not listed
   * (or the object is gone), or is listed but does not see it. A device no node sees is deleted once its
   * grace period is over. Only after the handler's first list, before which this node knows nothing.
   */
  private reconcile(run: Run, name: string, stored: DeviceObject | undefined): void {
    if (!run.listed) return;
    const mine = this.o.registry.get(name);
    const sees = mine?.status.online === true;
    const listed = stored?.spec.nodes.includes(this.o.node) ?? false;
    if (sees && mine && (!stored || !listed || !stored.status.online)) {
      this.logger.info({ device: name }, 'stored device lacks this node; writing it again');
      this.write(name, mine);
    } else if (!sees && listed) {
      // Lost while this agent was away, or a write of ours that has not landed: since when is unknown, so
      // the grace period counts from now (keeping a device a little long beats deleting it early).
      this.write(name, undefined, mine?.status.lastSeen ?? this.nowIso());
    } else if (stored && stored.spec.nodes.length === 0 && !this.removals.has(name)) {
      const left = Date.parse(stored.status.lastSeen) + this.o.gracePeriodMs - this.o.clock.now();
      const lostAt = stored.status.lastSeen;
      this.scheduleRemoval(name, Math.max(0, Number.isFinite(left) ? left : 0), lostAt, () => {});
    }
  }

  /**
   * This node's sighting of `name` written to the store: `seen`, or not seen since `lostAt`. The store
   * retries it through outages; a newer sighting of the same device replaces it.
   */
  private write(
    name: string,
    seen: DeviceObject | undefined,
    lostAt?: string,
    graceMs = this.o.gracePeriodMs,
  ): void {
    const node = this.o.node;
    this.o.store
      .update(name, (current) =>
        withSighting(current, {
          node,
          now: this.nowIso(),
          graceMs,
          ...(seen ? { seen } : { lostAt: lostAt ?? this.nowIso() }),
        }),
      )
      .catch((err: unknown) =>
        this.logger.warn({ device: name, err: errorMessage(err) }, 'device store write failed'),
      );
  }

  /**
   * After `ms`: `then()`, and this node's "not seen since `lostAt`" written again, which deletes the stored
   * device when no node has seen it for the grace period. (It restates the whole sighting, not only the
   * deletion: it may replace a write of ours still queued in an outage.)
   */
  private scheduleRemoval(name: string, ms: number, lostAt: string, then: () => void): void {
    this.cancelRemoval(name);
    this.removals.set(
      name,
      this.o.clock.setTimeout(() => {
        this.removals.delete(name);
        then();
        if (!this.o.registry.get(name)?.status.online) this.write(name, undefined, lostAt);
      }, ms),
    );
  }

  private cancelRemoval(name: string): void {
    const removal = this.removals.get(name);
    if (removal) this.o.clock.clearTimeout(removal);
    this.removals.delete(name);
  }

  /** Reports the config's shared status soon (coalesced): its Valid condition and its device count. */
  private scheduleStatus(run: Run, delayMs = 500): void {
    const name = run.config.metadata.name;
    if (!this.o.onConfigStatus || this.statusTimers.has(name)) return;
    this.statusTimers.set(
      name,
      this.o.clock.setTimeout(() => {
        this.statusTimers.delete(name);
        if (this.runs.get(name) !== run) return;
        void this.o.store
          .list({ 'leafbridge.io/config': name })
          .then((devices) =>
            this.o.onConfigStatus?.(name, { conditions: [run.valid], devices: devices.length }),
          )
          .catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'config status failed'));
      }, delayMs),
    );
  }

  private setLocal(
    run: Run,
    type: string,
    status: Condition['status'],
    reason: string,
    message: string,
  ): void {
    run.local = mergeConditions(run.local, [{ type, status, reason, message }], this.nowIso());
  }

  private view(run: Run): DiscoveryConfigObject {
    const config = structuredClone(run.config);
    const devices = this.o.registry.byConfig(config.metadata.name).length;
    config.status = {
      ...config.status,
      devices: config.status?.devices ?? devices,
      conditions: mergeConditions(config.status?.conditions ?? [], [run.valid, ...run.local], this.nowIso()),
    };
    return config;
  }

  private nowIso(): string {
    return new Date(this.o.clock.now()).toISOString();
  }
}

/** What a run depends on: a change to any of it restarts the handler. */
function runKey(c: DiscoveryConfigObject): string {
  return JSON.stringify([c.spec.handler, c.spec.capacity, c.spec.properties]);
}

function condition(
  type: string,
  status: Condition['status'],
  reason: string,
  message: string,
  now: string,
): Condition {
  return { type, status, reason, message, lastTransitionTime: now };
}

function deviceProblem(d: DiscoveredDevice | undefined): string | undefined {
  if (!d || typeof d.id !== 'string' || d.id.length === 0) return 'no id';
  if (d.id.length > MAX_ID_LENGTH) return `id longer than ${MAX_ID_LENGTH}`;
  if (
    d.formerIds !== undefined &&
    !(Array.isArray(d.formerIds) && d.formerIds.every((f) => typeof f === 'string'))
  )
    return 'formerIds is not a list of strings';
  if (typeof d.properties !== 'object' || d.properties === null) return 'no properties';
  const entries = Object.entries(d.properties);
  if (entries.length > MAX_PROPERTIES) return `more than ${MAX_PROPERTIES} properties`;
  if (entries.some(([, v]) => typeof v !== 'string')) return 'a property value is not a string';
  return undefined;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
