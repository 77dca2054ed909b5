// The real control plane (test/helpers/clusterBackend.ts RealBackend: etcd, kube-apiserver with RBAC,
// controller-manager, scheduler, deploy/ applied with kubectl) for `npm run bench -- hub`, in a process of its
// own; the same IPC protocol as hubApi.ts (the test double), so one hub phase drives either. Devices live in
// namespace `leafbridge`; the hub gets the leafbridge-hub service account's kubeconfig.
//   {cmd:'start', devices: [{name, id, node}], sampled: [name]} -> {ev:'ready', kubeconfig, namespace, seedMs, pids}
//   {cmd:'track', names}           -> records when each sampled Device's status.reported.$version changes (a watch
//                                     on the label the sampled Devices carry: receive time at this process)
//   {cmd:'desired', names, everyMs} -> PATCHes spec.desired {$version, setAt} round-robin over `names`, as admin
//   {cmd:'desired-stop'}           -> {ev:'desired-stopped', written}
//   {cmd:'counts'}                 -> {ev:'counts', statusPatches, otherWrites, reads, failed, at} from
//                                     kube-apiserver's apiserver_request_total (Devices only, cumulative)
//   {cmd:'landed'}                 -> {ev:'landed', landed: {name: [[version, at], ...]}}
//   {cmd:'close'}                  -> stops the control plane and exits
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RealBackend } from '../../test/helpers/clusterBackend.js';
import { type Seed, seedDevice, seedStatus } from './hubSeed.js';
import { AdminClient, childPids, eachLimit, requestTotals, sumOf } from './realApi.js';
import { now, tempDir } from './util.js';

const NS = 'leafbridge';
const SAMPLED_LABEL = 'bench.leafbridge.io/sampled';
const DEVICES = `/apis/leafbridge.io/v1alpha1/namespaces/${NS}/devices`;

let backend: RealBackend | undefined;
let admin: AdminClient | undefined;
let tracking = false;
let desiredTimer: NodeJS.Timeout | undefined;
let desiredWritten = 0;
const landed = new Map<string, [number, number][]>();
const dir = tempDir('lb-bench-hub-real-');

async function start(devices: Seed[], sampled: string[]): Promise<void> {
  backend = await RealBackend.start();
  const client = new AdminClient(backend.cp);
  admin = client;
  const marked = new Set(sampled);
  const started = now();
  // As the agents write them: a create (status ignored: the CRD has a status subresource), then the status.
  await eachLimit(devices, 32, async (d) => {
    const labels: Record<string, string> = marked.has(d.name) ? { [SAMPLED_LABEL]: 'true' } : {};
    const created = await client.request('POST', DEVICES, seedDevice(d, NS, labels));
    if (created.status !== 201)
      throw new Error(`create ${d.name}: ${created.status} ${JSON.stringify(created.body)}`);
    const patched = await client.request(
      'PATCH',
      `${DEVICES}/${d.name}/status`,
      { status: seedStatus(d) },
      'application/merge-patch+json',
    );
    if (patched.status !== 200) throw new Error(`status ${d.name}: ${patched.status}`);
  });
  const seedMs = now() - started;
  const file = await backend.kubeconfig(join(dir.path, 'hub'), 'hub');
  const pids = childPids();
  process.send?.({
    ev: 'ready',
    kubeconfig: readFileSync(file, 'utf8'),
    namespace: NS,
    seedMs,
    pids: {
      apiserver: pids['kube-apiserver'] ?? 0,
      etcd: pids.etcd ?? 0,
      controllers: pids['kube-controller'] ?? 0,
    },
  });
}

/** One watch on the sampled Devices' label (the first call only: the hub phase asks once per load step). */
function track(): void {
  if (tracking || !admin) return;
  tracking = true;
  const seen = (_type: string, o: Record<string, unknown>) => {
    const name = (o.metadata as { name?: string } | undefined)?.name;
    const v = (o.status as { reported?: { $version?: unknown } } | undefined)?.reported?.$version;
    if (!name || typeof v !== 'number') return;
    const list = landed.get(name) ?? [];
    if (list[list.length - 1]?.[0] !== v) list.push([v, now()]);
    landed.set(name, list);
  };
  admin
    .watch(`${DEVICES}?labelSelector=${encodeURIComponent(`${SAMPLED_LABEL}=true`)}`, seen)
    .catch((err: unknown) => {
      if (!backend?.cp.isClosing) fatal(err);
    });
}

/** A new desired twin for one of `names` every `everyMs`, stamped with when it was sent. */
function desired(names: string[], everyMs: number): void {
  const client = admin as AdminClient;
  const versions = new Map<string, number>();
  let i = 0;
  desiredWritten = 0;
  desiredTimer = setInterval(() => {
    const name = names[i++ % names.length] as string;
    const version = (versions.get(name) ?? 0) + 1;
    versions.set(name, version);
    const body = {
      spec: { desired: { $version: version, setAt: now(), mode: version % 2 ? 'eco' : 'boost' } },
    };
    desiredWritten++;
    client.request('PATCH', `${DEVICES}/${name}`, body, 'application/merge-patch+json').catch(fatal);
  }, everyMs);
}

/** Device requests kube-apiserver has answered since it started, by kind, from its own counters. */
async function counts(): Promise<void> {
  const t = await requestTotals(admin as AdminClient);
  const devices = (r: string) => r === 'devices' || r.startsWith('devices/');
  const writes = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY']);
  process.send?.({
    ev: 'counts',
    statusPatches: sumOf(t, (k) => k.verb === 'PATCH' && k.resource === 'devices/status'),
    otherWrites: sumOf(
      t,
      (k) => devices(k.resource) && writes.has(k.verb) && k.resource !== 'devices/status',
    ),
    reads: sumOf(t, (k) => devices(k.resource) && !writes.has(k.verb)),
    failed: sumOf(t, (k) => devices(k.resource) && !k.code.startsWith('2')),
    at: now(),
  });
}

/** Reports the error, then stops the control plane and exits (childFatal would leave it running). */
function fatal(err: unknown): void {
  try {
    process.send?.({ ev: 'fatal', error: err instanceof Error ? err.message : String(err) });
  } catch {
    // parent gone
  }
  void close();
}

async function close(): Promise<void> {
  if (desiredTimer) clearInterval(desiredTimer);
  admin?.close();
  await backend?.close();
  dir.remove();
  process.exit(0);
}

// The control plane's processes are this process's children: stop them before going (exitWithParent would not).
process.on('disconnect', () => void close());

process.on('message', (m: { cmd: string } & Record<string, unknown>) => {
  switch (m.cmd) {
    case 'start':
      start(m.devices as Seed[], (m.sampled as string[] | undefined) ?? []).catch(fatal);
      break;
    case 'track':
      track();
      break;
    case 'desired':
      desired(m.names as string[], m.everyMs as number);
      break;
    case 'desired-stop':
      if (desiredTimer) clearInterval(desiredTimer);
      process.send?.({ ev: 'desired-stopped', written: desiredWritten });
      break;
    case 'counts':
      counts().catch(fatal);
      break;
    case 'landed':
      process.send?.({ ev: 'landed', landed: Object.fromEntries(landed) });
      break;
    case 'close':
      close().catch(fatal);
      break;
  }
});
