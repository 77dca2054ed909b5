// `npm run bench -- deviceplugin`: the device-plugin manager as the kubelet sees it.
//   (1) Allocate latency: ~1000 Allocate calls over the real v1beta1 gRPC API on unix sockets, from a minimal
//       kubelet (bench/lib/kubeletClient.ts) to the DevicePluginManager's servers; p50 / p99 / max. The calls
//       rotate over a camera slot via its device resource, the same camera slot via its DiscoveryConfig
//       resource, and a serial slot (with a DeviceSpec) via its device resource; each slot is released (as a
//       gone pod would be) between calls, outside the timing, so no call meets a conflict. Claims are the
//       manager's default, in memory (MemorySlotClaims).
//   (2) offline → Unhealthy: ~50 flips of the camera's status.online in the DeviceRegistry; the time from the
//       registry put to the ListAndWatch message showing every camera slot Unhealthy, on both resources
//       (the later of the two), as the kubelet side receives it. Back online → Healthy is measured alongside.
//   (3) Allocate with claims in the cluster, no conflict: the rotation of (1), with the manager's claims in
//       StoreSlotClaims over a KubeDeviceStore talking to the test API server (test/helpers/kubeApiServer.ts:
//       the Kubernetes REST and watch protocol, in memory, on 127.0.0.1), as the agent wires them in a cluster.
//       The two Devices are on the server (written through that store) and each claim is a conditional
//       status write that lands before Allocate answers. Each slot is released between calls, outside the
//       timing, and the next call waits until the store has nothing pending and the server's status.slots is
//       empty. p50 / p99 / max, the API requests per Allocate (the server's request log) and the parts of an
//       Allocate: the status PATCH's HTTP round trip, the rest of the store's write (its read-your-writes
//       wait for its own watch event), the rest of the claim, and gRPC + manager (Allocate minus the claim).
//       The baseline is (1), measured in the same runs (claims in memory, written here: a baseline, not a peer
//       product): the ratio is cluster / memory, of the medians over the runs.
//   (4) a conflict: two nodes (each a KubeDeviceStore + StoreSlotClaims + DevicePluginManager + kubelet in its
//       own temp device-plugin directory) see one shared camera (capacity 1). ~100 rounds where both kubelets
//       call Allocate on its one slot at the same moment: exactly one must win and the other get
//       RESOURCE_EXHAUSTED (else the bench fails); the loser's time to refusal, the winner's latency, the
//       409s and re-reads per round. The winner releases between rounds, outside the timing, and the next
//       round waits until both stores have nothing pending and neither records a claim.
// Everything runs in this process (the managers, their gRPC servers, the kubelet side and, for (3) and (4),
// the API server): the figures are the manager + gRPC + unix-socket (+ HTTP on 127.0.0.1) path, without a
// kubelet's or a real kube-apiserver's own work.
// Each figure is the median over the runs (--reps) with the min–max spread (bench/lib/stats.ts); targets are
// judged on the median (for a p99: of the per-run p99s), except what must hold in every run ((4) one winner per
// round, its slowest round).
import { performance } from 'node:perf_hooks';
import { status as grpcStatus } from '@grpc/grpc-js';
import { DevicePluginManager } from '../src/deviceplugin/manager.js';
import type { DeviceObject } from '../src/model/resources.js';
import { DeviceRegistry } from '../src/registry/deviceRegistry.js';
import { silentLogger } from '../src/util/logger.js';
import { deviceObject } from '../test/helpers/deviceObjects.js';
import type { KubeApiServer, RequestRecord } from '../test/helpers/kubeApiServer.js';
import { type LatencyStats, latencyStats } from './lib/devices.js';
import {
  type ClaimNode,
  putOnServer,
  Spans,
  STORE_OPTIONS,
  StatusPatchTimer,
  serverSlots,
  startApiServer,
  startNode,
} from './lib/kubeClaims.js';
import { BenchKubelet } from './lib/kubeletClient.js';
import type { BenchOptions } from './lib/options.js';
import { fmt, printTail, type Row, type Target, table, target, writeResults } from './lib/report.js';
import { type OverReps, overRepsOf, repText } from './lib/stats.js';
import { machineInfo, sleep, tempDir } from './lib/util.js';

const NODE = 'bench-node';
const CAM = 'bench-cams-4d5e6f';
const SERIAL = 'bench-serial-1a2b3c';
/** (4): the camera both nodes see, and the nodes. */
const SHARED = 'bench-cams-shared-7a8b9c';
const NODES = ['bench-n1', 'bench-n2'] as const;

