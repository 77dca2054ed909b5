import { randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { type DiscoveryConfigEntry, DiscoveryConfigEntrySchema } from '../config/schema.js';
import type { Db } from '../database/db.js';
import { discoveryConfigProblems } from '../model/discoveryConfigs.js';
import type { DiscoveryHandler } from '../model/handler.js';
import { API_VERSION, type Condition, type DiscoveryConfigObject } from '../model/resources.js';
import type { Clock } from '../util/clock.js';
import { kubeTime } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { stableJson } from '../util/json.js';
import { child, type Logger } from '../util/logger.js';
import { byCodeUnit } from '../util/order.js';
import type {
  ConfigStatusReport,
  ConfigWriteError,
  ConfigWriteResult,
  WritableConfigSource,
} from './configSource.js';
import { nextResourceVersion } from './versions.js';

export interface LocalConfigStoreOptions {
  db: Db;
  namespace: string;
  logger: Logger;
  clock: Clock;
  /** The handlers a config may name; a config's details are checked against its handler's schema. */
  handlers: readonly DiscoveryHandler[];
  /** The config file's `discoveryConfigs` (already validated at start-up): read-only through the API. */
  fileConfigs: readonly DiscoveryConfigEntry[];
}

type Source = 'file' | 'api';
type Cause = { field: string; message: string };

export const SOURCE_ANNOTATION = 'leafbridge.io/source';
const RV_KEY = 'discoveryConfigs.resourceVersion';

/**
 * The standalone agent's DiscoveryConfigs, in its SQLite store (the `discovery_configs` table). At start the
 * config file's entries are written with source `file` (replacing what the file said last time; the ones
 * gone from the file are deleted); configs created through the HTTP API (source `api`) are kept. Configs
 * from the file are read-only through the API. Writes are checked as the API server would check them: the
 * config schema (with its defaults) and the handler's details schema, every problem with its field path.
 *
 * Resource versions come from one counter in `meta`, bumped by every write (status writes included, as in
 * Kubernetes); `generation` is bumped when the spec changes. Watchers hear the whole list when a config is
 * added, deleted or its spec changes, not on status writes (as with the Kubernetes source).
 */
export class LocalConfigStore implements WritableConfigSource {
  private readonly watchers: ConfigWatchers;
  private readonly logger: Logger;
  private readonly fileNames: Set<string>;

  constructor(private readonly o: LocalConfigStoreOptions) {
    this.logger = child(o.logger, 'registry:configs');
    this.watchers = new ConfigWatchers(this.logger);
    this.fileNames = new Set(o.fileConfigs.map((e) => e.name));
  }

  async start(): Promise<void> {
    const { db } = this.o;
    db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES (?, '0')").run(RV_KEY);
    db.transaction(() => {
      for (const entry of this.o.fileConfigs) this.write(withDefaults(entry), 'file');
      for (const row of this.rows()) {
        if (row.source === 'file' && !this.fileNames.has(row.name)) this.remove(row.name);
      }
    })();
    const configs = this.list();
    this.logger.debug({ configs: configs.length, fromFile: this.fileNames.size }, 'discovery configs loaded');
    this.watchers.emit(configs);
  }

  list(): DiscoveryConfigObject[] {
    return this.rows()
      .map((r) => JSON.parse(r.json) as DiscoveryConfigObject)
      .sort((a, b) => byCodeUnit(a.metadata.name, b.metadata.name));
  }

  get(name: string): DiscoveryConfigObject | undefined {
    return this.row(name)?.object;
  }

  watch(listener: (configs: DiscoveryConfigObject[]) => void): () => void {
    return this.watchers.add(listener);
  }

  create(entry: DiscoveryConfigEntry): ConfigWriteResult {
    const checked = this.check(entry);
    if (!checked.ok) return checked;
    const name = checked.entry.name;
    const existing = this.row(name);
    if (existing) {
      const where = existing.source === 'file' ? ' (defined in the config file)' : '';
      return fail({
        code: 409,
        reason: 'AlreadyExists',
        message: `discoveryconfigs "${name}" already exists${where}`,
      });
    }
    return this.commit(() => this.write(checked.entry, 'api'));
  }

  replace(name: string, entry: DiscoveryConfigEntry, resourceVersion?: string): ConfigWriteResult {
    if (entry.name !== name) {
      return invalid(name, [{ field: 'name', message: `must be ${name}, the name being replaced` }]);
    }
    const existing = this.row(name);
    if (!existing) return notFound(name);
    if (existing.source === 'file') return readOnly(name);
    const current = existing.object.metadata.resourceVersion;
    if (resourceVersion !== undefined && resourceVersion !== current) {
      return fail({
        code: 409,
        reason: 'Conflict',
        message: `Operation cannot be fulfilled on discoveryconfigs "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      });
    }
    const checked = this.check(entry);
    if (!checked.ok) return checked;
    return this.commit(() => this.write(checked.entry, 'api'));
  }

  delete(name: string): ConfigWriteResult {
    const existing = this.row(name);
    if (!existing) return notFound(name);
    if (existing.source === 'file') return readOnly(name);
    return this.commit(() => {
      this.remove(name);
      return { object: existing.object, changed: true };
    });
  }

  reportStatus(name: string, report: ConfigStatusReport): void {
    const existing = this.row(name);
    if (!existing) return;
    const stored = existing.object;
    if (sameStatus(stored.status, report)) return;
    const object: DiscoveryConfigObject = { ...stored, status: nextStatus(stored.status, report) };
    try {
      this.o.db.transaction(() => this.put(object, existing.source))();
    } catch (err) {
      this.logger.error({ config: name, err: errorMessage(err) }, 'could not store the config status');
    }
  }

  async close(): Promise<void> {
    this.watchers.clear();
  }

  // ----------------------------------------------------------------------------------------- writes

  /** Runs one write in a transaction and tells the watchers when it changed something. */
  private commit(fn: () => { object: DiscoveryConfigObject; changed: boolean }): ConfigWriteResult {
    const { object, changed } = this.o.db.transaction(fn)();
    if (changed) this.watchers.emit(this.list());
    return { ok: true, object: structuredClone(object) };
  }

  /** Writes `entry` as a config of `source`; a spec that did not change (same source) is left alone. */
  private write(
    entry: DiscoveryConfigEntry,
    source: Source,
  ): { object: DiscoveryConfigObject; changed: boolean } {
    const old = this.row(entry.name);
    const spec = specOf(entry);
    const sameSpec = old !== undefined && stableJson(old.object.spec) === stableJson(spec);
    if (old && sameSpec && old.source === source) return { object: old.object, changed: false };
    const object: DiscoveryConfigObject = {
      apiVersion: API_VERSION,
      kind: 'DiscoveryConfig',
      metadata: {
        name: entry.name,
        namespace: this.o.namespace,
        uid: old?.object.metadata.uid ?? randomUUID(),
        creationTimestamp: old?.object.metadata.creationTimestamp ?? kubeTime(this.o.clock),
        generation: (old?.object.metadata.generation ?? 0) + (sameSpec ? 0 : 1),
        annotations: { [SOURCE_ANNOTATION]: source },
      },
      spec,
      status: old?.object.status ?? { conditions: [], devices: 0 },
    };
    return { object: this.put(object, source), changed: true };
  }

  /** Stores `object` with the next resourceVersion; returns it as stored. */
  private put(object: DiscoveryConfigObject, source: Source): DiscoveryConfigObject {
    const rv = nextResourceVersion(this.o.db, RV_KEY);
    const stored = { ...object, metadata: { ...object.metadata, resourceVersion: String(rv) } };
    this.o.db
      .prepare(
        `INSERT INTO discovery_configs (name, json, source, resource_version) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET json = excluded.json, source = excluded.source,
           resource_version = excluded.resource_version`,
      )
      .run(object.metadata.name, JSON.stringify(stored), source, rv);
    return stored;
  }

  private remove(name: string): void {
    this.o.db.prepare('DELETE FROM discovery_configs WHERE name = ?').run(name);
    nextResourceVersion(this.o.db, RV_KEY); // a deletion is a change too
  }

  /** The entry with the config schema's defaults, or 422 with every problem by its field path. */
  private check(
    entry: DiscoveryConfigEntry,
  ): { ok: true; entry: DiscoveryConfigEntry } | { ok: false; error: ConfigWriteError } {
    const value = withDefaults(entry);
    const causes = schemaCauses(value);
    if (causes.length === 0) {
      for (const problem of discoveryConfigProblems([value], this.o.handlers, '')) {
        causes.push(splitProblem(problem.replace(/^\[0\]\.?/, '')));
      }
    }
    if (causes.length > 0) return invalid(nameOf(entry), causes);
    return { ok: true, entry: value };
  }

  // ------------------------------------------------------------------------------------------ reads

  private rows(): { name: string; json: string; source: Source }[] {
    return this.o.db.prepare('SELECT name, json, source FROM discovery_configs').all() as {
      name: string;
      json: string;
      source: Source;
    }[];
  }

  private row(name: string): { object: DiscoveryConfigObject; source: Source } | undefined {
    const row = this.o.db.prepare('SELECT json, source FROM discovery_configs WHERE name = ?').get(name) as
      | { json: string; source: Source }
      | undefined;
    return row && { object: JSON.parse(row.json) as DiscoveryConfigObject, source: row.source };
  }
}

// ------------------------------------------------------------------------------- shared by the sources

/** A config source's watchers: each hears the whole list; a throwing one is logged, not fatal. */
export class ConfigWatchers {
  private readonly set = new Set<(configs: DiscoveryConfigObject[]) => void>();
  constructor(private readonly logger: Logger) {}

  add(listener: (configs: DiscoveryConfigObject[]) => void): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }

  emit(configs: readonly DiscoveryConfigObject[]): void {
    for (const l of this.set) {
      try {
        l(structuredClone([...configs]));
      } catch (err) {
        this.logger.error({ err: errorMessage(err) }, 'discovery config watcher failed');
      }
    }
  }

  clear(): void {
    this.set.clear();
  }
}

/**
 * Whether `status` already says what `report` says (conditions by type/status/reason/message; times aside).
 * Only the condition types the report carries count: the others belong to other writers (the controller's
 * `BrokersReady`).
 */
export function sameStatus(status: DiscoveryConfigObject['status'], report: ConfigStatusReport): boolean {
  const reported = new Set(report.conditions.map((c) => c.type));
  const key = (cs: readonly Condition[]) =>
    stableJson(
      cs
        .map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message }))
        .sort((a, b) => byCodeUnit(a.type, b.type)),
    );
  return (
    key((status.conditions ?? []).filter((c) => reported.has(c.type))) === key(report.conditions) &&
    (report.devices === undefined || report.devices === status.devices)
  );
}

/**
 * The status after `report`: a condition whose status did not change keeps its lastTransitionTime; condition
 * types the report does not carry (another writer's, such as the controller's `BrokersReady`) are kept.
 */
export function nextStatus(
  status: DiscoveryConfigObject['status'],
  report: ConfigStatusReport,
): DiscoveryConfigObject['status'] {
  const reported = new Set(report.conditions.map((c) => c.type));
  const others = (status.conditions ?? []).filter((c) => !reported.has(c.type));
  const conditions = report.conditions.map((c) => {
    const old = (status.conditions ?? []).find((o) => o.type === c.type);
    return old && old.status === c.status ? { ...c, lastTransitionTime: old.lastTransitionTime } : { ...c };
  });
  return { conditions: [...others, ...conditions], devices: report.devices ?? status.devices ?? 0 };
}

function specOf(entry: DiscoveryConfigEntry): DiscoveryConfigObject['spec'] {
  const { handler, capacity, properties, nodeSelector } = entry.spec;
  return structuredClone({ handler, capacity, properties, ...(nodeSelector ? { nodeSelector } : {}) });
}

function withDefaults(entry: DiscoveryConfigEntry): DiscoveryConfigEntry {
  return Value.Default(DiscoveryConfigEntrySchema, structuredClone(entry)) as DiscoveryConfigEntry;
}

function schemaCauses(value: unknown): Cause[] {
  const seen = new Map<string, string>();
  for (const e of Value.Errors(DiscoveryConfigEntrySchema, value)) {
    const field = e.path.slice(1).replace(/\//g, '.') || '(root)';
    const custom = (e.schema as { errorMessage?: string }).errorMessage;
    const message = custom ?? (e.message === 'Unexpected property' ? 'unknown key' : e.message.toLowerCase());
    if (!seen.has(field)) seen.set(field, message);
  }
  return [...seen].map(([field, message]) => ({ field, message }));
}

/** `spec.handler.details.interface: expected string` → its field and message. */
function splitProblem(problem: string): Cause {
  const at = problem.indexOf(': ');
  return at < 0
    ? { field: '(root)', message: problem }
    : { field: problem.slice(0, at), message: problem.slice(at + 2) };
}

function nameOf(entry: unknown): string {
  const name = (entry as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : '';
}

function fail(error: Exclude<ConfigWriteError, { code: 422 }>): { ok: false; error: ConfigWriteError } {
  return { ok: false, error };
}

function notFound(name: string) {
  return fail({ code: 404, reason: 'NotFound', message: `discoveryconfigs "${name}" not found` });
}

function readOnly(name: string) {
  return fail({
    code: 403,
    reason: 'Forbidden',
    message: `discoveryconfigs "${name}" is defined in the config file and cannot be changed through the API; edit the config file instead`,
  });
}

function invalid(name: string, causes: Cause[]): { ok: false; error: ConfigWriteError } {
  const list = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
  return {
    ok: false,
    error: {
      code: 422,
      reason: 'Invalid',
      message: `DiscoveryConfig "${name}" is invalid: ${list}`,
      causes,
    },
  };
}
