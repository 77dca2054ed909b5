import { fold, type Pending } from './statusPatch.js';

interface Entry {
  node: string;
  id: string;
  pending: Pending;
  bytes: number;
  since: number;
}

/**
 * The newest state of devices the hub has no Device for yet, kept for a while: a device that connects to
 * its edge and reports at once usually does so before discovery has created its Device (discovery lists it,
 * the agent writes it, the hub's watch sees it: tens to hundreds of ms). Per (node, id) only the newest report
 * and presence are kept (the same fold as for pending writes), for at most `ms` after its latest message, in at most `maxBytes`
 * (payload bytes; the oldest entry goes first). When a Device with that id appears, `take` hands them over.
 */
export class HeldStates {
  private readonly entries = new Map<string, Entry>();
  private readonly byId = new Map<string, Set<string>>();
  private bytes = 0;

  constructor(private readonly limits: { ms: number; maxBytes: number }) {}

  get size(): number {
    return this.entries.size;
  }

  /** Holds `pending` for (node, id); returns how many held entries were pushed out (counted as dropped). */
  hold(node: string, id: string, pending: Pending, bytes: number, now: number): number {
    const key = `${node}\u0000${id}`;
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.bytes;
      this.entries.delete(key); // re-inserted: newest last
    }
    const entry: Entry = {
      node,
      id,
      pending: fold(old?.pending, pending),
      bytes: Math.max(old?.bytes ?? 0, bytes),
      since: now,
    };
    this.entries.set(key, entry);
    this.bytes += entry.bytes;
    let ids = this.byId.get(id);
    if (!ids) {
      ids = new Set();
      this.byId.set(id, ids);
    }
    ids.add(key);
    let dropped = this.expire(now);
    while (this.bytes > this.limits.maxBytes && this.entries.size > 1) {
      const oldest = this.entries.keys().next().value as string;
      this.delete(oldest);
      dropped++;
    }
    return dropped;
  }

  /** Held states of MQTT device `id`, by node; removed from the hold once `accept` takes one. */
  take(id: string, accept: (node: string, pending: Pending) => boolean): void {
    const keys = this.byId.get(id);
    if (!keys) return;
    for (const key of [...keys]) {
      const e = this.entries.get(key) as Entry;
      if (accept(e.node, e.pending)) this.delete(key);
    }
  }

  /** Drops what has been held longer than `ms`; returns how many entries that was. */
  expire(now: number): number {
    let n = 0;
    for (const [key, e] of this.entries) {
      if (now - e.since < this.limits.ms) break; // insertion order is age order
      this.delete(key);
      n++;
    }
    return n;
  }

  private delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.bytes -= e.bytes;
    const ids = this.byId.get(e.id);
    ids?.delete(key);
    if (ids?.size === 0) this.byId.delete(e.id);
  }
}