const PARAMS = {
  allocateCalls: 1000,
  warmupCalls: 50,
  allocateTimeoutMs: 10_000,
  flips: 50,
  flipTimeoutMs: 2_000,
  /** A random pause before each flip, so flips do not fall in step with anything periodic. */
  flipJitterMaxMs: 20,
  devices: {
    camera: `${CAM} (config bench-cams, capacity 2, 3 properties, 1 mount)`,
    serial: `${SERIAL} (config bench-serial, capacity 1, 2 properties, 1 device node)`,
  },
  rotation: [
    `leafbridge.io/${CAM} [${CAM}-0]`,
    `leafbridge.io/bench-cams [${CAM}-0]`,
    `leafbridge.io/${SERIAL} [${SERIAL}-0]`,
  ],
  cluster: {
    allocateCalls: 1000,
    warmupCalls: 50,
    /** Bound on every wait between calls (a release landing, a Device reaching the server). */
    settleTimeoutMs: 5_000,
    store: `KubeDeviceStore with the agent's defaults but coalesce ${JSON.stringify(STORE_OPTIONS.coalesce)}`,
    storeWhy:
      'releases (queued writes, outside the timing) land at once instead of after the 200 ms quiet time; ' +
      'a claim is a `now` write, which skips the coalescing either way',
  },
  conflict: {
    rounds: 100,
    warmupRounds: 5,
    device: `${SHARED} (config bench-cams, shared, nodes ${NODES.join(' and ')}, capacity 1)`,
    resource: `leafbridge.io/${SHARED} [${SHARED}-0], both kubelets at once, the call order alternating`,
  },
};

const TARGETS = {
  allocateP99Ms: 50,
  offlineToUnhealthyMs: 1_000,
  clusterAllocateP99Ms: 50,
  conflictBadRounds: 0,
  conflictRoundMaxMs: 1_000,
};

function device(name: string, configName: string, spec: Partial<DeviceObject['spec']>): DeviceObject {
  const now = new Date().toISOString();
  return deviceObject(name, {
    configName,
    metadata: { creationTimestamp: now },
    spec: { handler: 'bench', nodes: [NODE], ...spec },
    status: { lastSeen: now },
  });
}

const camera = (online: boolean): DeviceObject => {
  const d = device(CAM, 'bench-cams', {
    capacity: 2,
    properties: { RTSP_URL: 'rtsp://10.0.0.5/stream1', ONVIF_MODEL: 'C100', ONVIF_SERIAL: 'SN-1' },
    mounts: [{ hostPath: '/var/lib/leafbridge/calib', containerPath: '/calib', readOnly: true }],
  });
  return { ...d, status: { ...d.status, online } };
};
const serial = () =>
  device(SERIAL, 'bench-serial', {
    capacity: 1,
    properties: { SERIAL_PORT: '/dev/ttyUSB0', BAUD: '9600' },
    deviceNodes: [{ hostPath: '/dev/ttyUSB0' }],
  });
const sharedCamera = () =>
  device(SHARED, 'bench-cams', {
    shared: true,
    nodes: [...NODES],
    capacity: 1,
    properties: { RTSP_URL: 'rtsp://10.0.0.7/stream1' },
  });

const camR = `leafbridge.io/${CAM}`;
const camConfigR = 'leafbridge.io/bench-cams';
const serialR = `leafbridge.io/${SERIAL}`;

interface Run {
  allocate: LatencyStats;
  allocateFailures: number;
  offline: LatencyStats;
  online: LatencyStats;
}

