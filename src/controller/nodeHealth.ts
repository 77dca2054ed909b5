import type { KubeObject } from '../kubeclient/informer.js';
import type { Clock } from '../util/clock.js';
import { asArray, asRecord, timeOf } from './objects.js';

export type NodeState = { lost: false; recheckAt?: number } | { lost: true; why: string };

/**
 * Which nodes are lost: deleted, or not Ready for longer than the grace period. Readiness is the Node's
 * `Ready` condition, counted from its lastTransitionTime (from when this controller first saw it not Ready
 * when that time is missing). A node with no Ready condition at all is not judged (nothing reports on it).
 * A name that is not a Node is lost once it has been missing for the grace period too (deleted while this
 * controller was not watching), but only once the node list has been read.
 */
export class NodeHealth {
  private readonly notReadySince = new Map<string, number>();
  private readonly missingSince = new Map<string, number>();
  private readonly deleted = new Set<string>();

  constructor(
    private readonly nodes: { known: Map<string, KubeObject>; hasSynced: boolean },
    private readonly graceMs: number,
    private readonly clock: Clock,
  ) {}

  /** Told of each Node event (a deleted Node is lost at once). */
  observe(type: 'ADDED' | 'MODIFIED' | 'DELETED', name: string): void {
    if (type === 'DELETED') {
      this.deleted.add(name);
    } else {
      this.deleted.delete(name);
      this.missingSince.delete(name);
    }
  }

  state(name: string): NodeState {
    const now = this.clock.now();
    const node = this.nodes.known.get(name);
    if (!node) {
      if (this.deleted.has(name)) return { lost: true, why: 'deleted' };
      if (!this.nodes.hasSynced) return { lost: false };
      const since = this.firstSeen(this.missingSince, name, now);
      return now - since >= this.graceMs
        ? { lost: true, why: 'not a Node' }
        : { lost: false, recheckAt: since + this.graceMs };
    }
    const ready = readyCondition(node);
    if (!ready || ready.status === 'True') {
      this.notReadySince.delete(name);
      return { lost: false };
    }
    const since = Number.isFinite(ready.since) ? ready.since : this.firstSeen(this.notReadySince, name, now);
    return now - since >= this.graceMs
      ? { lost: true, why: `Ready=${ready.status}` }
      : { lost: false, recheckAt: since + this.graceMs };
  }

  lost(name: string): boolean {
    return this.state(name).lost;
  }

  private firstSeen(map: Map<string, number>, name: string, now: number): number {
    const t = map.get(name);
    if (t !== undefined) return t;
    map.set(name, now);
    return now;
  }
}

function readyCondition(node: KubeObject): { status: string; since: number } | undefined {
  for (const c of asArray(asRecord(node.status)?.conditions)) {
    const r = asRecord(c);
    if (r?.type === 'Ready' && typeof r.status === 'string') {
      return { status: r.status, since: timeOf(r.lastTransitionTime) };
    }
  }
  return undefined;
}
