import { isNameOf } from '../model/naming.js';
import type { HubDevice } from './types.js';

/** The parts of a Device the index works with, checked (a Device on the server may be malformed). */
export interface IndexedDevice {
  name: string;
  id: string;
  configName: string;
  shared: boolean;
  nodes: string[];
}

/** A Device's routing fields, or undefined when they are missing or of the wrong type. */
export function indexed(o: HubDevice): IndexedDevice | undefined {
  const s = o.spec;
  const name = o.metadata?.name;
  if (typeof name !== 'string' || !s || typeof s.id !== 'string' || s.id.length === 0) return undefined;
  const nodes = Array.isArray(s.nodes) ? s.nodes.filter((n): n is string => typeof n === 'string') : [];
  return {
    name,
    id: s.id,
    configName: typeof s.configName === 'string' ? s.configName : '',
    shared: s.shared === true,
    nodes,
  };
}

/**
 * Which Devices a message from (node, MQTT device id) belongs to. A device on an edge broker publishes under
 * `devices/{id}/`, and the mqtt discovery handler makes `{id}` the Device's `spec.id` (discovery-handlers/mqtt:
 * `id` is the topic level). So the candidates are the Devices whose `spec.id` equals the id, and of those the
 * ones this node belongs to:
 *  - `spec.nodes` lists the node (the node sees the device now), or
 *  - a device local to a node (`shared: false`) whose name is the one that node gives it
 *    (`<config>-<hash of id and node>`, src/model/naming.ts) — so a device that went offline, which
 *    empties its `spec.nodes`, still gets its `offline` status and last reports written.
 * Several DiscoveryConfigs may list one device (one Device each): a message goes to all of them.
 * Lookups are cached per (node, id) until a Device with that id changes.
 */
export class DeviceIndex {
  private readonly byName = new Map<string, IndexedDevice>();
  private readonly byId = new Map<string, Set<string>>();
  private readonly cache = new Map<string, Map<string, string[]>>();
  /** Per local Device, the node it was last seen on (for desired twins while `spec.nodes` is empty). */
  private readonly home = new Map<string, string>();

  get size(): number {
    return this.byName.size;
  }

  get(name: string): IndexedDevice | undefined {
    return this.byName.get(name);
  }

  /** Adds or replaces a Device (a status write changes nothing here: the cache stays). */
  put(d: IndexedDevice): void {
    const old = this.byName.get(d.name);
    if (old && sameRouting(old, d)) return;
    if (old && old.id !== d.id) this.unlinkId(old);
    this.byName.set(d.name, d);
    let names = this.byId.get(d.id);
    if (!names) {
      names = new Set();
      this.byId.set(d.id, names);
    }
    names.add(d.name);
    this.cache.delete(d.id);
    if (!d.shared && d.nodes.length === 1) this.home.set(d.name, d.nodes[0] as string);
  }

  remove(name: string): IndexedDevice | undefined {
    const old = this.byName.get(name);
    if (!old) return undefined;
    this.byName.delete(name);
    this.home.delete(name);
    this.unlinkId(old);
    return old;
  }

  /** The Devices a message from `node` about MQTT device `id` belongs to (empty: none). */
  lookup(node: string, id: string): readonly string[] {
    const perNode = this.cache.get(id);
    const hit = perNode?.get(node);
    if (hit) return hit;
    const names = this.byId.get(id);
    const out: string[] = [];
    for (const name of names ?? []) {
      const d = this.byName.get(name) as IndexedDevice;
      if (
        d.nodes.includes(node) ||
        (!d.shared && (this.home.get(name) === node || isNameOf(name, d.configName, id, node)))
      ) {
        out.push(name);
        if (!d.shared) this.home.set(name, node);
      }
    }
    if (names) {
      // Only ids some Device has are cached (a flood of unknown ids must not grow the cache).
      const m = perNode ?? new Map<string, string[]>();
      if (m.size < 1024) m.set(node, out);
      this.cache.set(id, m);
    }
    return out;
  }

  /** The nodes a Device's desired twin goes to: `spec.nodes`, or for a local device its last known node. */
  targets(name: string): string[] {
    const d = this.byName.get(name);
    if (!d) return [];
    if (d.nodes.length > 0) return d.nodes;
    const home = d.shared ? undefined : this.home.get(name);
    return home ? [home] : [];
  }

  /** Names of the Devices whose desired twins go to `node`. */
  onNode(node: string): string[] {
    const out: string[] = [];
    for (const name of this.byName.keys()) if (this.targets(name).includes(node)) out.push(name);
    return out;
  }

  private unlinkId(d: IndexedDevice): void {
    const names = this.byId.get(d.id);
    names?.delete(d.name);
    if (names?.size === 0) this.byId.delete(d.id);
    this.cache.delete(d.id);
  }
}

function sameRouting(a: IndexedDevice, b: IndexedDevice): boolean {
  return (
    a.id === b.id &&
    a.configName === b.configName &&
    a.shared === b.shared &&
    a.nodes.length === b.nodes.length &&
    a.nodes.every((n, i) => n === b.nodes[i])
  );
}