async function runOnce(log: (s: string) => void): Promise<Run> {
  const dir = tempDir('lb-bench-dp-');
  const kubelet = new BenchKubelet(dir.path);
  const registry = new DeviceRegistry();
  registry.put(camera(true));
  registry.put(serial());
  const manager = new DevicePluginManager({ registry, node: NODE, dir: dir.path, logger: silentLogger() });
  try {
    await kubelet.start();
    await manager.start();
    await kubelet.streaming([camR, camConfigR, serialR, 'leafbridge.io/bench-serial']);

    const rotation: [string, string][] = [
      [camR, `${CAM}-0`],
      [camConfigR, `${CAM}-0`],
      [serialR, `${SERIAL}-0`],
    ];
    const samples: (number | undefined)[] = [];
    let failures = 0;
    const total = PARAMS.warmupCalls + PARAMS.allocateCalls;
    for (let i = 0; i < total; i++) {
      const [resource, slot] = rotation[i % rotation.length] as [string, string];
      const t = performance.now();
      let ms: number | undefined;
      try {
        const r = await kubelet.allocate(resource, [[slot]], PARAMS.allocateTimeoutMs);
        ms = performance.now() - t;
        if (r.container_responses.length !== 1) throw new Error('wrong number of container responses');
      } catch (err) {
        failures++;
        if (failures === 1) log(`    Allocate failed: ${err instanceof Error ? err.message : err}`);
      }
      if (i >= PARAMS.warmupCalls) samples.push(ms);
      await manager.release([slot]);
      if (i % 100 === 0) kubelet.trim();
    }
    const allocate = latencyStats(samples);
    log(
      `    Allocate: p50 ${fmt(allocate.p50, 2)} ms, p99 ${fmt(allocate.p99, 2)} ms (${samples.length} calls)`,
    );

    const offline: (number | undefined)[] = [];
    const online: (number | undefined)[] = [];
    const camSlots = (health: string) => (devices: { ID: string; health: string }[]) => {
      const cams = devices.filter((d) => d.ID.startsWith(`${CAM}-`));
      return cams.length === 2 && cams.every((d) => d.health === health);
    };
    const both = async (health: string, since: number): Promise<number | undefined> => {
      const [a, b] = await Promise.all(
        [camR, camConfigR].map((r) => kubelet.update(r, camSlots(health), since, PARAMS.flipTimeoutMs)),
      );
      return a === undefined || b === undefined ? undefined : Math.max(a, b) - since;
    };
    for (let i = 0; i < PARAMS.flips; i++) {
      await sleep(Math.random() * PARAMS.flipJitterMaxMs);
      let since = performance.now();
      registry.put(camera(false));
      offline.push(await both('Unhealthy', since));
      await sleep(Math.random() * PARAMS.flipJitterMaxMs);
      since = performance.now();
      registry.put(camera(true));
      online.push(await both('Healthy', since));
      kubelet.trim();
    }
    const off = latencyStats(offline);
    log(
      `    offline → Unhealthy: p50 ${fmt(off.p50, 2)} ms, max ${fmt(off.max, 2)} ms (${offline.length} flips)`,
    );
    return { allocate, allocateFailures: failures, offline: off, online: latencyStats(online) };
  } finally {
    await manager.stop();
    await kubelet.stop();
    dir.remove();
  }
}

// ------------------------------------------------------------------------- (3) and (4): claims in the cluster

/** The parts of an Allocate with claims in the cluster (see the header), by key. */
const PARTS = {
  statusPatch: 'status PATCH, HTTP round trip',
  afterPatch: 'store write minus the PATCH (read-your-writes: its own watch event)',
  claimOther: 'claim minus the store write',
  grpcAndManager: 'Allocate minus the claim (gRPC, unix socket, manager)',
} as const;
type Part = keyof typeof PARTS;

interface ClusterAllocate {
  allocate: LatencyStats;
  failures: number;
  /** Allocate calls answered while their claim was not in the server's status.slots. */
  answeredBeforeLanded: number;
  /** API requests during one Allocate: mean and most per call, and the mean per call by request kind. */
  requests: { mean: number; max: number; split: Record<string, number> };
  parts: Record<Part, LatencyStats>;
}

/** `patch/status devices 200`: verb, subresource, resource and the status answered. */
const requestKind = (r: RequestRecord) =>
  `${r.verb}${r.subresource ? `/${r.subresource}` : ''} ${r.resource ?? '(discovery)'} ${r.status}`;

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const round2 = (n: number) => Math.round(n * 100) / 100;

/** (3): the rotation of (1), the claims recorded on the Devices through the test API server. */
async function clusterAllocate(api: KubeApiServer, log: (s: string) => void): Promise<ClusterAllocate> {
  const P = PARAMS.cluster;
  const spans = new Spans();
  const timer = new StatusPatchTimer(spans).start();
  const devices = [camera(true), serial()];
  const node = await startNode(api, NODE, devices, spans);
  try {
    await putOnServer(api, node, [node], devices, P.settleTimeoutMs);
    await node.kubelet.streaming([camR, camConfigR, serialR, 'leafbridge.io/bench-serial']);
    const rotation: [string, string, string][] = [
      [camR, `${CAM}-0`, CAM],
      [camConfigR, `${CAM}-0`, CAM],
      [serialR, `${SERIAL}-0`, SERIAL],
    ];
    const samples: (number | undefined)[] = [];
    const parts = Object.fromEntries(Object.keys(PARTS).map((k) => [k, [] as number[]])) as Record<
      Part,
      number[]
    >;
    const perCall: number[] = [];
    const split: Record<string, number> = {};
    let failures = 0;
    let answeredBeforeLanded = 0;
    for (let i = 0; i < P.warmupCalls + P.allocateCalls; i++) {
      const [resource, slot, device] = rotation[i % rotation.length] as [string, string, string];
      api.clearLog();
      spans.reset();
      const t = performance.now();
      let ms: number | undefined;
      try {
        const r = await node.kubelet.allocate(resource, [[slot]], PARAMS.allocateTimeoutMs);
        ms = performance.now() - t;
        if (r.container_responses.length !== 1) throw new Error('wrong number of container responses');
      } catch (err) {
        ms = undefined;
        failures++;
        if (failures === 1) log(`    Allocate (cluster) failed: ${err instanceof Error ? err.message : err}`);
      }
      const requests = api.requests();
      if (ms !== undefined && serverSlots(api, device)[slot]?.node !== NODE) answeredBeforeLanded++;
      if (i >= P.warmupCalls) {
        samples.push(ms);
        perCall.push(requests.length);
        for (const r of requests) split[requestKind(r)] = (split[requestKind(r)] ?? 0) + 1;
        if (ms !== undefined) addParts(parts, spans, ms);
      }
      await node.manager.release([slot]);
      await settled(api, [node], device, slot);
      if (i % 100 === 0) node.kubelet.trim();
    }
    const allocate = latencyStats(samples);
    log(
      `    Allocate (claims in the cluster): p50 ${fmt(allocate.p50, 2)} ms, p99 ${fmt(allocate.p99, 2)} ms ` +
        `(${samples.length} calls)`,
    );
    return {
      allocate,
      failures,
      answeredBeforeLanded,
      requests: {
        mean: round2(mean(perCall)),
        max: Math.max(0, ...perCall),
        split: Object.fromEntries(Object.entries(split).map(([k, n]) => [k, round2(n / perCall.length)])),
      },
      parts: Object.fromEntries(Object.entries(parts).map(([k, xs]) => [k, latencyStats(xs)])) as Record<
        Part,
        LatencyStats
      >,
    };
  } finally {
    timer.stop();
    await node.stop();
  }
}

