import { readFileSync } from 'node:fs';
import { get as httpGetRequest } from 'node:http';
import { get as httpsGet } from 'node:https';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { KubeApiError } from '../kubeclient/kubeApiError.js';
import type { KubeRest } from '../kubeclient/kubeRest.js';
import { customPath } from '../kubeclient/paths.js';
import { API_GROUP, API_VERSION } from '../model/resources.js';
import { errorMessage } from '../util/errors.js';

const RESOURCES = {
  devices: 'devices',
  device: 'devices',
  dev: 'devices',
  configs: 'discoveryconfigs',
  config: 'discoveryconfigs',
  discoveryconfigs: 'discoveryconfigs',
  discoveryconfig: 'discoveryconfigs',
} as const;
type Resource = (typeof RESOURCES)[keyof typeof RESOURCES];

const LIST_KIND: Record<Resource, string> = {
  devices: 'DeviceList',
  discoveryconfigs: 'DiscoveryConfigList',
};
const OUTPUTS = ['', 'wide', 'json', 'yaml'] as const;
const DEFAULT_TIMEOUT = '30s';

export const GET_USAGE = `usage: leafbridge get devices|configs [NAME] [options]

Lists Devices or DiscoveryConfigs, like kubectl get: from the agent's HTTP API (default), or from a cluster.

options:
  -o, --output FORMAT      wide | json | yaml (default: a table)
  -l, --selector SELECTOR  label selector, e.g. leafbridge.io/config=cams,tier!=test
      --server URL         the agent's HTTP API (default: $LEAFBRIDGE_SERVER or http://127.0.0.1:8080)
      --token-file FILE    the bearer token for the agent's API (default: $LEAFBRIDGE_TOKEN)
      --request-timeout T  give up after T (e.g. 500ms, 10s, 1m; 0: wait forever; default ${DEFAULT_TIMEOUT})
      --kubeconfig FILE    read from the cluster of this kubeconfig's current context
      --cluster            read from the cluster: $KUBECONFIG, in-cluster service account, or ~/.kube/config
  -n, --namespace NS       the namespace (default: the kubeconfig context's namespace, else default)
  -A, --all-namespaces     list across all namespaces
  -h, --help               this text
`;

/** What the user asked for, parsed and checked. */
interface GetRequest {
  resource: Resource;
  name?: string;
  output: (typeof OUTPUTS)[number];
  selector?: string;
  namespace?: string;
  allNamespaces: boolean;
  server: string;
  /** The bearer token for the agent's API, if one was given. */
  token?: string;
  /** Milliseconds before giving up; 0: no limit. */
  timeoutMs: number;
  /** Set when reading from a cluster: the kubeconfig file, or `default` for the usual search. */
  kubeconfig?: string | { default: true };
}

/** What a source answered: a list of items, or one object (both untrusted JSON); and from which namespace. */
type Fetched = ({ list: unknown[] } | { object: unknown }) & { namespace?: string };

/** A failure already worded for the user (one line on stderr). */
class GetError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/**
 * `leafbridge get devices|configs [NAME] [-o wide|json|yaml] [-l SELECTOR] [--server URL | --kubeconfig FILE |
 * --cluster] [-n NS | -A]`: kubectl-like output from the agent's API or from a cluster.
 */
