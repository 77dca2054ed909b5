import type { Condition, DeviceObject } from './resources.js';

/**
 * One node's part in a Device: "I see it, like this" (`seen`), or "I do not see it" (`seen` absent).
 * Several nodes write to one shared Device (a network camera); each states only its own part, and
 * `withSighting` folds that part into whatever the store holds, so the store can apply it again on top
 * of a fresher object after a conflict, and a newer part replaces an older one that has not landed yet.
 */
export interface Sighting {
  node: string;
  /** The device as this node sees it (its `spec.nodes` is ignored); absent when this node does not see it. */
  seen?: DeviceObject;
  /** When it does not: since when (ISO). A write delayed by an outage still says when the device was lost. */
  lostAt?: string;
  /** ISO time the sighting is applied. */
  now: string;
  /** A Device no node sees is deleted once it has been unseen this long. */
  graceMs: number;
}

/**
 * The Device after one node's sighting; `null` when it should not exist. `spec.nodes` lists the nodes that
 * see it now; `status.online` is true while any does. `status.lastSeen` is when a node last began to see
 * it or, once a node has lost it, the latest time a node lost it. When the last node loses it, it turns
 * offline, and it is deleted once `graceMs` have passed since `lastSeen` without a node seeing it; whichever
 * node looks after that deletes it.
 */
export function withSighting(current: DeviceObject | undefined, s: Sighting): DeviceObject | null {
  const before = current?.spec.nodes ?? [];
  if (s.seen) {
    const nodes = s.seen.spec.shared ? sortedUnique([...before, s.node]) : [s.node];
    const unchanged = current?.status.online === true && before.includes(s.node) && sameNodes(before, nodes);
    const next: DeviceObject = {
      ...s.seen,
      metadata: { ...s.seen.metadata, ...(current ? pick(current.metadata) : {}) },
      spec: { ...s.seen.spec, nodes },
      status: {
        ...current?.status,
        online: true,
        lastSeen: unchanged && current ? current.status.lastSeen : s.now,
        conditions: mergeConditions(
          current?.status.conditions ?? [],
          [
            {
              type: 'Online',
              status: 'True',
              reason: 'Discovered',
              message: `seen by ${s.seen.spec.handler} from ${nodes.join(', ')}`,
            },
            ...s.seen.status.conditions.filter((c) => c.type !== 'Online'),
          ],
          s.now,
        ),
      },
    };
    return next;
  }
  if (!current) return null;
  const nodes = before.filter((n) => n !== s.node);
  if (sameNodes(before, nodes)) return expired(current, s) ? null : current;
  const gone = nodes.length === 0;
  const lastSeen = latest(current.status.lastSeen, s.lostAt ?? s.now);
  const next: DeviceObject = {
    ...current,
    spec: { ...current.spec, nodes },
    status: {
      ...current.status,
      online: !gone,
      lastSeen,
      conditions: mergeConditions(
        current.status.conditions,
        [
          gone
            ? {
                type: 'Online',
                status: 'False',
                reason: 'Vanished',
                message: `no node sees it; deleted after ${Math.round(s.graceMs / 1000)} s unless it returns`,
              }
            : {
                type: 'Online',
                status: 'True',
                reason: 'Discovered',
                message: `seen by ${current.spec.handler} from ${nodes.join(', ')}`,
              },
        ],
        s.now,
      ),
    },
  };
  return gone && expired(next, s) ? null : next;
}

/** Whether no node has seen `device` for the grace period (and so it is due for deletion). */
export function expired(device: DeviceObject, s: { now: string; graceMs: number }): boolean {
  if (device.spec.nodes.length > 0) return false;
  const lost = Date.parse(device.status.lastSeen);
  return !Number.isFinite(lost) || Date.parse(s.now) - lost >= s.graceMs;
}

export function mergeConditions(
  old: readonly Condition[],
  updates: readonly Omit<Condition, 'lastTransitionTime'>[],
  now: string,
): Condition[] {
  const byType = new Map(old.map((c) => [c.type, c]));
  for (const u of updates) {
    const prev = byType.get(u.type);
    const changed = !prev || prev.status !== u.status;
    byType.set(u.type, {
      type: u.type,
      status: u.status,
      reason: u.reason,
      message: u.message,
      lastTransitionTime: changed ? now : prev.lastTransitionTime,
    });
  }
  return [...byType.values()];
}

function latest(a: string, b: string): string {
  return (Date.parse(a) || 0) >= (Date.parse(b) || 0) ? a : b;
}

function pick(m: DeviceObject['metadata']): Partial<DeviceObject['metadata']> {
  return { uid: m.uid, creationTimestamp: m.creationTimestamp, resourceVersion: m.resourceVersion };
}

function sortedUnique(xs: readonly string[]): string[] {
  return [...new Set(xs)].sort();
}

function sameNodes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