/** One Allocate's parts from its spans (a missing span counts as 0: that step did not run). */
function addParts(parts: Record<Part, number[]>, spans: Spans, total: number): void {
  const claim = spans.get('claim') ?? 0;
  const write = spans.get('storeWrite') ?? 0;
  const patch = spans.get('statusPatch') ?? 0;
  parts.statusPatch.push(patch);
  parts.afterPatch.push(write - patch);
  parts.claimOther.push(claim - write);
  parts.grpcAndManager.push(total - claim);
}

/** Resolves once no node has a write pending or records a claim on `device`, and the server has none. */
async function settled(api: KubeApiServer, nodes: ClaimNode[], device: string, slot: string): Promise<void> {
  const ms = PARAMS.cluster.settleTimeoutMs;
  await Promise.all(nodes.map((n) => n.clear(device, ms)));
  if (Object.keys(serverSlots(api, device)).length > 0) {
    throw new Error(`${slot} still claimed on the server after its release landed`);
  }
}

interface ConflictRounds {
  rounds: number;
  winner: LatencyStats;
  /** The loser's time to RESOURCE_EXHAUSTED, from the moment both calls were made. */
  loser: LatencyStats;
  /** Per round the later of the two answers. */
  round: LatencyStats;
  /** 409 answers to status PATCHes per round: mean, most, and how many rounds had 0, 1, … */
  conflicts: { mean: number; max: number; rounds: Record<string, number> };
  /** GETs of the Device per round (a re-read after a 409). */
  rereads: { mean: number; max: number };
  wins: Record<string, number>;
  /** Rounds (warm-up included) without exactly one winner and one RESOURCE_EXHAUSTED, or whose winner is not
   *  the holder on the server. */
  badRounds: number;
  bad: string[];
}

interface Outcome {
  node: string;
  ms: number;
  ok: boolean;
  code?: number;
  message?: string;
}

