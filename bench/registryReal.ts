// The registry bench's phases against the real control plane (etcd, kube-apiserver with RBAC, controller-manager,
// scheduler; deploy/ applied), one control plane for every rep: in rep N, KubeDeviceStore runs as the
// leafbridge-agent service account in namespace `bench-leafbridge-N` and the naive baseline writer as the same
// account in `bench-baseline-N` (the agent's Role from deploy/ copied into both), so each rep starts empty.
// kube-apiserver keeps no request log: requests are counted from its apiserver_request_total before and after
// each phase (no per-object label, so per-Device counts are not available here; totals are). The stored state
// is read in etcd, as the double's is read in its store. The two writers run one after the other (one
// apiserver, counters without a namespace label), the outage included: SIGKILL the apiserver, the same two waves
// of changes, then restart it on the same port and etcd.
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeConfig as KubeConfigClass } from '@kubernetes/client-node';
import type { DeviceObject } from '../src/model/resources.js';
import { RealBackend } from '../test/helpers/clusterBackend.js';
import {
  AdminClient,
  etcdDevices,
  isDeviceWrite,
  onlyResource,
  type RequestTotals,
  requestTotals,
  since,
  sumOf,
} from './lib/realApi.js';
import {
  CONFIG,
  converged,
  type Diff,
  deviceObject,
  diffStored,
  minimumWrites,
  NaiveWriter,
  name,
  PARAMS,
  put,
  storeWriter,
  type Wanted,
  waveA,
  waveB,
} from './lib/registryKit.js';
import { now, round1, sleep, tempDir } from './lib/util.js';

export const REAL = {
  /** The real outage is capped: two run one after the other in each rep (the double's default is 60 s too). */
  maxOutageS: 60,
  /** etcd is read this often while waiting for the wanted state (each read is a range over ~1,000 objects). */
  pollMs: 200,
  namespaces: 'bench-leafbridge-N, bench-baseline-N for rep N (the agent Role copied into each)',
};

const namespaceOf = (label: Label, rep: number) => `bench-${label}-${rep}`;

type Label = 'leafbridge' | 'baseline';

interface RealSide extends Wanted {
  label: Label;
  namespace: string;
}

export interface RealSteady {
  ms: number | undefined;
  writes: number;
  writesPerDevice: number;
  requests: RequestTotals;
  matches: boolean;
}

export interface RealBurst {
  ms: number | undefined;
  writes: number;
  /** Total writes / Devices: per-Device counts need a per-object label the counters do not have. */
  meanPerDevice: number;
  requests: RequestTotals;
  lastStateWins: boolean;
}

export interface RealOutage {
  outageS: number;
  changes: number;
  minimumWrites: number;
  /**
   * Not counted on the real server: its client sockets are TLS, which the net.client.socket diagnostics channel
   * (how the double's refused connections are counted) does not report. The writer's own count stands in.
   */
  refusedDuringOutage: undefined;
  failedAttemptsDuringOutage: number;
  /** Restart (process spawned) → kube-apiserver answers /readyz 200. */
  apiserverReadyMs: number | undefined;
  /** Restart → etcd holds exactly the wanted state. */
  convergedMs: number | undefined;
  confirmedMs: number | undefined;
  left: Diff;
  writesAfterRestart: number;
  /** Of those, answered other than 2xx (the apiserver still starting, conflicts). */
  failedWritesAfterRestart: number;
  writesPerChange: number;
  recreated: number;
  requestsAfterRestart: RequestTotals;
  logged?: Record<string, number>;
}

export interface RealFigures {
  outageS: number;
  steady: Partial<Record<Label, RealSteady>>;
  bursts: Partial<Record<Label, RealBurst>>;
  outage: Partial<Record<Label, RealOutage>>;
  error?: string;
}

interface World {
  backend: RealBackend;
  admin: AdminClient;
  /** The leafbridge-agent service account's kubeconfig. */
  agent: KubeConfig;
}

/** Every rep on one control plane, or the error that stopped them. */
export interface RealRun {
  reps: RealFigures[];
  /** Control plane started and deploy/ applied, ms. */
  startMs?: number;
  error?: string;
}

export async function registryReal(
  outageS: number,
  reps: number,
  log: (s: string) => void,
): Promise<RealRun> {
  const run: RealRun = { reps: [] };
  const dir = tempDir('lb-bench-registry-real-');
  let backend: RealBackend | undefined;
  let world: World | undefined;
  try {
    log('  [real] starting etcd + kube-apiserver (RBAC) + controller-manager + scheduler, applying deploy/');
    const t0 = now();
    backend = await RealBackend.start();
    run.startMs = round1(now() - t0);
    const agent = new KubeConfigClass();
    agent.loadFromFile(await backend.kubeconfig(dir.path, 'agent'));
    world = { backend, admin: new AdminClient(backend.cp), agent };
    for (let rep = 1; rep <= reps; rep++) {
      log(`  [real] rep ${rep} of ${reps}`);
      const figures = await realRep(world, rep, outageS, log);
      run.reps.push(figures);
      if (figures.error) {
        run.error = `rep ${rep}: ${figures.error}`;
        break; // the control plane may be left down: no further reps on it
      }
    }
  } catch (err) {
    run.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`  [real] ERROR ${run.error.split('\n')[0]}`);
  } finally {
    world?.admin.close();
    await backend?.close();
    dir.remove();
  }
  return run;
}

