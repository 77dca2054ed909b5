import type { DeviceObject, SlotRecord } from '../model/resources.js';
import type { DeviceStore, DeviceStoreEvent } from '../registry/deviceStore.js';
import { type Clock, systemClock } from '../util/clock.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { child, type Logger } from '../util/logger.js';
import { type SlotClaim, type SlotClaims, type SlotHolder, type SlotRef, sameHolder } from './slots.js';

export interface StoreSlotClaimsOptions {
  store: DeviceStore;
  logger: Logger;
  clock?: Clock;
}

/**
 * Slot claims recorded on the Device objects themselves, in `status.slots` (slot ID → node, resource, since),
 * so every node sees every claim and a restarted agent finds its own.
 *
 * A claim is a conditional write: the store applies it to the object as the server last had it, and a 409
 * (someone wrote in between) makes it re-read and decide again, so of two nodes claiming the last slot of a
 * camera at once, one gets it and the other is told who holds it: no over-allocation, and no loop (the loser
 * answers the kubelet at once with RESOURCE_EXHAUSTED). A claim on a shared device must reach the API server
 * before Allocate answers; when the server does not answer, the claim is refused (the pod is not started
 * rather than started on a slot another node may hand out too). A device only this node can see cannot be
 * claimed elsewhere, so its claim is queued through an outage like any other write.
 *
 * Releases are queued writes: a slot shows as free here at once and on other nodes when the write lands.
 */
export class StoreSlotClaims implements SlotClaims {
  private readonly store: DeviceStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** Every claim on every Device, by slot ID, as this node knows them. */
  private readonly claims = new Map<string, SlotClaim>();
  private readonly listeners = new Set<() => void>();
  private unwatch: (() => void) | undefined;

  constructor(o: StoreSlotClaimsOptions) {
    this.store = o.store;
    this.clock = o.clock ?? systemClock;
    this.logger = child(o.logger, 'deviceplugin:claims');
  }

  /** Loads the claims recorded on the Devices and follows their changes. */
  async start(): Promise<void> {
    this.unwatch ??= this.store.watch((e) => this.seen(e));
    for (const d of await this.store.list()) this.load(d.metadata.name, d);
    this.emit();
  }

  stop(): void {
    this.unwatch?.();
    this.unwatch = undefined;
  }

  holder(slot: string): SlotClaim | undefined {
    return this.claims.get(slot);
  }

  held(node: string): SlotClaim[] {
    return [...this.claims.values()].filter((c) => c.node === node);
  }

  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async claim(slots: readonly SlotRef[], holder: SlotHolder): Promise<{ conflicts: SlotClaim[] }> {
    const byDevice = groupByDevice(slots);
    const done: string[] = [];
    try {
      for (const [device, ids] of byDevice) {
        const conflicts = await this.claimOn(device, ids, holder);
        if (conflicts.length > 0) {
          await this.undo(done, holder.node);
          return { conflicts };
        }
        done.push(...ids);
      }
    } catch (err) {
      await this.undo(done, holder.node);
      throw err;
    }
    return { conflicts: [] };
  }

  async release(slots: readonly string[], node: string): Promise<string[]> {
    const mine = slots.filter((s) => this.claims.get(s)?.node === node);
    const byDevice = groupByDevice(
      mine.map((slot) => ({ slot, device: this.claims.get(slot)?.device ?? '' })),
    );
    for (const s of mine) this.claims.delete(s);
    if (mine.length > 0) this.emit();
    for (const [device, ids] of byDevice) {
      this.store
        .update(device, (cur) => {
          if (!cur?.status.slots) return cur ?? null;
          const left = Object.entries(cur.status.slots).filter(
            ([id, r]) => !(ids.includes(id) && r.node === node),
          );
          if (left.length === Object.keys(cur.status.slots).length) return cur;
          return { ...cur, status: { ...cur.status, slots: Object.fromEntries(left) } };
        })
        .catch((err: unknown) =>
          this.logger.warn({ device, slots: ids, err: errorMessage(err) }, 'slot release not recorded'),
        );
    }
    return [...new Set(mine)];
  }

  /** Claims `ids` of one device for `holder`; the claims of others that stand in the way, if any. */
  private async claimOn(device: string, ids: string[], holder: SlotHolder): Promise<SlotClaim[]> {
    let conflicts: SlotClaim[] = [];
    let absent = false;
    const since = new Date(this.clock.now()).toISOString();
    const mutate = (cur: DeviceObject | undefined): DeviceObject | null => {
      conflicts = [];
      absent = !cur;
      if (!cur) return null;
      const slots = { ...cur.status.slots };
      for (const id of ids) {
        const r = slots[id];
        if (r && !sameHolder(r, holder)) conflicts.push(toClaim(device, id, r));
      }
      if (conflicts.length > 0) return cur;
      for (const id of ids) slots[id] = { node: holder.node, resource: holder.resource, since };
      return { ...cur, status: { ...cur.status, slots } };
    };
    const local = (await this.store.get(device))?.spec.shared === false;
    let stored: DeviceObject | undefined;
    try {
      stored = await this.store.update(device, mutate, { now: true });
    } catch (err) {
      if (!(local && err instanceof LeafbridgeError && err.code === 'API_UNREACHABLE')) throw err;
      // Only this node sees the device: nobody else can claim it meanwhile. Decide against the claims this node
      // knows (queued ones included), hold the slots here at once, and record them when the server is back.
      stored = mutate(this.asKnownHere(device, await this.store.get(device))) ?? undefined;
      if (!absent && conflicts.length === 0) {
        this.logger.info({ device }, 'API server unreachable; claim on a local device queued');
        void this.store.update(device, mutate).catch(() => {});
      }
    }
    if (absent) {
      throw new LeafbridgeError('DEVICE_NOT_STORED', `device ${device} is not in the device store (yet)`);
    }
    if (conflicts.length === 0 && stored) {
      this.load(device, stored);
      this.emit();
    }
    return conflicts;
  }

  /** The Device with the claims this node knows on it, queued ones included (for a Device only it sees). */
  private asKnownHere(device: string, object: DeviceObject | undefined): DeviceObject | undefined {
    if (!object) return undefined;
    const slots: Record<string, SlotRecord> = {};
    for (const c of this.claims.values()) {
      if (c.device === device)
        slots[c.slot] = { node: c.node, resource: c.resource, since: new Date(c.since).toISOString() };
    }
    return { ...object, status: { ...object.status, slots } };
  }

  private async undo(slots: string[], node: string): Promise<void> {
    if (slots.length > 0) await this.release(slots, node);
  }

  private seen(e: DeviceStoreEvent): void {
    this.load(e.object.metadata.name, e.type === 'DELETED' ? undefined : e.object);
    this.emit();
  }

  /** Replaces the claims of `device` with what `object` records. */
  private load(device: string, object: DeviceObject | undefined): void {
    for (const [slot, c] of this.claims) if (c.device === device) this.claims.delete(slot);
    for (const [slot, r] of Object.entries(object?.status.slots ?? {})) {
      this.claims.set(slot, toClaim(device, slot, r));
    }
  }

  private emit(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, 'slot claim listener failed');
      }
    }
  }
}

function toClaim(device: string, slot: string, r: SlotRecord): SlotClaim {
  const since = Date.parse(r.since);
  return { slot, device, node: r.node, resource: r.resource, since: Number.isNaN(since) ? 0 : since };
}

function groupByDevice(slots: readonly SlotRef[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const { slot, device } of slots) {
    const ids = out.get(device) ?? [];
    if (!ids.includes(slot)) ids.push(slot);
    out.set(device, ids);
  }
  return out;
}
