import type { Db } from '../database/db.js';
import { PayloadError } from '../util/errors.js';

export type JsonObject = { [key: string]: unknown };

export interface Twin {
  reported: JsonObject;
  reportedVersion: number;
  desired: JsonObject;
  desiredVersion: number;
}

const MAX_DEPTH = 32;

/**
 * Device twins in the store. Reported is edge-authoritative: the merge of the device's patches, versioned
 * here. Desired is cloud-authoritative: replaced whole by a newer `$version`, stale ones ignored.
 */
export class TwinStore {
  private readonly statements;
  constructor(db: Db) {
    this.statements = {
      get: db.prepare(
        'SELECT reported, reported_version, desired, desired_version FROM twins WHERE device = ?',
      ),
      putReported: db.prepare(
        `INSERT INTO twins (device, reported, reported_version, updated) VALUES (?, ?, ?, ?)
         ON CONFLICT (device) DO UPDATE SET reported = excluded.reported,
           reported_version = excluded.reported_version, updated = excluded.updated`,
      ),
      putDesired: db.prepare(
        `INSERT INTO twins (device, desired, desired_version, updated) VALUES (?, ?, ?, ?)
         ON CONFLICT (device) DO UPDATE SET desired = excluded.desired,
           desired_version = excluded.desired_version, updated = excluded.updated`,
      ),
      all: db.prepare('SELECT device FROM twins ORDER BY device'),
    };
  }

  get(device: string): Twin {
    const row = this.statements.get.get(device) as
      | { reported: string; reported_version: number; desired: string; desired_version: number }
      | undefined;
    if (!row) return { reported: {}, reportedVersion: 0, desired: {}, desiredVersion: 0 };
    return {
      reported: JSON.parse(row.reported) as JsonObject,
      reportedVersion: row.reported_version,
      desired: JSON.parse(row.desired) as JsonObject,
      desiredVersion: row.desired_version,
    };
  }

  devices(): string[] {
    return (this.statements.all.all() as { device: string }[]).map((r) => r.device);
  }

  /** Merges a device's patch (JSON merge patch: `null` deletes) into its reported twin; bumps the version. */
  applyReported(device: string, payload: Buffer): Twin {
    const patch = parseObject(payload, 'reported twin patch');
    const twin = this.get(device);
    const reported = mergePatch(twin.reported, stripMeta(patch));
    const version = twin.reportedVersion + 1;
    this.statements.putReported.run(device, JSON.stringify(reported), version, Date.now());
    return { ...twin, reported, reportedVersion: version };
  }

  /** Replaces the desired twin when `$version` is newer; returns undefined for a stale or repeated version. */
  applyDesired(device: string, payload: Buffer): Twin | undefined {
    const doc = parseObject(payload, 'desired twin');
    const version = doc.$version;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
      throw new PayloadError('TWIN_VERSION', 'desired twin needs an integer $version >= 1');
    }
    const twin = this.get(device);
    if (version <= twin.desiredVersion) return undefined;
    const desired = stripMeta(doc);
    this.statements.putDesired.run(device, JSON.stringify(desired), version, Date.now());
    return { ...twin, desired, desiredVersion: version };
  }
}

/** Desired keys whose values differ from reported: what the device still has to do. */
export function twinDelta(twin: Twin): JsonObject {
  const delta: JsonObject = {};
  for (const [key, want] of Object.entries(twin.desired)) {
    if (!deepEqual(want, twin.reported[key])) delta[key] = want;
  }
  return delta;
}

export function parseObject(payload: Buffer, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new PayloadError('PAYLOAD_NOT_JSON', `${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PayloadError('PAYLOAD_NOT_OBJECT', `${what} must be a JSON object`);
  }
  if (depth(value) > MAX_DEPTH)
    throw new PayloadError('PAYLOAD_TOO_DEEP', `${what} nests deeper than ${MAX_DEPTH}`);
  return value as JsonObject;
}

function stripMeta(doc: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(doc)) if (!k.startsWith('$')) out[k] = v;
  return out;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') continue;
    if (value === null) delete out[key];
    else if (isObject(value))
      out[key] = mergePatch(isObject(out[key]) ? (out[key] as JsonObject) : {}, value);
    else out[key] = value;
  }
  return out;
}

function depth(v: unknown, level = 0): number {
  if (level > MAX_DEPTH) return level;
  if (typeof v !== 'object' || v === null) return level;
  let max = level + 1;
  for (const child of Object.values(v)) max = Math.max(max, depth(child, level + 1));
  return max;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as JsonObject)[k], (b as JsonObject)[k]));
}
