import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DiscoveryConfigEntry } from '../config/schema.js';
import { API_VERSION, type Condition, type DiscoveryConfigObject } from '../model/resources.js';
import type {
  ConfigWriteError,
  ConfigWriteResult,
  DiscoveryConfigSource,
  WritableConfigSource,
} from '../registry/configSource.js';
import type { DeviceStore } from '../registry/deviceStore.js';
import { parseSelector } from '../registry/selectors.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { type Route, sendJson } from './http.js';

export interface DevicesApiOptions {
  devices: DeviceStore;
  configs: DiscoveryConfigSource | WritableConfigSource;
  /** Standalone: configs can be created, replaced and deleted here. In a cluster they live in the cluster. */
  writable: boolean;
  /** Node-local conditions of a config (e.g. `Running`), merged into responses, never stored. */
  runtime?: (name: string) => Condition[];
  /** Where handler failures are logged (the answer is a 500 Status either way). */
  logger?: Logger;
  /** Largest request body accepted; default 1 MiB. */
  maxBodyBytes?: number;
}

const CONFIGS = 'discoveryconfigs';
const MIB = 1024 * 1024;

/** A Kubernetes `Status` body, as the API server answers failures. */
export interface StatusBody {
  apiVersion: 'v1';
  kind: 'Status';
  metadata: Record<string, never>;
  status: 'Failure';
  reason: string;
  code: number;
  message: string;
  details?: { name: string; kind: string; causes?: { reason: string; field: string; message: string }[] };
}

/** A failure to answer with a Status (thrown inside the handlers, sent by the route). */
class StatusError extends LeafbridgeError {
  constructor(
    readonly status: StatusBody,
    readonly headers: Record<string, string> = {},
  ) {
    super(status.reason, status.message);
  }
}

/**
 * The agent's resource API under `/api/v1/`, Kubernetes-shaped:
 * - `GET devices[?labelSelector=a=b,c!=d]`, `GET devices/{name}`;
 * - `GET discoveryconfigs[/{name}]` (node-local conditions from `runtime` merged in);
 * - when writable, `POST discoveryconfigs`, `PUT discoveryconfigs/{name}`, `DELETE discoveryconfigs/{name}`.
 * Failures are Kubernetes `Status` bodies; a failing handler answers 500 and never takes the agent down.
 */
export function devicesApi(o: DevicesApiOptions): Route {
  if (o.writable && !isWritable(o.configs))
    throw new Error('devicesApi: writable needs a WritableConfigSource');
  const api = new DevicesApi(o);
  return async (req, res, url) => {
    try {
      await api.dispatch(req, res, url);
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (err instanceof StatusError) return send(res, err.status, err.headers);
      o.logger?.error({ method: req.method, url: req.url, err: errorMessage(err) }, 'api handler failed');
      o.logger?.debug({ stack: err instanceof Error ? err.stack : undefined }, 'api handler failure');
      send(res, status(500, 'InternalError', 'internal error; see the agent log'));
    }
  };
}

class DevicesApi {
  private readonly maxBody: number;
  constructor(private readonly o: DevicesApiOptions) {
    this.maxBody = o.maxBodyBytes ?? MIB;
  }

  async dispatch(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { collection, name } = parsePath(url.pathname);
    const method = req.method ?? 'GET';
    if (collection === 'devices') {
      allow(method, ['GET']);
      return name === undefined ? this.listDevices(res, url) : this.getDevice(res, name);
    }
    if (collection !== CONFIGS)
      throw notFound(`the server could not find the requested resource (${url.pathname})`);
    if (name === undefined) {
      allow(method, ['GET', 'POST'], !this.o.writable);
      if (method === 'GET') return this.listConfigs(res);
      const { entry, objectShaped } = entryOf(await readJson(req, this.maxBody));
      const given = typeof entry.name === 'string' ? entry.name : '';
      return writeResult(res, this.writable.create(entry), 201, given, objectShaped);
    }
    allow(method, ['GET', 'PUT', 'DELETE'], !this.o.writable);
    if (method === 'GET') return this.getConfig(res, name);
    if (method === 'DELETE') return writeResult(res, this.writable.delete(name), 200, name);
    const { entry, resourceVersion, objectShaped } = entryOf(await readJson(req, this.maxBody));
    if (entry.name !== name) {
      const given = typeof entry.name === 'string' ? entry.name : '';
      throw badRequest(`the name of the object (${given}) does not match the name on the URL (${name})`);
    }
    writeResult(res, this.writable.replace(name, entry, resourceVersion), 200, name, objectShaped);
  }

