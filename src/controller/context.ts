import type { ApiWriter } from '../kubeclient/apiWriter.js';
import type { Informer } from '../kubeclient/informer.js';
import type { PodSecurityLevel } from '../model/podSecurity.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { byCodeUnit } from '../util/order.js';
import type { BrokerPlan } from './brokerSpec.js';
import type { NodeHealth } from './nodeHealth.js';
import type { ConfigView } from './objects.js';
import { levelAllows, type PodSecurityAllowance } from './podSecurity.js';

/** A broker namespace (one per Pod Security level in use): its caches of broker objects and its writer. */
export interface BrokerSpace {
  level: PodSecurityLevel;
  namespace: string;
  writer: ApiWriter;
  pods: Informer;
  jobs: Informer;
  services: Informer;
}

/** What the reconcilers share: the caches they read, the writer they write through, and their memory. */
export interface ControllerContext {
  /** The namespace of the Devices and DiscoveryConfigs. */
  namespace: string;
  /** Writes Devices and DiscoveryConfigs. */
  writer: ApiWriter;
  logger: Logger;
  clock: Clock;
  caches: {
    configs: Informer;
    devices: Informer;
    nodes: Informer;
  };
  /** The broker namespaces, `restricted` first. */
  brokers: BrokerSpace[];
  /** The Pod Security level each DiscoveryConfig may use (the controller's own options). */
  allowance: PodSecurityAllowance;
  nodeHealth: NodeHealth;
  /** Why a config's brokers cannot be made (per device, or `''` for the config's own Service). */
  problems: Problems;
  /** Replacements of a device's broker pod in a row (Failed, Pending too long): spaced out. */
  restarts: Backoff;
  /** Removals of one lost node from one device (`device/node`) in a row: spaced out if an agent re-adds it. */
  removals: Backoff;
  pendingTimeoutMs: number;
  /** Asks for a pass over a config (its Service and status), e.g. after a device's problem changed. */
  touchConfig: (name: string) => void;
}

/**
 * The broker namespace of `config`'s brokers: the lowest one that admits the level its broker spec needs,
 * when the controller allows that level for it; otherwise the problem that says why none is made.
 */
export function brokerSpace(
  ctx: ControllerContext,
  config: ConfigView,
  plan: Extract<BrokerPlan, { kind: 'pod' | 'job' }>,
): BrokerSpace | Problem {
  const { level, reasons } = plan.security;
  const allowed = ctx.allowance.of(config.namespace, config.name);
  // The lowest broker namespace that admits it and that the config may use (a config allowed privileged
  // whose spec needs baseline goes to the privileged one when no baseline namespace is watched).
  const space = ctx.brokers.find((b) => levelAllows(b.level, level) && levelAllows(allowed, b.level));
  if (space) return space;
  const more = reasons.length > 3 ? ` (and ${reasons.length - 3} more)` : '';
  return {
    reason: 'PodSecurityNotAllowed',
    message:
      `the broker needs Pod Security level ${level} (${reasons.slice(0, 3).join(', ')}${more}); ` +
      `the controller allows ${config.namespace}/${config.name} only ${allowed} (its --allow-pod-security option)`,
  };
}

export interface Problem {
  reason: string;
  message: string;
}

/** Problems that stop brokers from being made, by config, then by device; read by the config's status. */
export class Problems {
  private readonly byConfig = new Map<string, Map<string, Problem>>();

  /** Records (or clears, with `undefined`) the problem of `device` of `config`; true when that changed. */
  set(config: string, device: string, problem: Problem | undefined): boolean {
    const current = this.byConfig.get(config);
    const old = current?.get(device);
    if (old?.reason === problem?.reason && old?.message === problem?.message) return false;
    if (problem) {
      const map = current ?? new Map<string, Problem>();
      map.set(device, problem);
      this.byConfig.set(config, map);
    } else {
      current?.delete(device);
      if (current?.size === 0) this.byConfig.delete(config);
    }
    return true;
  }

  of(config: string): [string, Problem][] {
    return [...(this.byConfig.get(config) ?? new Map<string, Problem>())].sort(([a], [b]) =>
      byCodeUnit(a, b),
    );
  }

  /** Forgets `device` under every config (it is gone); returns the configs that changed. */
  forgetDevice(device: string): string[] {
    const changed: string[] = [];
    for (const [config, map] of this.byConfig) {
      if (device !== '' && map.delete(device)) changed.push(config);
      if (map.size === 0) this.byConfig.delete(config);
    }
    return changed;
  }

  forgetConfig(config: string): void {
    this.byConfig.delete(config);
  }
}

/**
 * Spacing for an action repeated on one key: the first time at once, then after base·2^(n-1) (capped)
 * since the previous one, until `reset`. Keeps a pod that fails at once, or a node an agent keeps re-adding,
 * from turning into a loop of writes.
 */
export class Backoff {
  private readonly done = new Map<string, { count: number; at: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}

  /** Milliseconds to wait before doing it again for `key` (0: now). */
  wait(key: string): number {
    const d = this.done.get(key);
    if (!d) return 0;
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(d.count - 1, 30));
    return Math.max(0, d.at + delay - this.clock.now());
  }

  did(key: string): void {
    const d = this.done.get(key);
    this.done.set(key, { count: (d?.count ?? 0) + 1, at: this.clock.now() });
  }

  reset(key: string): void {
    this.done.delete(key);
  }

  /** Forgets every key that starts with `prefix`. */
  forget(prefix: string): void {
    for (const key of this.done.keys()) if (key.startsWith(prefix)) this.done.delete(key);
  }
}
