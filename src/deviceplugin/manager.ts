import { shorten } from '../model/naming.js';
import { API_GROUP, type DeviceObject } from '../model/resources.js';
import type { DeviceRegistry } from '../registry/deviceRegistry.js';
import { type Clock, systemClock } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { child, type Logger, logError } from '../util/logger.js';
import {
  type ContainerAllocateRequest,
  type ContainerAllocateResponse,
  DevicePluginApi,
  type DeviceSpec,
  type Mount,
} from './api.js';
import { cdiName, writeCdiSpec } from './cdi.js';
import { deviceSpec, mount } from './convert.js';
import { DevicePluginError } from './errors.js';
import { DevicePluginServer, type DevicePluginStatus } from './server.js';
import type { PluginDevice } from './service.js';
import { MemorySlotClaims, type SlotClaim, type SlotClaims, slotIds } from './slots.js';

export interface DevicePluginManagerOptions {
  registry: DeviceRegistry;
  /** This node's name: only Devices whose `spec.nodes` include it are offered here. */
  node: string;
  /** The kubelet's device-plugin directory (default in production: `/var/lib/kubelet/device-plugins`). */
  dir: string;
  logger: Logger;
  clock?: Clock;
  /** Where claims are recorded. Default: in memory (this node only). */
  claims?: SlotClaims;
  /**
   * What is in use on this node: the slot IDs the kubelet reports assigned to containers (its PodResources
   * API), or, where that is not available, the leafbridge resources the node's live pods request (`{
   * resources }`). When given, every `reconcileIntervalMs` the claims of this node not in use, and older
   * than `reconcileGraceMs`, are released; also once at start, so slots of pods that went while the agent
   * was down come back. Without it slots are released only by `release()`.
   */
  inUse?: () => Promise<SlotUsage | undefined>;
  /** Default 30 s. */
  reconcileIntervalMs?: number;
  /**
   * A claim younger than this is kept even when not listed in use: the kubelet reports a container's devices
   * only once the container exists, some time after Allocate. Default 2 min.
   */
  reconcileGraceMs?: number;
  /** Passed to each DevicePluginServer. */
  pollIntervalMs?: number;
  /**
   * Container Device Interface: the spec directory the container runtime reads (e.g. `/var/run/cdi`). When
   * given, this node's devices are written there as CDI devices (`leafbridge.io/device=<name>`), and Allocate
   * answers with their CDI names instead of device nodes and mounts (the runtime applies those from the spec);
   * the environment variables are sent either way.
   */
  cdiDir?: string;
}

type ResourceKind = 'device' | 'config';

/** Slot IDs in use (PodResources), or the resources some live pod requests (the pod list: coarser). */
export type SlotUsage = Iterable<string> | { resources: Iterable<string> };

interface Resource {
  name: string;
  kind: ResourceKind;
  /** The device name (kind device) or the DiscoveryConfig name (kind config). */
  source: string;
  server: DevicePluginServer;
}

interface Slot {
  id: string;
  device: string;
  index: number;
}

/**
 * The device-plugin resources of this node, made from the Device objects in the registry. Each Device seen by
 * this node gives `leafbridge.io/<device-name>`, whose kubelet devices are its capacity slots `<name>-<i>`, and
 * each DiscoveryConfig among them gives `leafbridge.io/<config-name>`, offering the slots of all its devices.
 * One DevicePluginServer per resource: started with its first device, stopped (socket removed) with its last.
 *
 * Health, as sent on ListAndWatch (kept current from `registry.watch()` and claim changes):
 * - every slot of an offline device is Unhealthy, on both resources;
 * - a slot claimed through another resource (or by another node) is Unhealthy here. Unhealthy rather than
 *   removed: the kubelet keeps the ID, its capacity stays the device's capacity while allocatable drops, and
 *   the slot comes back as Healthy with the same ID when released — a removed ID would make the kubelet drop
 *   it from its checkpoint and count the resource as shrunk. Either way the kubelet never allocates it, so
 *   the two resources never hand out more than a device's capacity.
 *
 * Allocate: see `allocate()`. Release: the kubelet never says when a container is gone; `release()` frees
 * slots, and `reconcile(inUse)` (periodically from `options.inUse`, the kubelet's PodResources API later)
 * frees every claim of this node that the kubelet no longer reports.
 */