  private get writable(): WritableConfigSource {
    return this.o.configs as WritableConfigSource;
  }

  private async listDevices(res: ServerResponse, url: URL): Promise<void> {
    const selector = url.searchParams.get('labelSelector') ?? undefined;
    if (selector !== undefined) checkSelector(selector);
    let items: Awaited<ReturnType<DeviceStore['list']>>;
    try {
      items = await this.o.devices.list(selector);
    } catch (err) {
      if (err instanceof LeafbridgeError && err.code === 'SELECTOR_INVALID')
        throw new StatusError(status(400, 'BadRequest', err.message));
      throw err;
    }
    sendJson(res, 200, { apiVersion: API_VERSION, kind: 'DeviceList', metadata: {}, items });
  }

  private async getDevice(res: ServerResponse, name: string): Promise<void> {
    const device = await this.o.devices.get(name);
    if (!device) throw notFound(`devices "${name}" not found`, name, 'devices');
    sendJson(res, 200, device);
  }

  private listConfigs(res: ServerResponse): void {
    const items = this.o.configs.list().map((c) => this.withRuntime(c));
    sendJson(res, 200, { apiVersion: API_VERSION, kind: 'DiscoveryConfigList', metadata: {}, items });
  }

  private getConfig(res: ServerResponse, name: string): void {
    const config = this.o.configs.list().find((c) => c.metadata.name === name);
    if (!config) throw notFound(`${CONFIGS} "${name}" not found`, name, CONFIGS);
    sendJson(res, 200, this.withRuntime(config));
  }

  /** The config with this node's runtime conditions replacing stored ones of the same type (a copy). */
  private withRuntime(config: DiscoveryConfigObject): DiscoveryConfigObject {
    if (!this.o.runtime) return config;
    let runtime: Condition[];
    try {
      runtime = this.o.runtime(config.metadata.name);
    } catch (err) {
      // The stored config is still worth serving without this node's view of it.
      this.o.logger?.error(
        { config: config.metadata.name, err: errorMessage(err) },
        'runtime conditions failed',
      );
      return config;
    }
    const types = new Set(runtime.map((c) => c.type));
    const stored = (config.status?.conditions ?? []).filter((c) => !types.has(c.type));
    return {
      ...config,
      status: { ...config.status, devices: config.status?.devices ?? 0, conditions: [...stored, ...runtime] },
    };
  }
}

// ----------------------------------------------------------------------------------------------- paths

function parsePath(pathname: string): { collection: string; name?: string } {
  const parts = pathname.replace(/^\/api\/v1\/?/, '').split('/');
  if (parts.at(-1) === '' && parts.length > 1) parts.pop(); // a trailing slash
  const [collection = '', name, ...rest] = parts;
  if (rest.length > 0 || name === '')
    throw notFound(`the server could not find the requested resource (${pathname})`);
  try {
    return { collection, ...(name !== undefined ? { name: decodeURIComponent(name) } : {}) };
  } catch {
    throw new StatusError(status(400, 'BadRequest', `malformed resource name in ${pathname}`));
  }
}

/** Throws 405 (with Allow) for a method the path does not take; `readOnly`: writes go to the cluster. */
function allow(method: string, methods: readonly string[], readOnly = false): void {
  const allowed = readOnly ? methods.filter((m) => m === 'GET') : methods;
  if (allowed.includes(method)) return;
  const message =
    readOnly && methods.includes(method)
      ? 'DiscoveryConfigs live in the Kubernetes cluster: change them there with kubectl (kubectl apply -f FILE, kubectl delete discoveryconfig NAME)'
      : `method ${method} is not allowed here; allowed: ${allowed.join(', ')}`;
  throw new StatusError(status(405, 'MethodNotAllowed', message), { allow: allowed.join(', ') });
}