/** (4): two nodes, one shared camera of capacity 1, both kubelets allocating its slot at the same moment. */
async function conflictRounds(api: KubeApiServer, log: (s: string) => void): Promise<ConflictRounds> {
  const P = PARAMS.conflict;
  const cam = sharedCamera();
  const resource = `leafbridge.io/${SHARED}`;
  const slot = `${SHARED}-0`;
  const nodes: ClaimNode[] = [];
  try {
    for (const n of NODES) nodes.push(await startNode(api, n, [cam]));
    await putOnServer(api, nodes[0] as ClaimNode, nodes, [cam], PARAMS.cluster.settleTimeoutMs);
    await Promise.all(nodes.map((n) => n.kubelet.streaming([resource])));
    const winner: number[] = [];
    const loser: number[] = [];
    const round: number[] = [];
    const conflicts: number[] = [];
    const rereads: number[] = [];
    const wins: Record<string, number> = Object.fromEntries(NODES.map((n) => [n, 0]));
    const bad: string[] = [];
    for (let i = 0; i < P.warmupRounds + P.rounds; i++) {
      const order = i % 2 === 0 ? nodes : [...nodes].reverse();
      api.clearLog();
      const t0 = performance.now();
      const outcomes = await Promise.all(order.map((n) => allocateOnce(n, resource, slot, t0)));
      const won = outcomes.filter((o) => o.ok);
      const lost = outcomes.filter((o) => !o.ok);
      const holder = serverSlots(api, SHARED)[slot]?.node;
      const problem = roundProblem(won, lost, holder);
      if (problem) bad.push(`round ${i + 1}: ${problem}`);
      if (i >= P.warmupRounds) {
        const patches = api.requests({ verb: 'patch', resource: 'devices', subresource: 'status' });
        conflicts.push(patches.filter((r) => r.status === 409).length);
        rereads.push(api.requests({ verb: 'get', resource: 'devices' }).length);
        round.push(Math.max(...outcomes.map((o) => o.ms)));
        if (!problem) {
          const [w, l] = [won[0] as Outcome, lost[0] as Outcome];
          winner.push(w.ms);
          loser.push(l.ms);
          wins[w.node] = (wins[w.node] ?? 0) + 1;
        }
      }
      for (const o of won) await nodes.find((n) => n.name === o.node)?.manager.release([slot]);
      await settled(api, nodes, SHARED, slot);
      if (i % 20 === 0) for (const n of nodes) n.kubelet.trim();
    }
    if (bad.length > 0) log(`    conflict: ${bad.length} bad round(s), first: ${bad[0]}`);
    const result: ConflictRounds = {
      rounds: P.rounds,
      winner: latencyStats(winner),
      loser: latencyStats(loser),
      round: latencyStats(round),
      conflicts: {
        mean: round2(mean(conflicts)),
        max: Math.max(0, ...conflicts),
        rounds: histogram(conflicts),
      },
      rereads: { mean: round2(mean(rereads)), max: Math.max(0, ...rereads) },
      wins,
      badRounds: bad.length,
      bad: bad.slice(0, 10),
    };
    log(
      `    conflict: loser refused p50 ${fmt(result.loser.p50, 2)} ms, p99 ${fmt(result.loser.p99, 2)} ms; ` +
        `409s per round ${fmt(result.conflicts.mean, 2)} (${P.rounds} rounds)`,
    );
    return result;
  } finally {
    for (const n of nodes) await n.stop();
  }
}

async function allocateOnce(node: ClaimNode, resource: string, slot: string, t0: number): Promise<Outcome> {
  try {
    await node.kubelet.allocate(resource, [[slot]], PARAMS.allocateTimeoutMs);
    return { node: node.name, ms: performance.now() - t0, ok: true };
  } catch (err) {
    const e = err as { code?: number; details?: string; message?: string };
    const message = e.details ?? e.message ?? String(err);
    return {
      node: node.name,
      ms: performance.now() - t0,
      ok: false,
      ...(e.code === undefined ? {} : { code: e.code }),
      message,
    };
  }
}

/** What is wrong with a round, if anything: one winner, one RESOURCE_EXHAUSTED, the winner the holder. */
function roundProblem(won: Outcome[], lost: Outcome[], holder: string | undefined): string | undefined {
  if (won.length !== 1) return `${won.length} winners (${won.map((o) => o.node).join(', ')})`;
  const l = lost[0] as Outcome;
  if (l.code !== grpcStatus.RESOURCE_EXHAUSTED) return `${l.node} refused with code ${l.code}: ${l.message}`;
  const w = won[0] as Outcome;
  if (holder !== w.node) return `${w.node} won but the server records ${holder ?? 'no holder'}`;
  return undefined;
}

function histogram(xs: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of [...xs].sort((a, b) => a - b)) out[String(x)] = (out[String(x)] ?? 0) + 1;
  return out;
}

/** (3) and (4) against one test API server. */
async function runCluster(log: (s: string) => void): Promise<ClusterRun> {
  const api = await startApiServer();
  const out: ClusterRun = {};
  try {
    try {
      out.cluster = await clusterAllocate(api, log);
    } catch (err) {
      out.clusterError = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`    Allocate (cluster) failed: ${out.clusterError.split('\n')[0]}`);
    }
    try {
      out.conflict = await conflictRounds(api, log);
    } catch (err) {
      out.conflictError = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`    conflict failed: ${out.conflictError.split('\n')[0]}`);
    }
  } finally {
    await api.close();
  }
  return out;
}

interface ClusterRun {
  cluster?: ClusterAllocate;
  clusterError?: string;
  conflict?: ConflictRounds;
  conflictError?: string;
}

/** One run: (1)+(2) in memory, then (3)+(4) against a test API server. */
interface Rep {
  memory?: Run;
  cluster: ClusterRun;
}

const errorText = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));

/** p50, p99 and max of a latency over the runs, each as median with min–max. */
interface TripleOverReps {
  p50: OverReps;
  p99: OverReps;
  max: OverReps;
}

function tripleOf<T>(
  runs: readonly (T | undefined)[],
  pick: (r: T) => LatencyStats | undefined,
): TripleOverReps {
  return {
    p50: overRepsOf(runs, (r) => pick(r)?.p50),
    p99: overRepsOf(runs, (r) => pick(r)?.p99),
    max: overRepsOf(runs, (r) => pick(r)?.max),
  };
}

