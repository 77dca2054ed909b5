// The test API server (test/helpers/kubeApiServer.ts: the Kubernetes REST/watch protocol, in memory) in a
// process of its own for `npm run bench -- hub`, with the bench's Devices seeded. Forked with an IPC channel.
//   {cmd:'start', devices: [{name, id, node}], historyLimit}   -> {ev:'ready', kubeconfig, namespace, seedMs}
//   {cmd:'track', names}                     -> (first call only) records when each of these Devices' status.reported.$version changes
//   {cmd:'desired', names, everyMs}          -> writes spec.desired {$version, setAt} round-robin over `names`
//   {cmd:'desired-stop'}                     -> {ev:'desired-stopped', written}
//   {cmd:'counts'}                           -> {ev:'counts', statusPatches, otherWrites, reads, at}
//   {cmd:'landed'}                           -> {ev:'landed', landed: {name: [[version, at], ...]}}
//   {cmd:'close'}                            -> closes the server and exits
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdManifests } from '../../src/install/crds.js';
import { KubeApiServer } from '../../test/helpers/kubeApiServer.js';
import { type Seed, seedDevice, seedStatus } from './hubSeed.js';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

const NS = 'default';

let api: KubeApiServer | undefined;
let desiredTimer: NodeJS.Timeout | undefined;
let desiredWritten = 0;
let tracking = false;
const counted = { statusPatches: 0, otherWrites: 0, reads: 0 };
const landed = new Map<string, [number, number][]>();

async function start(devices: Seed[], historyLimit: number): Promise<void> {
  const server = await KubeApiServer.start({
    crds: crdManifests(builtinHandlers),
    historyLimit,
    bookmarkIntervalMs: 5000,
  });
  api = server;
  const started = now();
  const t = server.type('devices');
  for (const d of devices) {
    server.seed('devices', seedDevice(d, NS));
    server.resources.patch(
      t,
      NS,
      d.name,
      'application/merge-patch+json',
      { status: seedStatus(d) },
      { subresource: 'status' },
    );
  }
  server.clearLog();
  process.send?.({ ev: 'ready', kubeconfig: server.kubeconfig(NS), namespace: NS, seedMs: now() - started });
}

/** Records, per tracked Device, each new status.reported.$version with the time the server stored it. */
function track(names: string[]): void {
  if (tracking) return; // once: the hub phase asks again at each load step
  tracking = true;
  const server = api as KubeApiServer;
  const wanted = new Set(names);
  server.resources.watch(
    server.type('devices'),
    NS,
    { resourceVersion: String(server.store.currentRv) },
    (e) => {
      const o = e.object as { metadata?: { name?: string }; status?: { reported?: { $version?: unknown } } };
      const name = o.metadata?.name;
      const v = o.status?.reported?.$version;
      if (!name || !wanted.has(name) || typeof v !== 'number') return;
      const list = landed.get(name) ?? [];
      if (list[list.length - 1]?.[0] !== v) list.push([v, now()]);
      landed.set(name, list);
    },
  );
}

/** Writes a new desired twin for one of `names` every `everyMs`, stamped with when it was written. */
function desired(names: string[], everyMs: number): void {
  const server = api as KubeApiServer;
  const t = server.type('devices');
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
    server.resources.patch(t, NS, name, 'application/merge-patch+json', body, {});
    desiredWritten++;
  }, everyMs);
}

/** Requests since the last count, added up (the request log is cleared each time: it would grow ~10k/s). */
function counts(): void {
  const server = api as KubeApiServer;
  for (const r of server.requests()) {
    if (r.verb === 'patch' && r.subresource === 'status') counted.statusPatches++;
    else if (['create', 'update', 'patch', 'delete'].includes(r.verb)) counted.otherWrites++;
    else counted.reads++;
  }
  server.clearLog();
  process.send?.({ ev: 'counts', ...counted, at: now() });
}

process.on('message', (m: { cmd: string } & Record<string, unknown>) => {
  try {
    switch (m.cmd) {
      case 'start':
        start(m.devices as Seed[], m.historyLimit as number).catch(childFatal);
        break;
      case 'track':
        track(m.names as string[]);
        break;
      case 'desired':
        desired(m.names as string[], m.everyMs as number);
        break;
      case 'desired-stop':
        if (desiredTimer) clearInterval(desiredTimer);
        process.send?.({ ev: 'desired-stopped', written: desiredWritten });
        break;
      case 'counts':
        counts();
        break;
      case 'landed':
        process.send?.({ ev: 'landed', landed: Object.fromEntries(landed) });
        break;
      case 'close':
        if (desiredTimer) clearInterval(desiredTimer);
        void (api?.close() ?? Promise.resolve()).finally(() => process.exit(0));
        break;
    }
  } catch (err) {
    childFatal(err);
  }
});