function checkSelector(selector: string): void {
  try {
    parseSelector(selector);
  } catch (err) {
    throw new StatusError(status(400, 'BadRequest', `invalid labelSelector: ${errorMessage(err)}`));
  }
}

// ------------------------------------------------------------------------------------------------ bodies

/** The request body parsed as JSON: 413 beyond `max` bytes, 400 when it is not JSON. */
async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const text = (await readBody(req, max)).toString('utf8');
  if (text.trim() === '') throw badRequest('the request body is empty; send a DiscoveryConfig as JSON');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${errorMessage(err)}`);
  }
}

/** At most `max` bytes of body; beyond that the rest is read and dropped (so the client reads the 413). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = new StatusError(
    status(413, 'RequestEntityTooLarge', `the request body is larger than the limit of ${max} bytes`),
  );
  if (Number(req.headers['content-length'] ?? 0) > max) return Promise.reject(tooLarge);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      req.off('data', onData);
      req.resume();
      reject(tooLarge);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => reject(new Error('the client closed the connection before the body ended')));
  });
}

/**
 * A write's body as a config-file entry: a DiscoveryConfig object (`{apiVersion, kind, metadata: {name,
 * resourceVersion}, spec}`) or the config file's shape (`{name, spec}`). The store checks the rest.
 */
function entryOf(body: unknown): {
  entry: DiscoveryConfigEntry;
  resourceVersion?: string;
  objectShaped: boolean;
} {
  if (!isObject(body)) throw badRequest('the request body must be a JSON object: a DiscoveryConfig');
  const objectShaped = 'metadata' in body || 'apiVersion' in body || 'kind' in body;
  if (!objectShaped) return { entry: body as unknown as DiscoveryConfigEntry, objectShaped };
  if (body.apiVersion !== undefined && body.apiVersion !== API_VERSION)
    throw badRequest(`apiVersion must be ${API_VERSION}, not ${JSON.stringify(body.apiVersion)}`);
  if (body.kind !== undefined && body.kind !== 'DiscoveryConfig')
    throw badRequest(`kind must be DiscoveryConfig, not ${JSON.stringify(body.kind)}`);
  const metadata = body.metadata ?? {};
  if (!isObject(metadata)) throw badRequest('metadata must be an object');
  const rv = metadata.resourceVersion;
  if (rv !== undefined && typeof rv !== 'string')
    throw badRequest('metadata.resourceVersion must be a string');
  const entry = { name: metadata.name, spec: body.spec } as DiscoveryConfigEntry;
  return { entry, ...(rv !== undefined && rv !== '' ? { resourceVersion: rv } : {}), objectShaped };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isWritable(configs: DiscoveryConfigSource | WritableConfigSource): configs is WritableConfigSource {
  return 'create' in configs && 'replace' in configs && 'delete' in configs;
}

// ------------------------------------------------------------------------------------------------ answers

function writeResult(
  res: ServerResponse,
  result: ConfigWriteResult,
  okCode: 200 | 201,
  name: string,
  objectShaped = false,
): void {
  if (result.ok) sendJson(res, okCode, result.object);
  else send(res, writeStatus(result.error, name, objectShaped));
}

/** A refused write as a Status; with an object-shaped body, the entry's `name` is reported as metadata.name. */
function writeStatus(error: ConfigWriteError, name: string, objectShaped: boolean): StatusBody {
  const body = status(error.code, error.reason, error.message);
  const causes =
    error.code === 422
      ? error.causes.map((c) => ({
          reason: 'FieldValueInvalid',
          field: objectShaped && c.field === 'name' ? 'metadata.name' : c.field,
          message: c.message,
        }))
      : undefined;
  return { ...body, details: { name, kind: CONFIGS, ...(causes ? { causes } : {}) } };
}

function status(code: number, reason: string, message: string): StatusBody {
  return { apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Failure', reason, code, message };
}

function notFound(message: string, name?: string, kind?: string): StatusError {
  const body = status(404, 'NotFound', message);
  return new StatusError(name !== undefined && kind ? { ...body, details: { name, kind } } : body);
}

function badRequest(message: string): StatusError {
  return new StatusError(status(400, 'BadRequest', message));
}

function send(res: ServerResponse, body: StatusBody, headers: Record<string, string> = {}): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  sendJson(res, body.code, body);
}