/** "p50 / p99 / max" medians, the p99 with its spread over the runs. */
const triple = (t: TripleOverReps | undefined) =>
  `${fmt(t?.p50.median, 2)} / ${t ? repText(t.p99, 2) : 'n/a'} / ${fmt(t?.max.median, 2)}`;
const times = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? 'n/a' : `×${fmt(a / b, 1)}`;

async function runReps(options: BenchOptions, log: (s: string) => void, errors: Record<string, string>) {
  const reps: Rep[] = [];
  for (let rep = 1; rep <= options.reps; rep++) {
    log(`  run ${rep}:`);
    const r: Rep = { cluster: {} };
    try {
      r.memory = await runOnce(log);
    } catch (err) {
      errors[`run ${rep}`] = errorText(err);
      log(`  run ${rep} failed: ${errors[`run ${rep}`]?.split('\n')[0]}`);
    }
    try {
      r.cluster = await runCluster(log);
    } catch (err) {
      errors[`run ${rep} cluster`] = errorText(err);
      log(`  run ${rep} (cluster) failed: ${errors[`run ${rep} cluster`]?.split('\n')[0]}`);
    }
    if (r.cluster.clusterError) errors[`run ${rep} (3)`] = r.cluster.clusterError;
    if (r.cluster.conflictError) errors[`run ${rep} (4)`] = r.cluster.conflictError;
    reps.push(r);
  }
  return reps;
}

/** (3) and (4) over every run: medians with spreads, and what must hold in all of them. */
function clusterSummary(reps: Rep[], errors: Record<string, string>) {
  const withCluster = reps.filter((r) => r.cluster.cluster);
  const failures = withCluster.reduce((n, r) => n + (r.cluster.cluster?.failures ?? 0), 0);
  if (failures > 0)
    errors['allocate (cluster)'] = `${failures} Allocate call(s) with claims in the cluster failed`;
  const early = withCluster.reduce((n, r) => n + (r.cluster.cluster?.answeredBeforeLanded ?? 0), 0);
  if (early > 0)
    errors['claim landing'] = `${early} Allocate call(s) answered before the claim was on the server`;
  const conflicts = reps.flatMap((r) => (r.cluster.conflict ? [r.cluster.conflict] : []));
  const bad = conflicts.length === 0 ? undefined : conflicts.reduce((n, c) => n + c.badRounds, 0);
  if (bad)
    errors.conflict = `${bad} round(s) without exactly one winner: ${conflicts.find((c) => c.bad[0])?.bad[0]}`;
  const requests = overRepsOf(withCluster, (r) => r.cluster.cluster?.requests.mean);
  return {
    allocate: tripleOf(reps, (r) => r.cluster.cluster?.allocate),
    /** (1) of the same runs, claims in memory: the baseline. */
    baseline: tripleOf(reps, (r) => r.memory?.allocate),
    parts: Object.fromEntries(
      (Object.keys(PARTS) as Part[]).map((p) => [p, tripleOf(reps, (r) => r.cluster.cluster?.parts[p])]),
    ) as Record<Part, TripleOverReps>,
    requests,
    requestsMax: overRepsOf(withCluster, (r) => r.cluster.cluster?.requests.max),
    /** Every run made exactly one status patch per Allocate. */
    oneStatusPatch: withCluster.length > 0 && withCluster.every((r) => oneStatusPatch(r.cluster.cluster)),
    requestSplit: withCluster[0]?.cluster.cluster?.requests.split,
    loser: tripleOf(conflicts, (c) => c.loser),
    winner: tripleOf(conflicts, (c) => c.winner),
    conflicts409: overRepsOf(conflicts, (c) => c.conflicts.mean),
    conflicts409Max: overRepsOf(conflicts, (c) => c.conflicts.max),
    rereads: overRepsOf(conflicts, (c) => c.rereads.mean),
    rereadsMax: overRepsOf(conflicts, (c) => c.rereads.max),
    conflictRounds: conflicts.map((c) => c.conflicts.rounds),
    conflictWins: conflicts.map((c) => c.wins),
    conflictRuns: conflicts.length,
    badRounds: bad,
    allRounds: conflicts.reduce((n, c) => n + c.rounds + PARAMS.conflict.warmupRounds, 0),
    roundMax: conflicts.length === 0 ? undefined : Math.max(...conflicts.map((c) => c.round.max ?? Infinity)),
  };
}
type ClusterSummary = ReturnType<typeof clusterSummary>;