/** One rep: each writer in its own fresh namespace, the three phases, the outages one after the other. */
async function realRep(
  world: World,
  rep: number,
  outageS: number,
  log: (s: string) => void,
): Promise<RealFigures> {
  const figures: RealFigures = { outageS, steady: {}, bursts: {}, outage: {} };
  const sides: RealSide[] = [];
  try {
    sides.push(await realSide(world, 'leafbridge', rep), await realSide(world, 'baseline', rep));
    for (const side of sides) {
      log(`  (1) [real] ${side.label}: creating ${PARAMS.devices} Devices`);
      figures.steady[side.label] = await realSteady(world, side);
    }
    for (const side of sides) {
      log(`  (2) [real] ${side.label}: burst (no slowed server: the real one has no fault injection)`);
      figures.bursts[side.label] = await realBurst(world, side);
    }
    for (const side of sides) {
      log(`  (3) [real] ${side.label}: apiserver SIGKILLed for ${outageS} s`);
      figures.outage[side.label] = await realOutage(world, side, outageS, log);
      await side.writer.close(); // its watch would otherwise relist during the next side's outage
    }
  } catch (err) {
    figures.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`  [real] ERROR ${figures.error.split('\n')[0]}`);
  } finally {
    for (const s of sides) {
      await s.writer.close().catch(() => {});
      await Promise.all(s.calls);
    }
  }
  return figures;
}

/** A writer with its own namespace, its DiscoveryConfig there (the Devices' owner), as leafbridge-agent. */
async function realSide(world: World, label: Label, rep: number): Promise<RealSide> {
  const namespace = namespaceOf(label, rep);
  const { admin } = world;
  await grantAgent(admin, namespace);
  const config = await admin.request(
    'POST',
    `/apis/leafbridge.io/v1alpha1/namespaces/${namespace}/discoveryconfigs`,
    {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name: CONFIG, namespace },
      spec: { handler: { name: 'onvif', details: { interface: 'eth1' } } },
    },
  );
  if (config.status !== 201)
    throw new Error(`DiscoveryConfig in ${namespace}: ${config.status} ${JSON.stringify(config.body)}`);
  const uid = (config.body as { metadata: { uid: string } }).metadata.uid;
  const writer =
    label === 'leafbridge'
      ? await storeWriter(world.agent, namespace)
      : new NaiveWriter(world.agent, namespace, uid);
  return { label, namespace, writer, truth: new Map(), calls: [] };
}

/** `namespace`, with deploy/'s leafbridge-agent Role copied into it and bound to the leafbridge-agent account. */
async function grantAgent(admin: AdminClient, namespace: string): Promise<void> {
  const must = async (p: Promise<{ status: number; body: unknown }>, what: string) => {
    const r = await p;
    if (r.status >= 300) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as Record<string, unknown>;
  };
  await must(admin.request('POST', '/api/v1/namespaces', { metadata: { name: namespace } }), 'namespace');
  const rbac = '/apis/rbac.authorization.k8s.io/v1/namespaces';
  const role = await must(admin.request('GET', `${rbac}/leafbridge/roles/leafbridge-agent`), 'agent Role');
  await must(
    admin.request('POST', `${rbac}/${namespace}/roles`, {
      metadata: { name: 'leafbridge-agent', namespace },
      rules: role.rules,
    }),
    'Role copy',
  );
  await must(
    admin.request('POST', `${rbac}/${namespace}/rolebindings`, {
      metadata: { name: 'leafbridge-agent', namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'leafbridge-agent' },
      subjects: [{ kind: 'ServiceAccount', name: 'leafbridge-agent', namespace: 'leafbridge' }],
    }),
    'RoleBinding',
  );
}

async function stored(world: World, side: RealSide): Promise<DeviceObject[]> {
  return (await etcdDevices(world.backend.cp, side.namespace)) as unknown as DeviceObject[];
}

