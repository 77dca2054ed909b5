import type { KubeObject } from '../kubeclient/informer.js';
import { isConflict } from '../kubeclient/kubeApiError.js';
import { API_VERSION } from '../model/resources.js';
import { mergeConditions } from '../model/sighting.js';
import type { ControllerContext } from './context.js';
import { asArray, asRecord, conditionsOf, type DeviceView } from './objects.js';

const CONFLICT_RETRIES = 4;

export interface NodeSplit {
  /** The Device's nodes that are not lost: where its broker may run. */
  usable: string[];
  /** Lost nodes to take out of `spec.nodes` now. */
  remove: { node: string; why: string }[];
  /** When to look again: a node's grace period, or a removal waiting out its backoff (clock ms). */
  deadlines: number[];
}

/** Sorts a Device's nodes into usable ones and lost ones to remove now. */
export function splitNodes(ctx: ControllerContext, device: DeviceView): NodeSplit {
  const split: NodeSplit = { usable: [], remove: [], deadlines: [] };
  const now = ctx.clock.now();
  for (const node of device.nodes) {
    const state = ctx.nodeHealth.state(node);
    const key = `${device.name}/${node}`;
    if (!state.lost) {
      split.usable.push(node);
      ctx.removals.reset(key);
      if (state.recheckAt !== undefined) split.deadlines.push(state.recheckAt);
      continue;
    }
    const wait = ctx.removals.wait(key);
    if (wait > 0) split.deadlines.push(now + wait);
    else split.remove.push({ node, why: state.why });
  }
  return split;
}

/**
 * Takes lost nodes out of a Device's `spec.nodes` (a PUT conditional on the resourceVersion; 409 → re-read
 * and again), and when none is left marks it offline through `/status` the way an agent does when the last
 * node loses it (`online: false`, `lastSeen` now, `Online=False`): the agents then delete it after their
 * grace period unless a node sees it again (an agent that sees it re-adds its node at once).
 */
export async function removeNodes(
  ctx: ControllerContext,
  device: DeviceView,
  remove: { node: string; why: string }[],
): Promise<void> {
  const drop = new Set(remove.map((r) => r.node));
  let cur: KubeObject | undefined = device.raw;
  for (let attempt = 0; cur; attempt++) {
    const spec = asRecord(cur.spec) ?? {};
    const nodes = asArray(spec.nodes).filter((n) => typeof n === 'string' && !drop.has(n)) as string[];
    try {
      if (nodes.length !== asArray(spec.nodes).length) {
        cur = await ctx.writer.replace('devices', {
          ...cur,
          apiVersion: API_VERSION,
          kind: 'Device',
          spec: { ...spec, nodes },
        });
        for (const r of remove) ctx.removals.did(`${device.name}/${r.node}`);
        ctx.logger.info({ device: device.name, removed: remove, nodes }, 'lost nodes removed from device');
      }
      if (nodes.length === 0) await markOffline(ctx, cur, remove);
      return;
    } catch (err) {
      if (!isConflict(err) || attempt >= CONFLICT_RETRIES) throw err;
      cur = await ctx.writer.get('devices', device.name);
    }
  }
}

/** A Device no node sees: offline, as src/model/sighting.ts writes it. */
export async function markOffline(
  ctx: ControllerContext,
  device: KubeObject,
  lost: { node: string; why: string }[],
): Promise<void> {
  let cur: KubeObject | undefined = device;
  for (let attempt = 0; cur; attempt++) {
    const status = asRecord(cur.status) ?? {};
    if (status.online !== true || asArray(asRecord(cur.spec)?.nodes).length > 0) return;
    const now = new Date(ctx.clock.now()).toISOString();
    const why = lost.map((l) => `${l.node}: ${l.why}`).join(', ');
    const conditions = mergeConditions(
      conditionsOf(status),
      [
        {
          type: 'Online',
          status: 'False',
          reason: 'NodesLost',
          message: `no node that saw it is left${why ? ` (${why})` : ''}; deleted after the agents' grace period unless a node sees it again`,
        },
      ],
      now,
    );
    const patch = {
      metadata: { resourceVersion: cur.metadata.resourceVersion },
      status: { online: false, lastSeen: now, conditions },
    };
    try {
      await ctx.writer.mergePatch('devices', cur.metadata.name, patch, true);
      ctx.logger.info({ device: cur.metadata.name }, 'device offline: no node left');
      return;
    } catch (err) {
      if (!isConflict(err) || attempt >= CONFLICT_RETRIES) throw err;
      cur = await ctx.writer.get('devices', cur.metadata.name);
    }
  }
}
