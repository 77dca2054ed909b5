import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { BUILTIN_RESOURCES, type CrdLike, crdResourceType } from './kubeBuiltins.js';
import { discoveryDocument } from './kubeDiscovery.js';
import { GarbageCollector } from './kubeGc.js';
import {
  type DeleteOptions,
  KubeResources,
  type ListQuery,
  type WriteOptions,
  type WriteResult,
} from './kubeResources.js';
import { structuralProblems } from './kubeSchema.js';
import { errors, KubeError, status } from './kubeStatus.js';
import {
  apiVersionOf,
  type KubeObject,
  KubeStore,
  type ResourceType,
  resourceKey,
  type WatchEvent,
} from './kubeStore.js';
import { RequestGate } from './requestGate.js';

/**
 * A Kubernetes API server for tests: the real REST and watch protocol for custom resources (and a few
 * built-in kinds), on 127.0.0.1 and a free port, in memory. No real kube-apiserver can run on the test
 * machines; this one is written to the documented semantics (see kubeResources.ts and kubeStore.ts) and
 * has the failure modes tests need: down/up, slow responses, injected 5xx, watches cut, history compacted.
 *
 *   const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
 *   process.env.KUBECONFIG = api.writeKubeconfig(dir);
 *   ... api.writes('devices'), api.failNext(3, 503), await api.down(), await api.up(), api.compact() ...
 *   await api.close();
 */

export interface KubeApiServerOptions {
  /** CRDs to serve (their storage version; objects validated against their schemas). */
  crds?: readonly CrdLike[];
  /** Changes kept for watches and exact reads; older ones answer 410 Gone. Default 1000. */
  historyLimit?: number;
  /** How often watches that allow bookmarks get one. Default 1000 ms (the real server: about a minute). */
  bookmarkIntervalMs?: number;
  /** How long the garbage collector waits after a deletion before cascading it. Default 20 ms. */
  gcDelayMs?: number;
}

export type Verb =
  | 'get'
  | 'list'
  | 'watch'
  | 'create'
  | 'update'
  | 'patch'
  | 'delete'
  | 'deletecollection'
  | 'discovery';

/** One request, as the request log keeps it. */
export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  verb: Verb;
  group?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** The HTTP status answered (0 when the connection was cut first). */
  status: number;
  /** `performance.now()` when the request arrived, and when it was answered (absent until then). */
  at: number;
  answeredAt?: number;
}

interface Route {
  t: ResourceType;
  namespace?: string;
  name?: string;
  subresource?: string;
  watch: boolean;
}

interface FailureRule {
  remaining: number;
  code: number;
  verb?: Verb;
  resource?: string;
}

interface Hook {
  match: RequestMatch;
  run: () => void;
}

/** Which requests a failure or a hook applies to (every field given must match). */
export type RequestMatch = Partial<Pick<RequestRecord, 'verb' | 'resource' | 'subresource' | 'name'>>;

interface OpenWatch {
  res: ServerResponse;
  t: ResourceType;
  bookmarks: boolean;
  cancel: () => void;
  timers: NodeJS.Timeout[];
}

const WRITE_VERBS: readonly Verb[] = ['create', 'update', 'patch', 'delete', 'deletecollection'];

export class KubeApiServer {
  readonly store: KubeStore;
  readonly resources: KubeResources;
  private readonly gc: GarbageCollector;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<OpenWatch>();
  private readonly log: RequestRecord[] = [];
  private readonly failures: FailureRule[] = [];
  private readonly hooks: Hook[] = [];
  private readonly gates: RequestGate<RequestRecord>[] = [];
  private readonly bookmarkIntervalMs: number;
  private delayMs = 0;
  private isUp = false;
  port = 0;