async function realSteady(world: World, side: RealSide): Promise<RealSteady> {
  const before = await requestTotals(world.admin);
  const t0 = now();
  const all = [];
  for (let i = 0; i < PARAMS.devices; i++)
    all.push(put(side, deviceObject(name('d', i), true, undefined, side.namespace)));
  await Promise.all(all);
  const done = await side.writer.idle(PARAMS.timeouts.steadyMs);
  const ms = done ? round1(now() - t0) : undefined;
  const d = since(before, await requestTotals(world.admin));
  const writes = sumOf(d, isDeviceWrite);
  return {
    ms,
    writes,
    writesPerDevice: writes / PARAMS.devices,
    requests: onlyResource(d, 'devices'),
    matches: converged(diffStored(await stored(world, side), side.truth)),
  };
}

async function realBurst(world: World, side: RealSide): Promise<RealBurst> {
  const { devices, changes, spanMs } = PARAMS.burst;
  const step = Math.floor(PARAMS.devices / devices);
  const names = Array.from({ length: devices }, (_, i) => name('d', i * step));
  const before = await requestTotals(world.admin);
  const t0 = now();
  const calls: Promise<unknown>[] = [];
  for (let k = 0; k < changes; k++) {
    const message = `burst change ${k}`;
    for (const n of names) calls.push(put(side, deviceObject(n, k % 2 === 1, message, side.namespace)));
    if (k < changes - 1) await sleep(spanMs / (changes - 1));
  }
  await Promise.all(calls);
  const done = await side.writer.idle(PARAMS.timeouts.burstMs);
  const ms = done ? round1(now() - t0) : undefined;
  const d = since(before, await requestTotals(world.admin));
  const writes = sumOf(d, isDeviceWrite);
  return {
    ms,
    writes,
    meanPerDevice: writes / devices,
    requests: onlyResource(d, 'devices'),
    lastStateWins: converged(diffStored(await stored(world, side), side.truth)),
  };
}

async function realOutage(
  world: World,
  side: RealSide,
  outageS: number,
  log: (s: string) => void,
): Promise<RealOutage> {
  const { cp } = world.backend;
  const storedBefore = await stored(world, side);
  const beforeMap = new Map(storedBefore.map((o) => [o.metadata.name, o]));
  const uids = new Map(storedBefore.map((o) => [o.metadata.name, o.metadata.uid]));
  const attempts = side.writer.failedAttempts();
  world.admin.close(); // no pooled admin connection across the kill
  await cp.killApiserver();
  let changes = waveA(side, side.namespace);
  await sleep((outageS * 1000) / 2);
  changes += waveB(side, side.namespace);
  await sleep((outageS * 1000) / 2);
  const failed = side.writer.failedAttempts() - attempts;
  log(`  (3) [real] ${side.label}: restarting kube-apiserver; waiting for the wanted state in etcd`);
  const restartAt = now();
  let apiserverReadyMs: number | undefined;
  let startFailed: unknown;
  // Handled at once: a restart that times out (a loaded machine) must not reject unobserved while etcd is polled.
  const starting = cp.startApiserver().then(
    () => {
      apiserverReadyMs = round1(now() - restartAt);
    },
    (err: unknown) => {
      startFailed = err ?? new Error('kube-apiserver did not restart');
    },
  );
  let left = diffStored(await stored(world, side), side.truth);
  let convergedMs: number | undefined;
  while (now() - restartAt < PARAMS.timeouts.convergeMs && startFailed === undefined) {
    left = diffStored(await stored(world, side), side.truth);
    if (converged(left)) {
      convergedMs = round1(now() - restartAt);
      break;
    }
    await sleep(REAL.pollMs);
  }
  await starting;
  if (startFailed !== undefined) throw startFailed;
  const idle = await side.writer.idle(PARAMS.timeouts.confirmMs);
  const confirmedMs = idle ? round1(now() - restartAt) : undefined;
  world.admin = new AdminClient(cp);
  // The restarted apiserver's counters start from zero: everything in them came after the restart.
  const after = await requestTotals(world.admin);
  const writes = sumOf(after, isDeviceWrite);
  const after2 = await stored(world, side);
  const minimum = [...minimumWrites(beforeMap, side.truth).values()].reduce((a, b) => a + b, 0);
  const logged = side.writer.log ? Object.fromEntries(side.writer.log.byMsg) : undefined;
  return {
    outageS,
    changes,
    minimumWrites: minimum,
    refusedDuringOutage: undefined,
    failedAttemptsDuringOutage: failed,
    apiserverReadyMs,
    convergedMs,
    confirmedMs,
    left,
    writesAfterRestart: writes,
    failedWritesAfterRestart: sumOf(after, (k) => isDeviceWrite(k) && !k.code.startsWith('2')),
    writesPerChange: writes / changes,
    recreated: after2.filter((o) => {
      const uid = uids.get(o.metadata.name);
      return uid !== undefined && uid !== o.metadata.uid;
    }).length,
    requestsAfterRestart: onlyResource(after, 'devices'),
    ...(logged ? { logged } : {}),
  };
}