/** One status patch per Allocate, nothing else. */
function oneStatusPatch(c: ClusterAllocate | undefined): boolean {
  const kinds = Object.entries(c?.requests.split ?? {});
  return c?.requests.max === 1 && kinds.length === 1 && kinds[0]?.[0] === 'patch/status devices 200';
}

function clusterRows(s: ClusterSummary, passOf: (id: string) => string): Row[] {
  const c = s.allocate;
  const b = s.baseline;
  const parts = (pick: (l: TripleOverReps) => OverReps) =>
    (Object.keys(PARTS) as Part[]).map((p) => fmt(pick(s.parts[p]).median, 2)).join(' / ');
  const row = (measure: string, leafbridge: string, more: Partial<Row> = {}): Row => ({
    measure,
    leafbridge,
    peer: '',
    ratio: '',
    target: '',
    result: '',
    ...more,
  });
  return [
    row('(3) Allocate, claims in the cluster p50 / p99 / max, ms', triple(c), {
      peer: `${fmt(b.p50.median, 2)} / ${fmt(b.p99.median, 2)} / ${fmt(b.max.median, 2)} (1)`,
      ratio: (['p50', 'p99', 'max'] as const).map((k) => times(c[k].median, b[k].median)).join(' / '),
      target: `p99 ≤ ${TARGETS.clusterAllocateP99Ms}`,
      result: passOf('clusterAllocateP99'),
    }),
    row(
      '(3) API requests per Allocate mean / max',
      `${fmt(s.requests.median, 2)} / ${fmt(s.requestsMax.max)}`,
      {
        target: '1 status patch',
        result: s.requests.n > 0 ? (s.oneStatusPatch ? 'as expected' : 'NOT as expected') : '',
      },
    ),
    row(
      '(3) parts p50: PATCH / own watch event / rest of claim / gRPC+manager, ms',
      parts((l) => l.p50),
    ),
    row(
      '(3) parts p99: PATCH / own watch event / rest of claim / gRPC+manager, ms',
      parts((l) => l.p99),
    ),
    row(
      '(4) rounds with one winner and one RESOURCE_EXHAUSTED',
      s.badRounds === undefined ? 'n/a' : `${s.allRounds - s.badRounds} / ${s.allRounds}`,
      { target: 'all', result: passOf('conflictOneWinner') },
    ),
    row("(4) loser's refusal p50 / p99 / max, ms", triple(s.loser)),
    row("(4) winner's Allocate p50 / p99 / max, ms", triple(s.winner)),
    row('(4) slowest round of all runs (the later answer), ms', fmt(s.roundMax, 2), {
      target: `≤ ${TARGETS.conflictRoundMaxMs}`,
      result: passOf('conflictRoundMax'),
    }),
    row('(4) 409s per round mean / max', `${repText(s.conflicts409, 2)} / ${fmt(s.conflicts409Max.max)}`),
    row('(4) re-reads (GET) per round mean / max', `${repText(s.rereads, 2)} / ${fmt(s.rereadsMax.max)}`),
  ];
}

function clusterTargets(s: ClusterSummary): Target[] {
  return [
    target(
      'clusterAllocateP99',
      'Allocate p99 with claims in the cluster (no conflict), median of the runs',
      s.allocate.p99.median,
      '<=',
      TARGETS.clusterAllocateP99Ms,
      'ms',
    ),
    target(
      'conflictOneWinner',
      'conflict rounds without exactly one winner and one RESOURCE_EXHAUSTED (all runs)',
      s.badRounds,
      '<=',
      TARGETS.conflictBadRounds,
      'rounds',
    ),
    target(
      'conflictRoundMax',
      'slowest conflict round, the later of the two answers (all runs)',
      s.roundMax,
      '<=',
      TARGETS.conflictRoundMaxMs,
      'ms',
    ),
  ];
}

function clusterNotes(s: ClusterSummary): string[] {
  const notes = [
    `(3) ${PARAMS.cluster.store}: ${PARAMS.cluster.storeWhy}`,
    '(3) baseline: (1) in the same runs (claims in memory, written here: a baseline, not a peer product); ' +
      'ratio cluster / memory of the medians, for p50 / p99 / max',
  ];
  if (s.requestSplit) {
    const split = Object.entries(s.requestSplit)
      .map(([kind, n]) => `${kind}: ${fmt(n, 2)}`)
      .join(', ');
    notes.push(`(3) run 1 requests per Allocate by kind: ${split || 'none'}`);
  }
  if (s.conflictRounds.length > 0) {
    notes.push(
      `(4) per run: rounds by their number of 409s ${JSON.stringify(s.conflictRounds)}; ` +
        `wins by node ${JSON.stringify(s.conflictWins)}`,
    );
  }
  return notes;
}

