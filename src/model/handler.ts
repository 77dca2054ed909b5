import type { Static, TSchema } from '@sinclair/typebox';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';

/** A host device node handed to the pod (kubelet DeviceSpec). */
export interface DeviceNode {
  hostPath: string;
  containerPath?: string;
  /** cgroup permissions, as the kubelet takes them: any of r, w, m. Default `rw`. */
  permissions?: string;
}

export interface DeviceMount {
  hostPath: string;
  containerPath: string;
  readOnly?: boolean;
}

/** A condition on a found device, Kubernetes-style, e.g. `{type: 'Authenticated', status: 'False', ...}`. */
export interface DeviceCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** One device as a handler sees it. */
export interface DiscoveredDevice {
  /** Stable across restarts and rediscovery (a UUID, a serial number, an endpoint URL). */
  id: string;
  /**
   * Ids an earlier version of the handler gave this device. A Device stored under one keeps its name (and
   * the pods that hold it) and takes the new id, instead of being replaced by a new Device.
   */
  formerIds?: string[];
  /** Handed to pods as environment variables; string values only. */
  properties: Record<string, string>;
  deviceNodes?: DeviceNode[];
  mounts?: DeviceMount[];
  /** Problems worth showing on the Device object (wrong credentials, probe failed) rather than a silent miss. */
  conditions?: DeviceCondition[];
}

/** What a handler gets from the agent: its logger, a clock, and a signal that ends discovery. */
export interface DiscoveryContext {
  /** The node the agent runs on (debug-echo puts it into its presence-file path). */
  node?: string;
  logger: Logger;
  clock: Clock;
  signal: AbortSignal;
  /**
   * Device files a handler may write to (a serial probe), as prefixes of their real path (symlinks
   * resolved), from the agent's `discovery.probeWritePaths`. Absent: `DEFAULT_PROBE_WRITE_PATHS`.
   */
  probeWritePaths?: readonly string[];
  /**
   * Says how discovery goes between lists, as the config's node-local `Running` condition (an external
   * handler not registered yet, or failing). Each list the handler yields sets it to True again.
   */
  report?(status: 'True' | 'False', reason: string, message: string): void;
}

/** USB serial adapters and CDC-ACM devices: where a probe may write unless the agent's config says more. */
export const DEFAULT_PROBE_WRITE_PATHS: readonly string[] = ['/dev/ttyUSB', '/dev/ttyACM'];

/**
 * One protocol's discovery. The `detailsSchema` validates the DiscoveryConfig's `spec.handler.details` at
 * start-up and becomes that part of the CRD's OpenAPI schema. `discover` yields the full current device
 * list each time it changes (not a diff), and ends when `ctx.signal` aborts. A handler reacts to events
 * (announcements, hot-plug) where the protocol has them and polls only where it must.
 */
export interface DiscoveryHandler<S extends TSchema = TSchema> {
  readonly name: string;
  readonly detailsSchema: S;
  /** True when one device can be seen from several nodes (network cameras), false for local ones (serial). */
  readonly shared: boolean;
  /** When sharing depends on the config (debug-echo), the answer for these details; else `shared` holds. */
  sharedFor?(details: Static<S>): boolean;
  discover(details: Static<S>, ctx: DiscoveryContext): AsyncIterable<DiscoveredDevice[]>;
}