export async function getCommand(argv: string[]): Promise<number> {
  let request: GetRequest | 'help';
  try {
    request = parseRequest(argv);
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n${GET_USAGE}`);
    return 2;
  }
  if (request === 'help') {
    process.stdout.write(GET_USAGE);
    return 0;
  }
  try {
    const fetched = request.kubeconfig ? await fromCluster(request) : await fromAgent(request);
    print(request, fetched);
    return 0;
  } catch (err) {
    if (!(err instanceof GetError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return err.exitCode;
  }
}

function parseRequest(argv: string[]): GetRequest | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o', default: '' },
      selector: { type: 'string', short: 'l' },
      server: { type: 'string' },
      'token-file': { type: 'string' },
      kubeconfig: { type: 'string' },
      cluster: { type: 'boolean', default: false },
      namespace: { type: 'string', short: 'n' },
      'all-namespaces': { type: 'boolean', short: 'A', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      'request-timeout': { type: 'string', default: DEFAULT_TIMEOUT },
    },
  });
  if (values.help) return 'help';
  const [kind, name, ...extra] = positionals;
  const resource =
    kind && Object.hasOwn(RESOURCES, kind) ? RESOURCES[kind as keyof typeof RESOURCES] : undefined;
  if (!resource)
    throw new Error(kind ? `unknown resource type "${kind}"` : 'which resource? devices or configs');
  if (extra.length > 0) throw new Error(`unexpected arguments: ${extra.join(' ')}`);
  const output = values.output as GetRequest['output'];
  if (!OUTPUTS.includes(output)) throw new Error(`unknown output format "${values.output}"`);
  if (values.server !== undefined && (values.kubeconfig !== undefined || values.cluster))
    throw new Error('--server reads from the agent; --kubeconfig and --cluster from a cluster: pick one');
  if (name && values['all-namespaces'])
    throw new Error('a resource cannot be retrieved by name across all namespaces');
  if (name && values.selector !== undefined)
    throw new Error('a selector cannot be used with a resource name');
  if (values.namespace !== undefined && values['all-namespaces'])
    throw new Error('--namespace and --all-namespaces exclude each other');
  return {
    resource,
    ...(name ? { name } : {}),
    output,
    ...(values.selector !== undefined ? { selector: values.selector } : {}),
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    allNamespaces: values['all-namespaces'],
    server: values.server ?? process.env.LEAFBRIDGE_SERVER ?? 'http://127.0.0.1:8080',
    ...tokenOf(values['token-file']),
    timeoutMs: duration(values['request-timeout']),
    ...(values.kubeconfig !== undefined
      ? { kubeconfig: values.kubeconfig }
      : values.cluster
        ? { kubeconfig: { default: true as const } }
        : {}),
  };
}

/** The token from --token-file, else $LEAFBRIDGE_TOKEN (never a flag's value: ps would show it). */
function tokenOf(file: string | undefined): { token?: string } {
  if (file === undefined) {
    const env = process.env.LEAFBRIDGE_TOKEN?.trim();
    return env ? { token: env } : {};
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(`cannot read --token-file ${file}: ${errorMessage(err)}`);
  }
  if (text === '') throw new Error(`--token-file ${file} is empty`);
  return { token: text };
}

/** `500ms`, `10s`, `1m`, `1h`, or plain seconds, in milliseconds. */
function duration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`invalid --request-timeout "${text}": use e.g. 500ms, 10s, 1m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

/** A signal that aborts after the request timeout (never, for 0). */
function deadline(r: GetRequest): AbortSignal {
  return r.timeoutMs > 0 ? AbortSignal.timeout(r.timeoutMs) : new AbortController().signal;
}

// ------------------------------------------------------------------------------------------- the agent

/**
 * One GET with node's own client. Node 20's fetch, given an abort signal, never settles a request
 * whose connection the server closes unanswered: the process then ran out of work and exited 0
 * having printed nothing.
 */
function httpGet(
  url: URL,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  const get = url.protocol === 'https:' ? httpsGet : httpGetRequest;
  return new Promise((resolve, reject) => {
    const req = get(url, { headers, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function fromAgent(r: GetRequest): Promise<Fetched> {
  const base = `${r.server.replace(/\/$/, '')}/api/v1/${r.resource}`;
  if (!URL.canParse(base)) throw new GetError(`error: --server ${r.server} is not a URL`, 2);
  const url = new URL(r.name ? `${base}/${encodeURIComponent(r.name)}` : base);
  if (r.selector !== undefined) url.searchParams.set('labelSelector', r.selector);
  let res: { status: number; text: string };
  const signal = deadline(r);
  try {
    res = await httpGet(url, r.token ? { authorization: `Bearer ${r.token}` } : {}, signal);
  } catch (err) {
    throw new GetError(`error: cannot reach the agent at ${r.server}: ${reason(err, r, signal)}`);
  }
  const { text } = res;
  const body = parseJson(text);
  if (res.status < 200 || res.status > 299) throw serverError(r, res.status, body, text);
  if (body === undefined) throw new GetError(`error: the agent at ${r.server} answered no JSON`);
  // The agent keeps its objects in one namespace: -n filters, -A changes nothing.
  const inNamespace = (o: unknown) =>
    r.namespace === undefined || at(o, 'metadata', 'namespace') === r.namespace;
  const namespace = r.namespace !== undefined ? { namespace: r.namespace } : {};
  if (r.name) {
    if (!inNamespace(body)) throw notFound(r);
    return { object: body, ...namespace };
  }
  const items = at(body, 'items');
  if (!Array.isArray(items)) throw new GetError(`error: the agent at ${r.server} answered no list`);
  return { list: items.filter(inNamespace), ...namespace };
}

// ------------------------------------------------------------------------------------------ a cluster

async function fromCluster(r: GetRequest): Promise<Fetched> {
  // Lazy: loading a kubeconfig imports client-node, ~70 MB and ~1 s, which the agent path must not pay.
  const [{ loadKubeConfig }, { KubeRest }] = await Promise.all([
    import('../kubeclient/connection.js'),
    import('../kubeclient/kubeRest.js'),
  ]);
  let loaded: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    loaded = await loadKubeConfig(typeof r.kubeconfig === 'string' ? r.kubeconfig : undefined);
  } catch (err) {
    const file = typeof r.kubeconfig === 'string' ? r.kubeconfig : 'the kubeconfig';
    throw new GetError(`error: cannot load ${file}: ${reason(err)}`);
  }
  const server = loaded.kubeConfig.getCurrentCluster()?.server;
  if (!server) throw new GetError('error: the kubeconfig has no current context with a cluster');
  const namespace = r.namespace ?? loaded.namespace;
  // Every request of this command shares one deadline (--request-timeout), not a timeout each.
  const rest = new KubeRest(loaded.kubeConfig, { timeoutMs: 0 });
  const signal = deadline(r);
  try {
    return await fetchFrom(rest, r, namespace, signal, server);
  } catch (err) {
    if (err instanceof GetError) throw err;
    if (err instanceof KubeApiError && err.status !== 0) {
      throw serverError(r, err.status, parseJson(err.body), err.body || err.message);
    }
    throw new GetError(
      `error: cannot reach the Kubernetes API server at ${server}: ${reason(err, r, signal)}`,
    );
  } finally {
    rest.close();
  }
}

/** The object named, or every page of the list. */
async function fetchFrom(
  rest: KubeRest,
  r: GetRequest,
  namespace: string,
  signal: AbortSignal,
  server: string,
): Promise<Fetched> {
  const version = API_VERSION.slice(API_GROUP.length + 1);
  const resource = { group: API_GROUP, version, namespace, plural: r.resource };
  if (r.name) {
    const object = await rest.call({ method: 'GET', path: customPath(resource, r.name), signal });
    return { object, namespace };
  }
  const path = r.allNamespaces ? `/apis/${API_GROUP}/${version}/${r.resource}` : customPath(resource);
  const list: unknown[] = [];
  let next: string | undefined;
  do {
    const query = { labelSelector: r.selector, limit: 500, continue: next };
    const page = await rest.call({ method: 'GET', path, query, signal });
    const items = at(page, 'items');
    if (!Array.isArray(items)) throw new GetError(`error: ${server} answered no list`);
    for (const item of items) list.push(item);
    const token = at(page, 'metadata', 'continue');
    // A server that hands back the token it was given would page forever.
    next = typeof token === 'string' && token !== '' && token !== next ? token : undefined;
  } while (next);
  return r.allNamespaces ? { list } : { list, namespace };
}

// ---------------------------------------------------------------------------------------------- errors

function notFound(r: GetRequest): GetError {
  return new GetError(`Error from server (NotFound): ${r.resource} "${r.name}" not found`);
}

/** kubectl's wording: `Error from server (Reason): message`, from a Kubernetes Status body when there is one. */
function serverError(r: GetRequest, code: number, body: unknown, text: string): GetError {
  if (code === 404 && r.name) return notFound(r);
  const statusReason = at(body, 'reason');
  const message = at(body, 'message') ?? at(body, 'error', 'message');
  const why = typeof statusReason === 'string' && statusReason ? statusReason : String(code);
  const what = typeof message === 'string' && message ? message : text.slice(0, 200) || `HTTP ${code}`;
  return new GetError(`Error from server (${why}): ${sanitize(what)}`);
}

/** The most useful words of a network error (fetch hides the reason in `cause`). */
function reason(err: unknown, r?: GetRequest, signal?: AbortSignal): string {
  if (signal?.aborted && r) return `no answer within ${r.timeoutMs} ms (--request-timeout)`;
  const cause =
    err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code) return cause.code;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  return sanitize(cause?.message ?? errorMessage(err));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------- output

function print(r: GetRequest, fetched: Fetched): void {
  const body =
    'list' in fetched
      ? { apiVersion: API_VERSION, kind: LIST_KIND[r.resource], items: fetched.list }
      : fetched.object;
  if (r.output === 'json') return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  if (r.output === 'yaml') return void process.stdout.write(stringify(body));
  const items = 'list' in fetched ? fetched.list : [fetched.object];
  if (items.length === 0) {
    const where = fetched.namespace === undefined ? '' : ` in ${fetched.namespace} namespace`;
    return void process.stderr.write(`No resources found${where}.\n`);
  }
  const wide = r.output === 'wide';
  process.stdout.write(
    r.resource === 'devices'
      ? deviceTable(items, wide, Date.now(), r.allNamespaces)
      : configTable(items, wide, Date.now(), r.allNamespaces),
  );
}

// ---------------------------------------------------------------------------------------------- tables

/**
 * `kubectl get devices` as a table. Items are read defensively (objects from a cluster or an agent are
 * untrusted): absent fields print `<none>`, absent times `<unknown>`, control characters are escaped.
 */
export function deviceTable(
  items: readonly unknown[],
  wide: boolean,
  now = Date.now(),
  namespaces = false,
): string {
  if (items.length === 0) return 'No resources found.\n';
  const head = [
    ...(namespaces ? ['NAMESPACE'] : []),
    'NAME',
    'CONFIG',
    'HANDLER',
    'ONLINE',
    'NODES',
    'AGE',
    ...(wide ? ['ID', 'LAST SEEN', 'CONDITIONS'] : []),
  ];
  const rows = items.map((d) => [
    ...(namespaces ? [cell(at(d, 'metadata', 'namespace'))] : []),
    cell(at(d, 'metadata', 'name')),
    cell(at(d, 'spec', 'configName')),
    cell(at(d, 'spec', 'handler')),
    cell(at(d, 'status', 'online')),
    list(at(d, 'spec', 'nodes')),
    age(at(d, 'metadata', 'creationTimestamp'), now),
    ...(wide
      ? [
          cell(at(d, 'spec', 'id')),
          age(at(d, 'status', 'lastSeen'), now),
          cell(
            conditions(d)
              .filter((c) => c.status !== 'True')
              .map((c) => `${c.type}=${c.reason}`)
              .join(','),
          ),
        ]
      : []),
  ]);
  return table([head, ...rows]);
}

/** `kubectl get discoveryconfigs` as a table; read as defensively as deviceTable. */
export function configTable(
  items: readonly unknown[],
  wide: boolean,
  now = Date.now(),
  namespaces = false,
): string {
  if (items.length === 0) return 'No resources found.\n';
  const head = [
    ...(namespaces ? ['NAMESPACE'] : []),
    'NAME',
    'HANDLER',
    'CAPACITY',
    'DEVICES',
    'VALID',
    'RUNNING',
    'AGE',
    ...(wide ? ['MESSAGE'] : []),
  ];
  const rows = items.map((c) => {
    const conds = conditions(c);
    const status = (type: string) => conds.find((x) => x.type === type)?.status ?? 'Unknown';
    return [
      ...(namespaces ? [cell(at(c, 'metadata', 'namespace'))] : []),
      cell(at(c, 'metadata', 'name')),
      cell(at(c, 'spec', 'handler', 'name')),
      cell(at(c, 'spec', 'capacity')),
      cell(at(c, 'status', 'devices')),
      status('Valid'),
      status('Running'),
      age(at(c, 'metadata', 'creationTimestamp'), now),
      ...(wide
        ? [
            cell(
              conds
                .filter((x) => x.status !== 'True' && x.message !== '')
                .map((x) => x.message)
                .join('; '),
            ),
          ]
        : []),
    ];
  });
  return table([head, ...rows]);
}

/** The value at `path` inside untrusted JSON, or undefined when any step is not an object. */
function at(value: unknown, ...path: string[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

/** An object's status.conditions that look like conditions, their fields as printable strings. */
function conditions(o: unknown): { type: string; status: string; reason: string; message: string }[] {
  const raw = at(o, 'status', 'conditions');
  if (!Array.isArray(raw)) return [];
  return raw
    .filter((c) => c !== null && typeof c === 'object')
    .map((c) => ({
      type: scalar(at(c, 'type')) ?? '',
      status: scalar(at(c, 'status')) ?? 'Unknown',
      reason: scalar(at(c, 'reason')) ?? '',
      message: scalar(at(c, 'message')) ?? '',
    }));
}

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') return sanitize(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function cell(v: unknown): string {
  const s = scalar(v);
  return s === undefined || s === '' ? '<none>' : s;
}

function list(v: unknown): string {
  if (!Array.isArray(v)) return cell(v);
  return cell(
    v
      .map(scalar)
      .filter((s) => s !== undefined)
      .join(','),
  );
}

/** Control characters and bidi overrides escaped, so a hostile value cannot rewrite the terminal. */
function sanitize(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (ch) =>
    ch === '\t' ? ' ' : `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => rows.reduce((w, r) => Math.max(w, (r[i] ?? '').length), 0));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3))).join('')).join('\n')}\n`;
}

function age(iso: unknown, now: number): string {
  const t = typeof iso === 'string' ? Date.parse(iso) : Number.NaN;
  if (Number.isNaN(t)) return '<unknown>';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}