  private constructor(opts: KubeApiServerOptions) {
    this.store = new KubeStore(opts.historyLimit ?? 1000);
    this.resources = new KubeResources(this.store, () => this.gc.schedule());
    this.gc = new GarbageCollector(this.resources, opts.gcDelayMs ?? 20);
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
    for (const t of BUILTIN_RESOURCES) this.store.register(t);
    for (const crd of opts.crds ?? []) {
      this.registerCrd(crd);
      this.seed('customresourcedefinitions', crd); // GET .../customresourcedefinitions/<name> finds it too
    }
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const api = new KubeApiServer(opts);
    await api.up();
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Serves a CRD's kind, as creating it in a real cluster does; refuses a CRD whose schema is not structural. */
  registerCrd(crd: CrdLike): ResourceType {
    const t = checkCrd(crd);
    this.store.register(t);
    return t;
  }

  /** Serves another kind (e.g. a built-in one a test needs). */
  registerResource(t: ResourceType): void {
    this.store.register(t);
  }

  // ------------------------------------------------------------------------------------ direct access

  /** The resource type for a plural name (`devices`, `pods`). */
  type(plural: string): ResourceType {
    const t = [...this.store.types.values()].find((x) => x.plural === plural);
    if (!t) throw new Error(`the test API server does not serve ${plural}`);
    return t;
  }

  /** Stored objects of a resource, as copies (not through HTTP, not logged). */
  objects(plural: string, namespace?: string): KubeObject[] {
    return structuredClone(this.store.all(this.type(plural), namespace));
  }

  object(plural: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.store.find(this.type(plural), namespace, name);
    return o && structuredClone(o);
  }

  /** Creates an object directly, as another client would (not logged). */
  seed(plural: string, object: object): KubeObject {
    const t = this.type(plural);
    const ns = t.namespaced
      ? ((object as { metadata?: { namespace?: string } }).metadata?.namespace ?? 'default')
      : undefined;
    return this.resources.create(t, ns, object, {}).body as KubeObject;
  }

  /** Deletes an object directly, as another client would (not logged); the garbage collector follows. */
  remove(plural: string, namespace: string | undefined, name: string): void {
    this.resources.delete(this.type(plural), namespace, name, {});
  }

  /** Resolves when the garbage collector has nothing pending. */
  gcSettled(): Promise<void> {
    return this.gc.settled();
  }

  // -------------------------------------------------------------------------------- failure injection

  /** Stops listening and cuts every connection (watches included): clients get ECONNREFUSED until up(). */
  async down(): Promise<void> {
    if (!this.isUp) return;
    this.isUp = false;
    for (const w of [...this.watches]) this.endWatch(w, false);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await closed;
  }

  /** Listens again, on the same port as before (a free one the first time). */
  async up(): Promise<void> {
    if (this.isUp) return;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    this.isUp = true;
  }

  /** Delays every response by `ms` (0 to stop). */
  slow(ms: number): void {
    this.delayMs = ms;
  }

  /** Answers the next `n` resource requests (optionally only of one verb or resource) with a `code` Status. */
  failNext(n: number, code = 500, match: { verb?: Verb; resource?: string } = {}): void {
    this.failures.push({ remaining: n, code, ...match });
  }

  /**
   * Runs `run` once, when the next request matching `match` arrives and before it is served: another
   * client's write landing between a client's read and its write.
   */
  beforeNext(match: RequestMatch, run: () => void): void {
    this.hooks.push({ match, run });
  }

  /**
   * Parks every later request that `admits` (it sees the request described: verb, resource, subresource,
   * name) before it is served, until the returned gate releases it: a server taking its time over exactly
   * those requests, and a count of how many of them the client has in flight at once.
   */
  hold(admits: (r: RequestRecord) => boolean): RequestGate<RequestRecord> {
    const gate = new RequestGate(admits);
    this.gates.push(gate);
    return gate;
  }

  /** Ends every watch stream cleanly, as an API server restart or a load balancer's timeout does. */
  closeWatches(): void {
    for (const w of [...this.watches]) this.endWatch(w, true);
  }

  /** Forgets the change history (etcd compaction): a watch or exact read from before now gets 410 Gone. */
  compact(): number {
    return this.store.compact();
  }

  /** Sends a BOOKMARK now to every watch that allows them. */
  sendBookmarks(): void {
    for (const w of this.watches) if (w.bookmarks) this.bookmark(w);
  }

  get openWatches(): number {
    return this.watches.size;
  }

  // ------------------------------------------------------------------------------------- request log

  requests(
    filter: Partial<
      Pick<RequestRecord, 'verb' | 'resource' | 'namespace' | 'name' | 'subresource' | 'status'>
    > = {},
  ): RequestRecord[] {
    return this.log.filter((r) =>
      Object.entries(filter).every(([k, v]) => r[k as keyof RequestRecord] === v),
    );
  }

  /** Write requests (create, update, patch, delete, deletecollection; status writes included), optionally of one resource. */
  writes(resource?: string): number {
    return this.log.filter(
      (r) => WRITE_VERBS.includes(r.verb) && (resource === undefined || r.resource === resource),
    ).length;
  }

  /** Objects of a resource removed so far, by clients or by the garbage collector. */
  deletions(plural: string): number {
    return this.store.deletions.get(resourceKey(this.type(plural))) ?? 0;
  }

  /** Writes that changed something (each one a new resourceVersion), by resource; no-op updates do not count. */
  changes(plural: string): number {
    return this.store.changes.get(resourceKey(this.type(plural))) ?? 0;
  }

  clearLog(): void {
    this.log.length = 0;
  }

  /** A kubeconfig for this server (token auth, namespace default). */
  kubeconfig(namespace = 'default'): string {
    return stringify({
      apiVersion: 'v1',
      kind: 'Config',
      // client-node refuses a plain-http server unless TLS verification is off (there is no TLS to verify).
      clusters: [
        { name: 'leafbridge-test', cluster: { server: this.url, 'insecure-skip-tls-verify': true } },
      ],
      users: [{ name: 'leafbridge-test', user: { token: 'test-token' } }],
      contexts: [
        {
          name: 'leafbridge-test',
          context: { cluster: 'leafbridge-test', user: 'leafbridge-test', namespace },
        },
      ],
      'current-context': 'leafbridge-test',
    });
  }

  /** Writes kubeconfig() into `dir` (for a child process's KUBECONFIG); returns the file's path. */
  writeKubeconfig(dir: string, namespace = 'default'): string {
    const file = join(dir, 'kubeconfig.yaml');
    writeFileSync(file, this.kubeconfig(namespace));
    return file;
  }

  async close(): Promise<void> {
    for (const g of this.gates.splice(0)) g.open();
    this.gc.stop();
    await this.down();
  }

  // ------------------------------------------------------------------------------------------ serving

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      verb: 'discovery',
      status: 0,
      at: performance.now(),
    };
    this.log.push(record);
    try {
      const raw = await readBody(req);
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      const discovery = discoveryDocument(url.pathname, [...this.store.types.values()], this.port);
      if (discovery !== undefined) return this.reply(res, record, 200, discovery);
      const route = this.route(url.pathname, url.searchParams);
      Object.assign(record, describe(route, req.method ?? 'GET'));
      this.runHook(record);
      for (const g of this.gates) if (g.admits(record)) await g.park();
      this.injectedFailure(record);
      if (record.verb === 'watch') return this.serveWatch(res, record, route, url.searchParams);
      const crd = route.t.plural === 'customresourcedefinitions' && record.verb === 'create';
      if (crd) checkCrd(parseJson(raw) as CrdLike);
      const result = this.dispatch(record, route, url.searchParams, raw, req.headers['content-type'] ?? '');
      if (crd && result.code === 201) this.registerCrd(result.body as CrdLike); // served from now on
      this.reply(res, record, result.code, result.body, result.warnings);
    } catch (err) {
      const s =
        err instanceof KubeError
          ? err.status
          : status(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`);
      this.reply(res, record, s.code, s);
    }
  }

  private reply(
    res: ServerResponse,
    record: RequestRecord,
    code: number,
    body: unknown,
    warnings: string[] = [],
  ): void {
    record.status = code;
    record.answeredAt = performance.now();
    if (res.destroyed || res.headersSent) return;
    const headers: Record<string, string | string[]> = {
      'Content-Type': 'application/json',
      'Audit-Id': randomUUID(),
    };
    if (warnings.length > 0) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    const retry = (body as { details?: { retryAfterSeconds?: number } })?.details?.retryAfterSeconds;
    if (retry) headers['Retry-After'] = String(retry);
    res.writeHead(code, headers);
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  }

  private runHook(record: RequestRecord): void {
    const hook = this.hooks.find((h) => matches(record, h.match));
    if (!hook) return;
    this.hooks.splice(this.hooks.indexOf(hook), 1);
    hook.run();
  }

  private injectedFailure(record: RequestRecord): void {
    const rule = this.failures.find(
      (f) => (!f.verb || f.verb === record.verb) && (!f.resource || f.resource === record.resource),
    );
    if (!rule) return;
    if (--rule.remaining <= 0) this.failures.splice(this.failures.indexOf(rule), 1);
    throw errors.injected(rule.code);
  }

  private dispatch(
    record: RequestRecord,
    r: Route,
    q: URLSearchParams,
    raw: string,
    contentType: string,
  ): WriteResult {
    const ns = r.namespace;
    const opts: WriteOptions = {
      ...(q.get('dryRun') === 'All' ? { dryRun: true } : {}),
      ...(q.get('fieldValidation')
        ? { fieldValidation: q.get('fieldValidation') as WriteOptions['fieldValidation'] }
        : {}),
      ...(r.subresource === 'status' ? { subresource: 'status' as const } : {}),
    };
    const body = () => parseJson(raw);
    switch (record.verb) {
      case 'get':
        return { code: 200, body: this.resources.get(r.t, ns, r.name!), warnings: [] };
      case 'list':
        return { code: 200, body: this.resources.list(r.t, ns, listQuery(q)), warnings: [] };
      case 'create':
        return this.resources.create(r.t, ns, body(), opts);
      case 'update':
        return this.resources.update(r.t, ns, r.name!, body(), opts);
      case 'patch':
        return this.resources.patch(r.t, ns, r.name!, contentType, body(), opts);
      case 'delete':
        return this.resources.delete(r.t, ns, r.name!, deleteOptions(raw, q), opts.dryRun);
      case 'deletecollection':
        return this.resources.deleteCollection(r.t, ns, listQuery(q), deleteOptions(raw, q));
      default:
        throw errors.methodNotAllowed();
    }
  }

  private serveWatch(res: ServerResponse, record: RequestRecord, r: Route, q: URLSearchParams): void {
    const w: OpenWatch = {
      res,
      t: r.t,
      bookmarks: q.get('allowWatchBookmarks') === 'true',
      cancel: () => {},
      timers: [],
    };
    const open = () => {
      if (res.headersSent) return;
      record.status = 200;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
      res.flushHeaders();
    };
    const send = (e: WatchEvent) => {
      open();
      if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(e)}\n`);
    };
    try {
      w.cancel = this.resources.watch(
        r.t,
        r.namespace,
        { ...listQuery(q), sendInitialEvents: q.get('sendInitialEvents') === 'true' },
        send,
      );
    } catch (err) {
      if (!(err instanceof KubeError) || err.code !== 410) throw err;
      send({ type: 'ERROR', object: err.status }); // the real server answers 200, then this event
      res.end();
      return;
    }
    open();
    this.watches.add(w);
    if (w.bookmarks) w.timers.push(setInterval(() => this.bookmark(w), this.bookmarkIntervalMs));
    const timeout = Number(q.get('timeoutSeconds'));
    if (timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w, true), timeout * 1000));
    res.on('close', () => this.endWatch(w, false)); // the client went away
  }

  private bookmark(w: OpenWatch): void {
    const object = {
      apiVersion: apiVersionOf(w.t),
      kind: w.t.kind,
      metadata: { resourceVersion: String(this.store.currentRv) },
    };
    if (!w.res.writableEnded) w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`);
  }

  private endWatch(w: OpenWatch, gracefully: boolean): void {
    if (!this.watches.delete(w)) return;
    w.cancel();
    for (const t of w.timers) clearInterval(t);
    if (gracefully) w.res.end();
    else w.res.destroy();
  }

  private route(path: string, q: URLSearchParams): Route {
    const seg = path.split('/').filter(Boolean);
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === 'api' && seg.length >= 3) [group, version, rest] = ['', seg[1]!, seg.slice(2)];
    else if (seg[0] === 'apis' && seg.length >= 4) [group, version, rest] = [seg[1]!, seg[2]!, seg.slice(3)];
    else throw errors.notFoundPath(path);
    let watch = q.get('watch') === 'true' || q.get('watch') === '1';
    if (rest[0] === 'watch') {
      watch = true;
      rest = rest.slice(1);
    }
    const served = (plural: string | undefined) =>
      [...this.store.types.values()].find(
        (t) => t.group === group && t.version === version && t.plural === plural,
      );
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3 && served(rest[2])) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const t = served(rest[0]);
    if (!t || rest.length > 3) throw errors.notFoundPath(path);
    if (t.namespaced ? namespace === undefined && rest.length > 1 : namespace !== undefined)
      throw errors.notFoundPath(path);
    const [, name, subresource] = rest;
    if (subresource !== undefined && (subresource !== 'status' || !t.statusSubresource))
      throw errors.notFoundPath(path);
    return {
      t,
      ...(namespace ? { namespace } : {}),
      ...(name ? { name } : {}),
      ...(subresource ? { subresource } : {}),
      watch,
    };
  }
}

/** The resource type a CRD defines; a 422, as the API server answers, when its schema is not structural. */
function checkCrd(crd: CrdLike): ResourceType {
  const t = crdResourceType(crd);
  const problems = t.schema ? structuralProblems(t.schema) : [];
  if (problems.length > 0) {
    const ref = {
      plural: 'customresourcedefinitions',
      group: 'apiextensions.k8s.io',
      kind: 'CustomResourceDefinition',
    };
    const causes = problems.map((message) => ({
      reason: 'FieldValueInvalid' as const,
      field: 'spec.versions[0].schema.openAPIV3Schema',
      message,
    }));
    throw errors.invalid(ref, `${t.plural}.${t.group}`, causes);
  }
  return t;
}

function describe(r: Route, method: string): Partial<RequestRecord> {
  const verbs: Record<string, Verb> = r.name
    ? { GET: 'get', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }
    : { GET: r.watch ? 'watch' : 'list', POST: 'create', DELETE: 'deletecollection' };
  const verb = verbs[method];
  if (!verb) throw errors.methodNotAllowed();
  return {
    verb,
    group: r.t.group,
    resource: r.t.plural,
    ...(r.subresource ? { subresource: r.subresource } : {}),
    ...(r.namespace ? { namespace: r.namespace } : {}),
    ...(r.name ? { name: r.name } : {}),
  };
}

function matches(record: RequestRecord, match: RequestMatch): boolean {
  return Object.entries(match).every(([k, v]) => record[k as keyof RequestRecord] === v);
}

function listQuery(q: URLSearchParams): ListQuery {
  const limit = Number(q.get('limit') ?? 0);
  return {
    labelSelector: q.get('labelSelector'),
    fieldSelector: q.get('fieldSelector'),
    continue: q.get('continue'),
    resourceVersion: q.get('resourceVersion'),
    resourceVersionMatch: q.get('resourceVersionMatch'),
    ...(limit > 0 ? { limit } : {}),
  };
}

function deleteOptions(raw: string, q: URLSearchParams): DeleteOptions {
  let body: DeleteOptions = {};
  try {
    if (raw.trim()) body = JSON.parse(raw) as DeleteOptions;
  } catch {
    throw errors.badRequest('the body of the request was in an unknown format');
  }
  const policy = q.get('propagationPolicy');
  const orphan = q.get('orphanDependents');
  return {
    ...body,
    ...(policy ? { propagationPolicy: policy as DeleteOptions['propagationPolicy'] } : {}),
    ...(orphan ? { orphanDependents: orphan === 'true' } : {}),
  };
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw errors.badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
