import { randomBytes, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { dns1123SubdomainErrors } from './kubeBuiltinRules.js';
import { jsonPatch, mergePatch } from './kubePatch.js';
import { applyDefaults, type FieldError, isObject, prune, validate } from './kubeSchema.js';
import { parseFieldSelector, parseLabelSelector } from './kubeSelectors.js';
import { errors, KubeError, type ResourceRef, status } from './kubeStatus.js';
import {
  apiVersionOf,
  clone,
  type KubeObject,
  type KubeStore,
  type OwnerReference,
  objectKey,
  type ResourceType,
  type WatchEvent,
} from './kubeStore.js';

/**
 * The REST semantics of the test API server, written to the documented behaviour
 * (https://kubernetes.io/docs/reference/using-api/api-concepts/): resourceVersion preconditions (409),
 * the status subresource, metadata.generation, merge and JSON patch, pruning/defaulting/validation against
 * a CRD's schema (422), finalizers, and deletion with propagation, the garbage collector's part included.
 */

export interface WriteOptions {
  dryRun?: boolean;
  fieldValidation?: 'Strict' | 'Warn' | 'Ignore';
  subresource?: 'status';
}

export interface WriteResult {
  code: number;
  body: unknown;
  warnings: string[];
}

export interface ListQuery {
  labelSelector?: string | null;
  fieldSelector?: string | null;
  limit?: number;
  continue?: string | null;
  resourceVersion?: string | null;
  resourceVersionMatch?: string | null;
}

export interface DeleteOptions {
  propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
  orphanDependents?: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
const FOREGROUND = 'foregroundDeletion';

export const refOf = (t: ResourceType): ResourceRef => ({ plural: t.plural, group: t.group, kind: t.kind });
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export class KubeResources {
  constructor(
    readonly store: KubeStore,
    private readonly scheduleGc: () => void,
  ) {}

  get(t: ResourceType, ns: string | undefined, name: string): KubeObject {
    const o = this.store.find(t, ns, name);
    if (!o) throw errors.notFound(refOf(t), name);
    return clone(o);
  }

  list(t: ResourceType, ns: string | undefined, q: ListQuery): unknown {
    const label = parseLabelSelector(q.labelSelector);
    const field = parseFieldSelector(q.fieldSelector, t.selectableFields);
    const current = this.store.currentRv;
    let at = current;
    let after = '';
    if (q.continue) {
      ({ at, after } = this.decodeContinue(q.continue));
    } else if (q.resourceVersion && q.resourceVersion !== '0') {
      const n = Number(q.resourceVersion);
      if (!Number.isInteger(n) || n < 0)
        throw errors.badRequest(`invalid resource version: ${q.resourceVersion}`);
      if (q.resourceVersionMatch === 'Exact') at = n;
      else if (n > current) throw errors.tooLargeResourceVersion(q.resourceVersion, current);
    }
    const all = at === current ? this.store.all(t, ns) : this.store.snapshot(t, at);
    const items = all.filter(
      (o) =>
        (ns === undefined || o.metadata.namespace === ns) &&
        objectKey(o.metadata.namespace, o.metadata.name) > after &&
        label(o) &&
        field(o),
    );
    const metadata: Record<string, unknown> = { resourceVersion: String(at) };
    let page = items;
    if (q.limit && q.limit > 0 && items.length > q.limit) {
      page = items.slice(0, q.limit);
      const last = page[page.length - 1]!.metadata;
      metadata.continue = Buffer.from(
        JSON.stringify({ v: 'meta.k8s.io/v1', rv: at, start: objectKey(last.namespace, last.name) }),
      ).toString('base64');
      if (!q.labelSelector && !q.fieldSelector) metadata.remainingItemCount = items.length - q.limit;
    }
    return {
      apiVersion: apiVersionOf(t),
      kind: `${t.kind}List`,
      metadata,
      items: page.map((o) => this.listItem(t, o)),
    };
  }

  private decodeContinue(token: string): { at: number; after: string } {
    let parsed: { rv?: unknown; start?: unknown };
    try {
      parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
    } catch {
      throw errors.badRequest('continue key is not valid: illegal base64 data');
    }
    if (typeof parsed.rv !== 'number' || typeof parsed.start !== 'string') {
      throw errors.badRequest(
        'continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)',
      );
    }
    if (parsed.rv < this.store.oldestRv) {
      throw errors.gone(
        'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
      );
    }
    return { at: parsed.rv, after: parsed.start };
  }

  private listItem(t: ResourceType, o: KubeObject): unknown {
    const item: Record<string, unknown> = clone(o);
    if (!t.custom) {
      delete item.apiVersion;
      delete item.kind;
    }
    return item;
  }

  /** Opens a watch (see KubeStore.watch); `resourceVersion` unset or "0" starts with the current objects. */
  watch(
    t: ResourceType,
    ns: string | undefined,
    q: ListQuery & { sendInitialEvents?: boolean },
    send: (e: WatchEvent) => void,
  ): () => void {
    const labelSelector = parseLabelSelector(q.labelSelector);
    const fieldSelector = parseFieldSelector(q.fieldSelector, t.selectableFields);
    const rv = q.resourceVersion;
    const fromHistory = rv && rv !== '0' && !q.sendInitialEvents;
    const since = fromHistory ? Number(rv) : undefined;
    if (since !== undefined && (!Number.isInteger(since) || since < 0)) {
      throw errors.badRequest(`invalid resource version: ${rv}`);
    }
    const cancel = this.store.watch(
      { resource: t, ...(ns ? { namespace: ns } : {}), labelSelector, fieldSelector, send },
      since,
    );
    if (q.sendInitialEvents) {
      send({
        type: 'BOOKMARK',
        object: {
          apiVersion: apiVersionOf(t),
          kind: t.kind,
          metadata: {
            resourceVersion: String(this.store.currentRv),
            annotations: { 'k8s.io/initial-events-end': 'true' },
          },
        },
      });
    }
    return cancel;
  }

  create(t: ResourceType, ns: string | undefined, body: unknown, opts: WriteOptions): WriteResult {
    const obj = decode(t, body, ns);
    const m = obj.metadata;
    if (!m.name && m.generateName) m.name = `${m.generateName}${randomBytes(4).toString('hex').slice(0, 5)}`;
    if (!m.name) {
      throw errors.invalid(refOf(t), '', [
        {
          reason: 'FieldValueRequired',
          field: 'metadata.name',
          message: 'Required value: name or generateName is required',
        },
      ]);
    }
    if (m.resourceVersion) {
      throw new KubeError(
        status(
          500,
          'InternalError',
          'Internal error occurred: resourceVersion should not be set on objects to be created',
        ),
      );
    }
    if (t.statusSubresource && t.custom) delete obj.status;
    m.uid = randomUUID();
    m.creationTimestamp = now();
    m.generation = 1;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    const warnings = admit(t, obj, opts);
    if (this.store.find(t, ns, m.name)) throw errors.alreadyExists(refOf(t), m.name);
    if (opts.dryRun) return { code: 201, body: obj, warnings };
    const stored = this.store.commit(t, 'ADDED', obj);
    if (m.ownerReferences?.length) this.scheduleGc();
    return { code: 201, body: clone(stored), warnings };
  }

  update(
    t: ResourceType,
    ns: string | undefined,
    name: string,
    body: unknown,
    opts: WriteOptions,
  ): WriteResult {
    const old = this.store.find(t, ns, name);
    if (!old) throw errors.notFound(refOf(t), name);
    const input = decode(t, body, ns);
    if (input.metadata.name !== name) {
      throw errors.badRequest(
        `the name of the object (${input.metadata.name ?? ''}) does not match the name on the URL (${name})`,
      );
    }
    return this.replace(t, old, input, opts);
  }

  patch(
    t: ResourceType,
    ns: string | undefined,
    name: string,
    contentType: string,
    body: unknown,
    opts: WriteOptions,
  ): WriteResult {
    const old = this.store.find(t, ns, name);
    if (!old) throw errors.notFound(refOf(t), name);
    const type = contentType.split(';')[0]!.trim();
    let patched: unknown;
    if (type === 'application/merge-patch+json') patched = mergePatch(clone(old), body);
    else if (type === 'application/json-patch+json') patched = jsonPatch(clone(old), body);
    else if (type === 'application/strategic-merge-patch+json' && !t.custom)
      patched = mergePatch(clone(old), body);
    else throw errors.unsupportedMediaType(type);
    const input = decode(t, patched, ns);
    if (input.metadata.name !== name) throw errors.badRequest('metadata.name cannot be changed by a patch');
    return this.replace(t, old, input, opts);
  }

  /** An update of `old` to `input`, with the rules of PUT (patches end here too). */
  private replace(t: ResourceType, old: KubeObject, input: KubeObject, opts: WriteOptions): WriteResult {
    const ref = refOf(t);
    const name = old.metadata.name;
    if (input.metadata.resourceVersion && input.metadata.resourceVersion !== old.metadata.resourceVersion) {
      throw errors.conflict(ref, name);
    }
    if (input.metadata.uid && input.metadata.uid !== old.metadata.uid) {
      throw errors.conflict(
        ref,
        name,
        `Precondition failed: UID in precondition: ${input.metadata.uid}, UID in object meta: ${old.metadata.uid}`,
      );
    }
    const next = opts.subresource === 'status' ? statusUpdate(old, input) : mainUpdate(t, old, input);
    const warnings = admit(t, next, opts);
    if (sameContent(old, next)) return { code: 200, body: clone(old), warnings };
    if (opts.dryRun) return { code: 200, body: next, warnings };
    const finalized = next.metadata.deletionTimestamp !== undefined && !next.metadata.finalizers?.length;
    const stored = this.store.commit(t, finalized ? 'DELETED' : 'MODIFIED', next);
    if (finalized || !isDeepStrictEqual(old.metadata.ownerReferences, next.metadata.ownerReferences))
      this.scheduleGc();
    return { code: 200, body: clone(stored), warnings };
  }

  delete(
    t: ResourceType,
    ns: string | undefined,
    name: string,
    options: DeleteOptions,
    dryRun = false,
  ): WriteResult {
    const old = this.store.find(t, ns, name);
    if (!old) throw errors.notFound(refOf(t), name);
    checkPreconditions(t, old, options.preconditions);
    const policy = options.propagationPolicy ?? (options.orphanDependents === true ? 'Orphan' : 'Background');
    if (dryRun) return { code: 200, body: clone(old), warnings: [] };
    if (old.metadata.deletionTimestamp) return { code: 200, body: clone(old), warnings: [] };
    if (policy === 'Orphan') this.orphanDependents(old);
    const finalizers = [...(old.metadata.finalizers ?? []), ...(policy === 'Foreground' ? [FOREGROUND] : [])];
    if (finalizers.length > 0) {
      const next = clone(old);
      next.metadata.finalizers = finalizers;
      next.metadata.deletionTimestamp = now();
      next.metadata.deletionGracePeriodSeconds = 0;
      next.metadata.generation = (old.metadata.generation ?? 0) + 1;
      const stored = this.store.commit(t, 'MODIFIED', next);
      this.scheduleGc();
      return { code: 200, body: clone(stored), warnings: [] };
    }
    const stored = this.store.commit(t, 'DELETED', clone(old));
    this.scheduleGc();
    const body = t.custom
      ? {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name, group: t.group, kind: t.plural, uid: old.metadata.uid },
        }
      : clone(stored);
    return { code: 200, body, warnings: [] };
  }

  deleteCollection(
    t: ResourceType,
    ns: string | undefined,
    q: ListQuery,
    options: DeleteOptions,
  ): WriteResult {
    const list = this.list(t, ns, {
      labelSelector: q.labelSelector ?? null,
      fieldSelector: q.fieldSelector ?? null,
    }) as {
      items: KubeObject[];
    };
    const items = list.items.map((o) => this.delete(t, o.metadata.namespace, o.metadata.name, options).body);
    return { code: 200, body: { ...list, items }, warnings: [] };
  }

  /** Objects (of any registered resource) that name `owner` in their ownerReferences. */
  dependentsOf(owner: KubeObject): { t: ResourceType; o: KubeObject }[] {
    const out: { t: ResourceType; o: KubeObject }[] = [];
    for (const t of this.store.types.values()) {
      for (const o of this.store.all(t)) {
        if (o.metadata.ownerReferences?.some((r) => r.uid === owner.metadata.uid)) out.push({ t, o });
      }
    }
    return out;
  }

  private orphanDependents(owner: KubeObject): void {
    for (const { t, o } of this.dependentsOf(owner)) {
      const next = clone(o);
      next.metadata.ownerReferences = o.metadata.ownerReferences!.filter((r) => r.uid !== owner.metadata.uid);
      if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
      this.store.commit(t, 'MODIFIED', next);
    }
  }

  /** Replaces an object's ownerReferences or finalizers, as a controller (the GC) would. */
  commitMeta(
    t: ResourceType,
    o: KubeObject,
    change: { ownerReferences?: OwnerReference[]; finalizers?: string[] },
  ): void {
    const next = clone(o);
    for (const [k, v] of Object.entries(change) as [keyof typeof change, unknown[]][]) {
      if (v.length > 0) (next.metadata as unknown as Record<string, unknown>)[k] = v;
      else delete next.metadata[k];
    }
    const finalized = next.metadata.deletionTimestamp !== undefined && !next.metadata.finalizers?.length;
    this.store.commit(t, finalized ? 'DELETED' : 'MODIFIED', next);
  }
}

/** The body as an object of this resource: kind and apiVersion checked (custom resources must carry them). */
function decode(t: ResourceType, body: unknown, ns: string | undefined): KubeObject {
  if (!isObject(body)) throw errors.badRequest('the body of the request was in an unknown format');
  const obj = JSON.parse(JSON.stringify(body)) as KubeObject;
  if (t.custom && !obj.kind) throw errors.badRequest(`Object 'Kind' is missing in '${JSON.stringify(body)}'`);
  if (t.custom && !obj.apiVersion)
    throw errors.badRequest(`Object 'apiVersion' is missing in '${JSON.stringify(body)}'`);
  if (obj.apiVersion && obj.apiVersion !== apiVersionOf(t)) {
    throw errors.badRequest(
      `the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(t)})`,
    );
  }
  if (obj.kind && obj.kind !== t.kind) {
    throw errors.badRequest(
      `the kind in the data (${obj.kind}) does not match the expected kind (${t.kind})`,
    );
  }
  obj.apiVersion = apiVersionOf(t);
  obj.kind = t.kind;
  if (!isObject(obj.metadata)) obj.metadata = {} as KubeObject['metadata'];
  if (t.namespaced) {
    if (obj.metadata.namespace && obj.metadata.namespace !== ns) {
      throw errors.badRequest(
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    }
    obj.metadata.namespace = ns!;
  } else delete obj.metadata.namespace;
  return obj;
}

/** A main-resource write: status kept from the stored object (status subresource), system metadata kept too. */
function mainUpdate(t: ResourceType, old: KubeObject, input: KubeObject): KubeObject {
  const next = input;
  if (t.statusSubresource) {
    if ('status' in old) next.status = clone(old.status);
    else delete next.status;
  }
  const m = old.metadata;
  next.metadata = {
    ...input.metadata,
    name: m.name,
    uid: m.uid,
    creationTimestamp: m.creationTimestamp,
    resourceVersion: m.resourceVersion,
    ...(m.namespace !== undefined ? { namespace: m.namespace } : {}),
    ...(m.generation !== undefined ? { generation: m.generation } : {}),
  };
  for (const k of ['deletionTimestamp', 'deletionGracePeriodSeconds'] as const) {
    if (m[k] !== undefined) (next.metadata as unknown as Record<string, unknown>)[k] = m[k];
    else delete next.metadata[k];
  }
  if (m.generation !== undefined && !isDeepStrictEqual(body(old), body(next)))
    next.metadata.generation = m.generation + 1;
  if (m.deletionTimestamp) {
    const added = (next.metadata.finalizers ?? []).filter((f) => !m.finalizers?.includes(f));
    if (added.length > 0) {
      throw errors.invalid(refOf(t), m.name, [
        {
          reason: 'FieldValueForbidden',
          field: 'metadata.finalizers',
          message: 'Forbidden: no new finalizers can be added if the object is being deleted',
        },
      ]);
    }
  }
  return JSON.parse(JSON.stringify(next)) as KubeObject;
}

/** A /status write: everything but status comes from the stored object. */
function statusUpdate(old: KubeObject, input: KubeObject): KubeObject {
  const next = clone(old);
  if ('status' in input) next.status = clone(input.status);
  else delete next.status;
  return next;
}

/** What metadata.generation tracks: everything but metadata and status. */
function body(o: KubeObject): unknown {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
}

function sameContent(a: KubeObject, b: KubeObject): boolean {
  const strip = (o: KubeObject) => ({ ...o, metadata: { ...o.metadata, resourceVersion: '' } });
  return isDeepStrictEqual(strip(a), strip(b));
}

function checkPreconditions(t: ResourceType, o: KubeObject, p: DeleteOptions['preconditions']): void {
  const name = o.metadata.name;
  if (p?.uid && p.uid !== o.metadata.uid) {
    throw errors.conflict(
      refOf(t),
      name,
      `Precondition failed: UID in precondition: ${p.uid}, UID in object meta: ${o.metadata.uid}`,
    );
  }
  if (p?.resourceVersion && p.resourceVersion !== o.metadata.resourceVersion) {
    throw errors.conflict(
      refOf(t),
      name,
      `Precondition failed: ResourceVersion in precondition: ${p.resourceVersion}, ResourceVersion in object meta: ${o.metadata.resourceVersion}`,
    );
  }
}

/**
 * Metadata checks every write gets, then the CRD schema's pruning, defaulting and validation, or a built-in
 * kind's own rules.
 */
function admit(t: ResourceType, obj: KubeObject, opts: WriteOptions): string[] {
  const warnings: string[] = [];
  const errs = [...metadataErrors(t, obj), ...(t.validate?.(obj) ?? [])];
  if (t.schema) {
    const pruned = prune(t.schema, obj);
    if (pruned.length > 0 && opts.fieldValidation === 'Strict') {
      throw errors.badRequest(
        `strict decoding error: ${pruned.map((p) => `unknown field "${p}"`).join(', ')}`,
      );
    }
    if (opts.fieldValidation !== 'Ignore') warnings.push(...pruned.map((p) => `unknown field "${p}"`));
    applyDefaults(t.schema, obj);
    errs.push(...validate(t.schema, obj));
  }
  if (errs.length > 0) throw errors.invalid(refOf(t), obj.metadata.name ?? '', errs);
  return warnings;
}

function metadataErrors(t: ResourceType, obj: KubeObject): FieldError[] {
  const m = obj.metadata;
  const errs: FieldError[] = (t.nameErrors ?? dns1123SubdomainErrors)(m.name).map((detail) => ({
    reason: 'FieldValueInvalid',
    field: 'metadata.name',
    message: `Invalid value: ${JSON.stringify(m.name)}: ${detail}`,
  }));
  for (const [k, v] of Object.entries(m.labels ?? {})) {
    if (!LABEL_KEY.test(k))
      errs.push({
        reason: 'FieldValueInvalid',
        field: 'metadata.labels',
        message: `Invalid value: ${JSON.stringify(k)}: name part must consist of alphanumeric characters, '-', '_' or '.'`,
      });
    if (typeof v !== 'string' || !LABEL_VALUE.test(v))
      errs.push({
        reason: 'FieldValueInvalid',
        field: 'metadata.labels',
        message: `Invalid value: ${JSON.stringify(v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)`,
      });
  }
  const refs = m.ownerReferences ?? [];
  refs.forEach((r, i) => {
    for (const k of ['apiVersion', 'kind', 'name', 'uid'] as const) {
      if (!r[k])
        errs.push({
          reason: 'FieldValueInvalid',
          field: `metadata.ownerReferences[${i}].${k}`,
          message: `Invalid value: "": ${k} must not be empty`,
        });
    }
  });
  if (refs.filter((r) => r.controller).length > 1) {
    errs.push({
      reason: 'FieldValueInvalid',
      field: 'metadata.ownerReferences',
      message: 'Invalid value: "": Only one reference can have Controller set to true',
    });
  }
  return errs;
}
