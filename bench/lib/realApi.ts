// The real Kubernetes control plane as a bench target (test/helpers/controlPlane.ts: etcd, kube-apiserver with
// RBAC, controller-manager, scheduler, on 127.0.0.1): which API servers a run measures (`--api`), the admin's
// keep-alive HTTPS client, kube-apiserver's own request counters (it keeps no request log, unlike the test
// double), the Devices as etcd stores them, and the control plane's process ids for CPU accounting.
import { readdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { type ControlPlane, controlPlaneBin } from '../../test/helpers/controlPlane.js';

export const API_CHOICES = ['real', 'double', 'both'] as const;
export type ApiChoice = (typeof API_CHOICES)[number];

export interface ApiPlan {
  double: boolean;
  real: boolean;
  /** One line for the printout and the JSON: what runs, or why the real one does not. */
  note: string;
  /** Set when `--api real|both` was asked for and cannot run. */
  error?: string;
}

/** `--api`: default both when the control-plane binaries exist, else the double alone, said plainly. */
export function planApis(choice: ApiChoice | undefined): ApiPlan {
  const bin = controlPlaneBin();
  const real = choice !== 'double';
  const double = choice !== 'real';
  if (real && !bin) {
    const note =
      'real kube-apiserver SKIPPED: no control-plane binaries on this machine (run scripts/build-control-plane.sh, ' +
      'or set LEAFBRIDGE_CONTROL_PLANE_BIN)';
    return choice === undefined ? { double, real: false, note } : { double, real: false, note, error: note };
  }
  return {
    double,
    real,
    note: real ? `real kube-apiserver: binaries in ${bin}` : 'real kube-apiserver not run (--api double)',
  };
}

// ------------------------------------------------------------------------------------- admin client

export interface Answer {
  status: number;
  body: unknown;
}

/** The cluster admin's client: requests through ControlPlane's kept-alive connections, watches on their own. */
export class AdminClient {
  private readonly tls: { ca: Buffer; cert: Buffer; key: Buffer };

  constructor(private readonly cp: ControlPlane) {
    const c = cp.certs;
    this.tls = { ca: readFileSync(c.caCert), cert: readFileSync(c.adminCert), key: readFileSync(c.adminKey) };
  }

  /** One request as the admin, its answer as it is (429s included: the bench counts them). */
  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Answer> {
    return this.cp.requestOnce(method, path, body, contentType);
  }

  /** A watch (its own connection): each event's object to `onEvent`; resolves when the stream ends. */
  watch(path: string, onEvent: (type: string, object: Record<string, unknown>) => void): Promise<void> {
    const url = new URL(path, this.cp.url);
    url.searchParams.set('watch', 'true');
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method: 'GET', ...this.tls, agent: false }, (res) => {
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (!line) continue;
            const e = JSON.parse(line) as { type: string; object: Record<string, unknown> };
            onEvent(e.type, e.object);
          }
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    // (the connections are the control plane's; it closes them)
  }
}

/** Runs `work` over `items`, `concurrency` at a time. */
export async function eachLimit<T>(items: T[], concurrency: number, work: (t: T) => Promise<void>) {
  let next = 0;
  const lanes = Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++] as T);
  });
  await Promise.all(lanes);
}

// ---------------------------------------------------------------------------------- request counters

/** apiserver_request_total by `VERB resource[/subresource] code`, e.g. `PATCH devices/status 200`. */
export type RequestTotals = Record<string, number>;

const WRITE_VERBS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION', 'APPLY']);

/** The counters in kube-apiserver's /metrics text (they start from zero when the apiserver restarts). */
export function parseRequestTotals(text: string): RequestTotals {
  const out: RequestTotals = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const close = line.lastIndexOf('}');
    const labels: Record<string, string> = {};
    for (const m of line.slice(24, close).matchAll(/(\w+)="([^"]*)"/g))
      labels[m[1] as string] = m[2] as string;
    const resource = labels.resource ? labels.resource : '(non-resource)';
    const key = `${labels.verb} ${resource}${labels.subresource ? `/${labels.subresource}` : ''} ${labels.code}`;
    out[key] = (out[key] ?? 0) + Number(line.slice(close + 1).trim());
  }
  return out;
}

export async function requestTotals(admin: AdminClient): Promise<RequestTotals> {
  const res = await admin.request('GET', '/metrics');
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  return parseRequestTotals(String(res.body));
}

/** `after - before`, zeros left out (a counter missing before counts from zero). */
export function since(before: RequestTotals, after: RequestTotals): RequestTotals {
  const out: RequestTotals = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

export interface CountedKey {
  verb: string;
  resource: string;
  code: string;
}

const parts = (key: string): CountedKey => {
  const [verb = '', resource = '', code = ''] = key.split(' ');
  return { verb, resource, code };
};

/** The sum of the counters whose key passes `pick`. */
export function sumOf(t: RequestTotals, pick: (k: CountedKey) => boolean): number {
  return Object.entries(t).reduce((a, [k, v]) => a + (pick(parts(k)) ? v : 0), 0);
}

export const isDeviceWrite = (k: CountedKey) =>
  WRITE_VERBS.has(k.verb) && (k.resource === 'devices' || k.resource.startsWith('devices/'));

/** Counters of one resource (and its subresources) only, for the printout. */
export function onlyResource(t: RequestTotals, resource: string): RequestTotals {
  const out: RequestTotals = {};
  for (const [k, v] of Object.entries(t)) {
    const r = parts(k).resource;
    if (r === resource || r.startsWith(`${resource}/`)) out[k] = v;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ etcd

/** The objects under `/registry/leafbridge.io/devices/<namespace>/` as etcd holds them (CRs are stored as JSON). */
export async function etcdDevices(cp: ControlPlane, namespace: string): Promise<Record<string, unknown>[]> {
  const prefix = `/registry/leafbridge.io/devices/${namespace}/`;
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const res = await fetch(`${cp.etcdUrl}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({ key: b64(prefix), range_end: b64(end) }),
  });
  if (!res.ok) throw new Error(`etcd range ${prefix}: ${res.status}`);
  const kvs = ((await res.json()) as { kvs?: { value: string }[] }).kvs ?? [];
  return kvs.map((kv) => JSON.parse(Buffer.from(kv.value, 'base64').toString('utf8')));
}

// ------------------------------------------------------------------------------------------- processes

/** Pids of this process's children by command name (etcd, kube-apiserver, …), read from /proc. */
export function childPids(parent = process.pid): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) out[comm] = Number(entry);
    } catch {
      // gone
    }
  }
  return out;
}
