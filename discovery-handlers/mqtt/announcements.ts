import { parseBirth, parseStatus } from './birth.js';
import type { IdFilter } from './filter.js';
import { maxIdLength } from './schema.js';
import { type AnnounceTopics, parseAnnounceTopic } from './topics.js';
import type { DeviceTracker } from './tracker.js';

/** What became of one message: applied to the tracker, not for this config, or rejected (and why). */
export type Applied =
  | { result: 'applied' | 'filtered' }
  | { result: 'rejected'; id: string; reason: string }
  | { result: 'full'; id: string };

export interface AnnounceRules {
  topics: AnnounceTopics;
  idFilter: IdFilter;
  maxBirthBytes: number;
}

/** Applies one birth or status message to the tracker. Never throws: bad input is a `rejected` result. */
export function applyAnnouncement(
  tracker: DeviceTracker,
  rules: AnnounceRules,
  topic: string,
  payload: Buffer,
): Applied {
  const parsed = parseAnnounceTopic(rules.topics, topic);
  if (!parsed) return { result: 'rejected', id: '', reason: 'not a birth or status topic' };
  const { id, kind } = parsed;
  const idProblem = checkId(id);
  if (idProblem) return { result: 'rejected', id: id.slice(0, 64), reason: idProblem };
  if (!rules.idFilter(id)) return { result: 'filtered' };
  if (kind === 'birth') {
    const birth = parseBirth(payload, rules.maxBirthBytes);
    if (birth.kind === 'invalid') return { result: 'rejected', id, reason: birth.reason };
    const properties = birth.kind === 'announced' ? birth.properties : undefined;
    return tracked(tracker.setBirth(id, properties), id);
  }
  const status = parseStatus(payload);
  if (status === 'invalid') return { result: 'rejected', id, reason: 'status is neither online nor offline' };
  return tracked(tracker.setStatus(id, status === 'cleared' ? undefined : status), id);
}

function checkId(id: string): string | undefined {
  if (id.length === 0) return 'empty device id';
  if (id.length > maxIdLength) return `device id of ${id.length} characters exceeds ${maxIdLength}`;
  return undefined;
}

function tracked(result: 'tracked' | 'full', id: string): Applied {
  return result === 'full' ? { result: 'full', id } : { result: 'applied' };
}
