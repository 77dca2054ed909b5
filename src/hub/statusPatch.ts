import type { Condition } from '../model/resources.js';
import { mergeConditions } from '../model/sighting.js';
import { MESSAGE_ID_PROPERTY } from '../model/topics.js';
import { mergePatchOf } from '../util/json.js';
import type { MessageId, Presence, Report } from './messages.js';

/** The condition the hub owns on a Device: the device's MQTT presence as its edge last reported it. */
export const CONNECTED = 'Connected';

/** What the hub wants to write for one Device: the newest report and presence it has. */
export interface Pending {
  report?: Report;
  presence?: Presence;
}

/** Whether two states come from one source, as far as ordering goes: one edge database (its epoch), else one node. */
function sameSource(
  a: { node: string; epoch?: string | undefined },
  b: { node: string; epoch?: string | undefined },
): boolean {
  return a.epoch !== undefined || b.epoch !== undefined ? a.epoch === b.epoch : a.node === b.node;
}

/**
 * Whether `incoming` may replace `held`. Within one source (an edge database: its epoch) only a higher
 * `$version` wins. From another source (a new epoch: the edge's database was replaced, or the device moved
 * to another node) the one that arrives later wins: versions of different sources do not compare.
 */
export function reportNewer(
  incoming: { version: number; node: string; epoch?: string | undefined },
  held: { version: number; node: string; epoch?: string | undefined } | undefined,
): boolean {
  if (!held) return true;
  return !sameSource(incoming, held) || incoming.version > held.version;
}

/** The same for presence: within one epoch by the message's sequence number; otherwise arrival order. */
export function presenceNewer(
  incoming: { msgId?: MessageId | undefined },
  held: { msgId?: MessageId | undefined } | undefined,
): boolean {
  if (!held?.msgId || !incoming.msgId) return true;
  return incoming.msgId.epoch !== held.msgId.epoch || incoming.msgId.seq > held.msgId.seq;
}

/** `b` folded into `a`: per part the newer one. Commutative, so a failed write's state can be folded back. */
export function fold(a: Pending | undefined, b: Pending | undefined): Pending {
  if (!a) return b ?? {};
  if (!b) return a;
  const out: Pending = {};
  const report = !a.report ? b.report : !b.report || !reportNewer(b.report, a.report) ? a.report : b.report;
  const presence = !a.presence
    ? b.presence
    : !b.presence || !presenceNewer(b.presence, a.presence)
      ? a.presence
      : b.presence;
  if (report) out.report = report;
  if (presence) out.presence = presence;
  return out;
}

/** What a status write comes to: the merge patch, and which parts of `Pending` turned out stale. */
export interface StatusPatch {
  /** A JSON merge patch for `.status`; empty when the server already holds as new a state. */
  patch: Record<string, unknown>;
  reportWritten: boolean;
  staleParts: number;
}

/**
 * The merge patch that brings `status` (as the API server holds it) up to `pending`, touching only what the
 * hub owns: `reported`, the `Connected` condition, `lastSeen` (moved forward, to when the hub received the
 * newest part it writes; never back), and `online` only when the object has none (it is required; the agents
 * own it). Decided against the server's copy, under a
 * resourceVersion precondition, so a write can never move a Device back: a state that another replica (or
 * an earlier write) has already put there, or a newer one, changes nothing.
 */
export function statusPatch(status: Record<string, unknown> | undefined, pending: Pending): StatusPatch {
  const cur = status ?? {};
  const patch: Record<string, unknown> = {};
  let staleParts = 0;
  let reportWritten = false;
  let seenAt = 0;
  if (typeof cur.online !== 'boolean') patch.online = false;
  if (pending.report) {
    const held = storedReport(cur.reported);
    if (reportNewer(pending.report, held)) {
      const next = reportedDoc(pending.report);
      const before = isObject(cur.reported) ? cur.reported : undefined;
      const diff = before ? mergePatchOf(before, next) : next;
      if (Object.keys(diff).length > 0) {
        patch.reported = diff;
        reportWritten = true;
      }
      seenAt = Math.max(seenAt, pending.report.receivedAt);
    } else staleParts++;
  }
  const conditions = Array.isArray(cur.conditions) ? (cur.conditions as unknown[]).filter(isCondition) : [];
  if (pending.presence) {
    const held = storedPresence(conditions);
    if (presenceNewer(pending.presence, held)) {
      const next = mergeConditions(
        conditions,
        [connectedCondition(pending.presence)],
        iso(pending.presence.receivedAt),
      );
      if (JSON.stringify(next) !== JSON.stringify(conditions)) patch.conditions = next;
      seenAt = Math.max(seenAt, pending.presence.receivedAt);
    } else staleParts++;
  }
  if (seenAt > 0) {
    const seen = iso(seenAt);
    const before = typeof cur.lastSeen === 'string' ? Date.parse(cur.lastSeen) : Number.NaN;
    if (!(before >= Date.parse(seen))) patch.lastSeen = seen;
  }
  return { patch, reportWritten, staleParts };
}

/** The reported twin as stored: the edge's document (with its `$version`), and where it came from. */
export function reportedDoc(r: Report): Record<string, unknown> {
  return {
    ...r.doc,
    $version: r.version,
    $node: r.node,
    ...(r.epoch !== undefined ? { $epoch: r.epoch } : {}),
  };
}

function storedReport(v: unknown): { version: number; node: string; epoch?: string } | undefined {
  if (!isObject(v) || typeof v.$version !== 'number') return undefined;
  return {
    version: v.$version,
    node: typeof v.$node === 'string' ? v.$node : '',
    ...(typeof v.$epoch === 'string' ? { epoch: v.$epoch } : {}),
  };
}

const HELD_ID = new RegExp(`\\(${MESSAGE_ID_PROPERTY} ([0-9A-Za-z]{1,64})-(\\d{1,15})\\)$`);

/** The presence the Connected condition records (its message ends with the message id that set it). */
function storedPresence(conditions: readonly Condition[]): { msgId?: MessageId } | undefined {
  const c = conditions.find((x) => x.type === CONNECTED);
  if (!c) return undefined;
  const m = HELD_ID.exec(typeof c.message === 'string' ? c.message : '');
  if (!m) return {};
  return { msgId: { epoch: m[1] as string, seq: Number(m[2]), text: `${m[1]}-${m[2]}` } };
}

export function connectedCondition(p: Presence): Omit<Condition, 'lastTransitionTime'> {
  const id = p.msgId ? ` (${MESSAGE_ID_PROPERTY} ${p.msgId.text})` : '';
  return {
    type: CONNECTED,
    status: p.online ? 'True' : 'False',
    reason: p.online ? 'MqttOnline' : 'MqttOffline',
    message: `${p.online ? 'online' : 'offline'} at ${p.node}${id}`,
  };
}

/** RFC 3339 to the second, as Kubernetes writes times. */
export function iso(ms: number): string {
  return `${new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19)}Z`;
}

function isCondition(v: unknown): v is Condition {
  return isObject(v) && typeof v.type === 'string' && typeof v.status === 'string';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
