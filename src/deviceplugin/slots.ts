import { shorten } from '../model/naming.js';
import type { Clock } from '../util/clock.js';

/** The kubelet's limit on a device ID, and on the name part of an extended resource (`leafbridge.io/<name>`). */
export const MAX_ID = 63;
/** Slot indexes are kept to 4 digits when a name is shortened (capacity up to 10 000). */
const INDEX_ROOM = 5; // '-' + 4 digits

/**
 * The kubelet device IDs of a device's capacity slots: `<device-name>-<i>`, i in 0..capacity-1. A device name
 * longer than 58 characters is shortened (`shorten`) so that every ID stays within 63 characters; the same
 * base is used for all slots of a device, whatever its capacity.
 */
export function slotIds(deviceName: string, capacity: number): string[] {
  const base = shorten(deviceName, MAX_ID - INDEX_ROOM);
  return Array.from({ length: Math.max(0, capacity) }, (_, i) => `${base}-${i}`);
}

/** Who holds a slot: the node and the extended resource through which the kubelet allocated it. */
export interface SlotHolder {
  node: string;
  resource: string;
}

/** A slot and the Device it belongs to. */
export interface SlotRef {
  slot: string;
  device: string;
}

export interface SlotClaim extends SlotHolder, SlotRef {
  /** Clock time (ms) of the claim, renewed when the same holder claims it again. */
  since: number;
}

/**
 * The table of claimed slots: the seam between the device-plugin manager and where claims are recorded.
 * `MemorySlotClaims` (below) keeps them in this process, for tests and single-node use; `StoreSlotClaims`
 * (storeClaims.ts) records them on the Device objects with optimistic concurrency, so two nodes never
 * over-allocate a shared device and claims outlive an agent restart. `holder()` is called on every
 * ListAndWatch update, so it answers from a cache; the `watch` listeners hear of every change of claims,
 * made on this node or another.
 */
export interface SlotClaims {
  /** The current holder of a slot, if any. */
  holder(slot: string): SlotClaim | undefined;
  /**
   * Claim every slot for `holder`, all or nothing. A slot held by the same holder is claimed again (the kubelet
   * hands the same device to a pod's init and app containers, and is the judge of allocation within one
   * resource); a slot held by anyone else is a conflict, and then nothing is claimed. Rejects (a
   * LeafbridgeError) when the claim cannot be recorded safely now.
   */
  claim(slots: readonly SlotRef[], holder: SlotHolder): Promise<{ conflicts: SlotClaim[] }>;
  /** Release the slots held by `node`; returns those that were released. */
  release(slots: readonly string[], node: string): Promise<string[]>;
  /** The claims held by one node. */
  held(node: string): SlotClaim[];
  /** Called after any change of claims. Returns a function that stops the calls. */
  watch(listener: () => void): () => void;
}

/** SlotClaims in this process's memory: enough for devices seen by one node only. */
export class MemorySlotClaims implements SlotClaims {
  private readonly claims = new Map<string, SlotClaim>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly clock: Pick<Clock, 'now'> = { now: () => Date.now() }) {}

  holder(slot: string): SlotClaim | undefined {
    return this.claims.get(slot);
  }

  async claim(slots: readonly SlotRef[], holder: SlotHolder): Promise<{ conflicts: SlotClaim[] }> {
    const conflicts: SlotClaim[] = [];
    for (const { slot } of slots) {
      const c = this.claims.get(slot);
      if (c && !sameHolder(c, holder) && !conflicts.includes(c)) conflicts.push(c);
    }
    if (conflicts.length > 0) return { conflicts };
    const since = this.clock.now();
    for (const { slot, device } of slots)
      this.claims.set(slot, { slot, device, node: holder.node, resource: holder.resource, since });
    this.emit();
    return { conflicts };
  }

  async release(slots: readonly string[], node: string): Promise<string[]> {
    const released: string[] = [];
    for (const slot of new Set(slots)) {
      if (this.claims.get(slot)?.node !== node) continue;
      this.claims.delete(slot);
      released.push(slot);
    }
    if (released.length > 0) this.emit();
    return released;
  }

  held(node: string): SlotClaim[] {
    return [...this.claims.values()].filter((c) => c.node === node);
  }

  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        // a failing listener must not undo a claim
      }
    }
  }
}

export function sameHolder(a: SlotHolder, b: SlotHolder): boolean {
  return a.node === b.node && a.resource === b.resource;
}