export class DevicePluginManager {
  private readonly registry: DeviceRegistry;
  private readonly node: string;
  private readonly claims: SlotClaims;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** This node's devices, by name. */
  private devices = new Map<string, DeviceObject>();
  /** Every slot of this node's devices, by kubelet ID. */
  private slots = new Map<string, Slot>();
  private readonly resources = new Map<string, Resource>();
  /** The start/stop operations of each resource's server, in order (a name may go and come back quickly). */
  private readonly ops = new Map<string, Promise<void>>();
  private unwatch: (() => void)[] = [];
  /** Devices in the CDI spec file as last written (their CDI names may be handed out). */
  private inCdiSpec = new Set<string>();
  private cdiWrite: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly o: DevicePluginManagerOptions) {
    this.registry = o.registry;
    this.node = o.node;
    this.clock = o.clock ?? systemClock;
    this.claims = o.claims ?? new MemorySlotClaims(this.clock);
    this.logger = child(o.logger, 'deviceplugin:manager');
  }

  /** Offer the registry's devices and follow its changes; resolves once every server has started. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.unwatch = [this.registry.watch(() => this.sync()), this.claims.watch(() => this.publish())];
    this.sync();
    if (this.o.inUse) this.schedule(0);
    await this.settled();
  }

  /** Stop every server (their sockets are removed) and the watches. Claims stay in `claims`. */
  async stop(): Promise<void> {
    this.running = false;
    for (const u of this.unwatch) u();
    this.unwatch = [];
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const r of [...this.resources.values()]) this.remove(r);
    await this.settled();
    await this.cdiWrite;
  }

  /** Resolves when the pending server starts and stops are done. */
  async settled(): Promise<void> {
    while (this.ops.size > 0) await Promise.all([...this.ops.values()]);
  }

  /** The resources offered now, with their server status and slots. */
  status(): (DevicePluginStatus & { kind: ResourceKind; source: string; devices: PluginDevice[] })[] {
    return [...this.resources.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((r) => ({ ...r.server.status(), kind: r.kind, source: r.source, devices: this.list(r) }));
  }

  /** The resource names of a device: its own and its DiscoveryConfig's. */
  resourceNames(device: DeviceObject): { device: string; config: string } {
    return {
      device: `${API_GROUP}/${shorten(device.metadata.name)}`,
      config: `${API_GROUP}/${shorten(device.spec.configName)}`,
    };
  }

  /** Free slots held by this node (a pod is gone); the other resources offer them again. */
  async release(ids: readonly string[]): Promise<string[]> {
    const released = await this.claims.release(ids, this.node);
    if (released.length > 0) this.logger.info({ slots: released }, 'slots released');
    return released;
  }

  /**
   * Release every claim of this node that is not in `inUse` (the device IDs the kubelet reports as assigned
   * to containers) and older than the grace period. Returns the released slots.
   */
  async reconcile(inUse: SlotUsage): Promise<string[]> {
    const graceMs = this.o.reconcileGraceMs ?? 120_000;
    const now = this.clock.now();
    // With only the pod list, a claim is kept while any live pod of this node requests its resource.
    const used =
      'resources' in inUse
        ? (
            (resources) => (c: SlotClaim) =>
              resources.has(c.resource)
          )(new Set(inUse.resources))
        : (
            (slots) => (c: SlotClaim) =>
              slots.has(c.slot)
          )(new Set(inUse));
    const stale = this.claims
      .held(this.node)
      .filter((c) => !used(c) && now - c.since >= graceMs)
      .map((c) => c.slot);
    return stale.length > 0 ? this.release(stale) : [];
  }

  private schedule(delayMs = this.o.reconcileIntervalMs ?? 30_000): void {
    if (!this.running) return;
    this.timer = this.clock.setTimeout(async () => {
      try {
        const inUse = await this.o.inUse?.();
        if (inUse && this.running) await this.reconcile(inUse);
      } catch (err) {
        logError(this.logger, 'reconciling slots in use failed', err);
      }
      this.schedule();
    }, delayMs);
    this.timer.unref?.();
  }

  /** Bring the resources in line with the registry, and send every changed device list. */
  private sync(): void {
    if (!this.running) return;
    const devices = new Map<string, DeviceObject>();
    const slots = new Map<string, Slot>();
    const wanted = new Map<string, { kind: ResourceKind; source: string }>();
    for (const d of this.registry.list()) {
      if (!d.spec.nodes.includes(this.node)) continue;
      devices.set(d.metadata.name, d);
      slotIds(d.metadata.name, d.spec.capacity).forEach((id, index) => {
        slots.set(id, { id, device: d.metadata.name, index });
      });
      // A device and a DiscoveryConfig of the same name: the device is offered, whichever comes first.
      const names = this.resourceNames(d);
      if (wanted.get(names.device)?.kind === 'config') this.configNotOffered(names.device);
      wanted.set(names.device, { kind: 'device', source: d.metadata.name });
      const other = wanted.get(names.config);
      if (other && other.kind !== 'config') this.configNotOffered(names.config);
      else wanted.set(names.config, { kind: 'config', source: d.spec.configName });
    }
    this.devices = devices;
    this.slots = slots;
    for (const r of [...this.resources.values()]) {
      const w = wanted.get(r.name);
      if (!w || w.kind !== r.kind || w.source !== r.source) this.remove(r);
    }
    for (const [name, w] of wanted) if (!this.resources.has(name)) this.add(name, w.kind, w.source);
    this.writeCdiSpec();
    this.publish();
  }

  private configNotOffered(resource: string): void {
    this.logger.warn({ resource }, 'a DiscoveryConfig has the name of a device; not offered');
  }

  /** Rewrites the CDI spec with this node's devices (in order; an unchanged spec is not rewritten). */
  private writeCdiSpec(): void {
    const dir = this.o.cdiDir;
    if (dir === undefined) return;
    const devices = [...this.devices.values()];
    this.cdiWrite = this.cdiWrite.then(async () => {
      const skipped = new Set<string>();
      try {
        await writeCdiSpec(dir, devices, this.node, (d, reason, left) => {
          // A property left out leaves its device in the spec: only a device left out cannot be handed out.
          if (left === 'device') skipped.add(d.metadata.name);
          this.logger.warn({ device: d.metadata.name, reason }, `${left} left out of the CDI spec`);
        });
        this.inCdiSpec = new Set(devices.map((d) => d.metadata.name).filter((n) => !skipped.has(n)));
      } catch (err) {
        logError(this.logger, 'CDI spec not written', err, { dir });
      }
    });
  }

  private publish(): void {
    for (const r of this.resources.values()) r.server.update();
  }

  private add(name: string, kind: ResourceKind, source: string): void {
    const resource: Resource = {
      name,
      kind,
      source,
      server: new DevicePluginServer({
        dir: this.o.dir,
        resourceName: name,
        logger: this.o.logger,
        clock: this.clock,
        ...(this.o.pollIntervalMs === undefined ? {} : { pollIntervalMs: this.o.pollIntervalMs }),
        listDevices: () => this.list(resource),
        allocate: (requests) => this.allocate(resource, requests),
      }),
    };
    this.resources.set(name, resource);
    this.logger.info({ resource: name, kind, source }, 'offering resource');
    this.enqueue(name, async () => {
      try {
        await resource.server.start();
      } catch (err) {
        logError(this.logger, 'device plugin server did not start', err, { resource: name });
      }
    });
  }

  private remove(r: Resource): void {
    this.resources.delete(r.name);
    this.logger.info({ resource: r.name }, 'resource withdrawn');
    this.enqueue(r.name, () => r.server.stop());
  }

  private enqueue(name: string, op: () => Promise<void>): void {
    const next = (this.ops.get(name) ?? Promise.resolve())
      .then(op)
      .catch((err: unknown) => logError(this.logger, 'device plugin server operation failed', err, { name }))
      .finally(() => {
        if (this.ops.get(name) === next) this.ops.delete(name);
      });
    this.ops.set(name, next);
  }

  /** The devices of a resource: the slots of its devices, by device name then index. */
  private members(r: Resource): DeviceObject[] {
    const out: DeviceObject[] = [];
    for (const d of this.devices.values()) {
      if (r.kind === 'device' ? d.metadata.name === r.source : d.spec.configName === r.source) out.push(d);
    }
    return out.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  }

  private list(r: Resource): PluginDevice[] {
    const out: PluginDevice[] = [];
    for (const d of this.members(r)) {
      for (const id of slotIds(d.metadata.name, d.spec.capacity)) {
        const holder = this.claims.holder(id);
        const ours = !holder || (holder.node === this.node && holder.resource === r.name);
        const healthy = d.status.online && ours;
        out.push({ id, health: healthy ? DevicePluginApi.healthy : DevicePluginApi.unhealthy });
      }
    }
    return out;
  }

  /**
   * The kubelet's Allocate on resource `r`: one response per container. Every slot is claimed for this node
   * and resource, all or nothing, before anything is answered. A slot the same resource already holds is
   * claimed again: the kubelet gives a pod's app container the device of its init container (Akri #843), and it
   * is the judge of allocation within a resource. Each container gets:
   * - envs: the properties of its devices, keys as given (when several devices have a key, the first device
   *   in request order wins); `LEAFBRIDGE_DEVICES=<device names, comma-separated, in request order>` and
   *   `LEAFBRIDGE_SLOTS=<slot IDs>`; and, when the container gets more than one device, every property again
   *   per device as `LEAFBRIDGE_DEVICE_<n>_<KEY>` (n from 0 in LEAFBRIDGE_DEVICES order; KEY upper-cased,
   *   anything but A-Z, 0-9 and _ made _) plus `LEAFBRIDGE_DEVICE_<n>_NAME`;
   * - devices: each device's `spec.deviceNodes` (permissions `rw` unless given), once per host path;
   * - mounts: each device's `spec.mounts`, once per container path.
   * Errors: a slot of an offline device → FAILED_PRECONDITION; a slot held through another resource or by
   * another node → RESOURCE_EXHAUSTED; a slot whose device has gone → NOT_FOUND; with CDI on, a device not in
   * the CDI spec → UNAVAILABLE. A refused Allocate claims nothing. The answer is made from the Devices as they
   * were checked: one deleted while the claim is recorded is answered in full, as if deleted just after.
   */
  private async allocate(
    r: Resource,
    requests: readonly ContainerAllocateRequest[],
  ): Promise<ContainerAllocateResponse[]> {
    const perContainer = requests.map((req) => req.devices_ids.map((id) => this.slotOf(id)));
    const containers = perContainer.map((slots) => ({ slots, devices: this.onlineDevices(slots) }));
    this.checkCdiSpec(perContainer.flat());
    const refs = perContainer.flat().map((s) => ({ slot: s.id, device: s.device }));
    let conflicts: SlotClaim[];
    try {
      ({ conflicts } = await this.claims.claim(refs, { node: this.node, resource: r.name }));
    } catch (err) {
      throw new DevicePluginError('UNAVAILABLE', `the slots cannot be claimed now: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    if (conflicts.length > 0) throw this.exhausted(conflicts);
    return containers.map((c) => this.response(c.slots, c.devices));
  }

  /** The devices of a container's slots, each once, in slot order; FAILED_PRECONDITION if one is offline. */
  private onlineDevices(slots: Slot[]): DeviceObject[] {
    const out = new Map<string, DeviceObject>();
    for (const s of slots) {
      const d = this.devices.get(s.device);
      if (!d?.status.online) {
        throw new DevicePluginError(
          'FAILED_PRECONDITION',
          `device ${s.device} is offline (slot ${s.id}); the pod has to wait for it`,
        );
      }
      out.set(s.device, d);
    }
    return [...out.values()];
  }

  /** With CDI on, refuses (before anything is claimed) a device whose CDI name the runtime would not find. */
  private checkCdiSpec(slots: Slot[]): void {
    if (this.o.cdiDir === undefined) return;
    const missing = [...new Set(slots.map((s) => s.device))].filter((n) => !this.inCdiSpec.has(n));
    if (missing.length > 0) {
      throw new DevicePluginError(
        'UNAVAILABLE',
        `not (yet) in the CDI spec in ${this.o.cdiDir}: ${missing.join(', ')}; see the agent's log`,
      );
    }
  }

  private slotOf(id: string): Slot {
    const slot = this.slots.get(id);
    if (!slot) throw new DevicePluginError('NOT_FOUND', `slot ${id} has no device on node ${this.node}`);
    return slot;
  }

  private exhausted(conflicts: SlotClaim[]): DevicePluginError {
    const byDevice = new Map<string, SlotClaim[]>();
    for (const c of conflicts) {
      const device = this.slots.get(c.slot)?.device ?? c.slot;
      byDevice.set(device, [...(byDevice.get(device) ?? []), c]);
    }
    const parts = [...byDevice].map(([device, cs]) => {
      const d = this.devices.get(device);
      const capacity = d?.spec.capacity ?? 0;
      const free = slotIds(device, capacity).filter((id) => !this.claims.holder(id)).length;
      const held = cs.map((c) => `${c.slot} is held through ${c.resource} on node ${c.node}`).join(', ');
      return `${device} (capacity ${capacity}, ${free} free): ${held}`;
    });
    return new DevicePluginError('RESOURCE_EXHAUSTED', `slots already claimed: ${parts.join('; ')}`);
  }

  private response(slots: Slot[], devices: DeviceObject[]): ContainerAllocateResponse {
    const names = devices.map((d) => d.metadata.name);
    const envs: Record<string, string> = {};
    for (const d of [...devices].reverse()) Object.assign(envs, d.spec.properties);
    if (devices.length > 1) {
      devices.forEach((d, n) => {
        envs[`LEAFBRIDGE_DEVICE_${n}_NAME`] = d.metadata.name;
        for (const [k, v] of Object.entries(d.spec.properties))
          envs[`LEAFBRIDGE_DEVICE_${n}_${envKey(k)}`] = v;
      });
    }
    envs.LEAFBRIDGE_DEVICES = names.join(',');
    envs.LEAFBRIDGE_SLOTS = slots.map((s) => s.id).join(',');
    if (this.o.cdiDir !== undefined) return { envs, cdi_devices: names.map((n) => ({ name: cdiName(n) })) };
    const specs = new Map<string, DeviceSpec>();
    const mounts = new Map<string, Mount>();
    for (const d of devices) {
      for (const n of d.spec.deviceNodes ?? [])
        if (!specs.has(n.hostPath)) specs.set(n.hostPath, deviceSpec(n));
      for (const m of d.spec.mounts ?? [])
        if (!mounts.has(m.containerPath)) mounts.set(m.containerPath, mount(m));
    }
    return { envs, devices: [...specs.values()], mounts: [...mounts.values()] };
  }
}

/** A property key as part of an environment variable name: upper case, anything but [A-Z0-9_] made `_`. */
export function envKey(key: string): string {
  return key.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
}