export async function runDevicePlugin(options: BenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const machine = machineInfo();
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const notes: string[] = [];
  log(
    `deviceplugin: ${options.reps} run(s) of ${PARAMS.allocateCalls} Allocate calls and ${PARAMS.flips} flips ` +
      `(claims in memory), ${PARAMS.cluster.allocateCalls} Allocate calls (claims in the cluster) and ` +
      `${PARAMS.conflict.rounds} conflict rounds`,
  );

  const reps = await runReps(options, log, errors);
  const runs = reps.flatMap((r) => (r.memory ? [r.memory] : []));
  const allocate = tripleOf(runs, (r) => r.allocate);
  // A run where a flip timed out has no max: it counts as +∞, so it can only raise the median.
  const offline = tripleOf(runs, (r) =>
    r.offline.timedOut === 0 ? r.offline : { ...r.offline, max: Infinity },
  );
  const online = tripleOf(runs, (r) => r.online);
  const failures = runs.reduce((n, r) => n + r.allocateFailures, 0);
  if (failures > 0) errors.allocate = `${failures} Allocate call(s) failed`;
  const summary = clusterSummary(reps, errors);

  const targets: Target[] = [
    target(
      'allocateP99',
      'Allocate p99 (no conflict), median of the runs',
      allocate.p99.median,
      '<=',
      TARGETS.allocateP99Ms,
      'ms',
    ),
    target(
      'offlineToUnhealthy',
      'device offline → slots Unhealthy on the stream (max over flips), median of the runs',
      offline.max.median,
      '<=',
      TARGETS.offlineToUnhealthyMs,
      'ms',
    ),
    ...clusterTargets(summary),
  ];
  const passOf = (id: string) => (targets.find((t) => t.id === id)?.pass ? 'PASS' : 'FAIL');
  const rows: Row[] = [
    {
      measure: '(1) Allocate latency p50 / p99 / max, ms',
      leafbridge: triple(allocate),
      peer: '',
      ratio: '',
      target: `p99 ≤ ${TARGETS.allocateP99Ms}`,
      result: passOf('allocateP99'),
    },
    {
      measure: '(2) offline → Unhealthy p50 / p99 / max, ms',
      leafbridge: `${fmt(offline.p50.median, 2)} / ${fmt(offline.p99.median, 2)} / ${repText(offline.max, 2)}`,
      peer: '',
      ratio: '',
      target: `max ≤ ${TARGETS.offlineToUnhealthyMs}`,
      result: passOf('offlineToUnhealthy'),
    },
    {
      measure: '(2) online → Healthy p50 / max, ms',
      leafbridge: `${fmt(online.p50.median, 2)} / ${fmt(online.max.median, 2)}`,
      peer: '',
      ratio: '',
      target: '',
      result: '',
    },
    ...clusterRows(summary, passOf),
  ];
  log('');
  log(table(rows, { peer: 'baseline' }));
  notes.push(
    'in-process: the managers, their gRPC servers, the kubelet side and the test API server share one Node ' +
      `process (unix sockets, 127.0.0.1); each figure is the median over ${options.reps} run(s), ` +
      '"(median of N; min–max)" where the spread is printed; targets judged on the median',
    ...clusterNotes(summary),
  );
  if (options.profile === 'always') notes.push('profiling: not done for this bench (no agent process)');
  printTail(log, notes, {}, errors);

  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const files = writeResults('deviceplugin', startedAt, {
    machine: { ...machine, loadavgAtEnd: machineInfo().loadavg },
    options,
    params: PARAMS,
    targets,
    pass,
    results: {
      overReps: 'each figure: median, min, max over the runs, and reps (every run in order; null: no value)',
      allocate: { unit: 'ms, Allocate round trip at the kubelet side, per-run p50 / p99 / max', ...allocate },
      offlineToUnhealthy: {
        unit:
          'ms, registry put → stream message with every camera slot Unhealthy (later of 2 resources); ' +
          'a run with a timed-out flip has max +∞ (null)',
        ...offline,
      },
      onlineToHealthy: { unit: 'ms, as above for Healthy', ...online },
      clusterAllocate: {
        unit:
          'ms, Allocate round trip at the kubelet side with claims in the cluster; baseline: (1) of the same ' +
          `runs, claims in memory; parts: ${JSON.stringify(PARTS)}`,
        ...summary.allocate,
        baseline: summary.baseline,
        parts: summary.parts,
        requestsPerAllocate: summary.requests,
      },
      conflict: {
        unit: 'ms from the moment both Allocate calls were made',
        loser: summary.loser,
        winner: summary.winner,
        conflicts409PerRound: summary.conflicts409,
        rereadsPerRound: summary.rereads,
        runs: summary.conflictRuns,
        badRoundsAllRuns: summary.badRounds,
        roundsAllRuns: summary.allRounds,
        slowestRoundAllRuns: summary.roundMax,
      },
      runs: reps,
    },
    errors,
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`deviceplugin: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
