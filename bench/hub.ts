// `npm run bench -- hub [--reps=N] [--steady-s N] [--api real|double|both]`: the cloud twin hub (src/hub/, `leafbridge hub`) under the load.
//   500 simulated edge nodes × 20 devices, each device reporting its twin once a second (10,000 msg/s) through
//   a real mosquitto (Debian's, own process), to one hub replica (own process) writing Device status into the
//   test API server (test/helpers/kubeApiServer.ts, own process, 10,000 Devices seeded).
//   (1) throughput: reported twins handled per second by the hub, against the rate offered (acknowledged by
//       the broker to the edges) and against the baseline;
//   (2) backlog: messages acknowledged by the broker minus messages the hub has taken, sampled every second
//       over the steady window; its growth (least-squares slope) must be ~0;
//   (3) API writes per second against the ceiling of one write per Device per coalescing interval, and how
//       long a report takes to show in its Device's status (sampled devices);
//   (4) desired → edge: every 100 ms a sampled Device's spec.desired is written on the test server, stamped
//       with the time; the simulated edge subscribed to its desired topic measures when it arrives.
// The baseline, in the same run (written here, so a baseline and not a peer product): a plain mqtt.js subscriber
// (own process, non-shared subscription to the same reported topics) doing nothing with what it gets: what the
// broker delivers on this machine under this load.
// Each load step runs --reps times (default 3; a fresh hub each time, on the same seeded API server), the API
// servers in turn within each rep, the baseline just before the hubs in each rep of the full-load step; every
// figure is the median over the reps with its min–max spread, the ladder climbs while the median backlog growth
// meets its target, and the targets are judged on the median (lib/hubReport.ts).
// The simulated edges are MQTT 5 clients publishing exactly what an agent's bridge publishes (the agent's own
// path is measured by `npm run bench -- sync`). Every process runs on 127.0.0.1 on the same 2 cores.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { deviceName } from '../src/model/naming.js';
import { type ProfileSummary, summarizeProfile } from './lib/cpuprofile.js';
import { reportHub } from './lib/hubReport.js';
import type { BenchOptions } from './lib/options.js';
import { type ApiChoice, type ApiPlan, planApis } from './lib/realApi.js';
import { fmt } from './lib/report.js';
import { overRepsOf } from './lib/stats.js';
import {
  BenchChild,
  CpuMeter,
  type CpuSplit,
  freePort,
  lib,
  now,
  round1,
  Scope,
  sleep,
  tempDir,
} from './lib/util.js';

/** `--steady-s N`: how long the measured window lasts (default PARAMS.steadyS). */
export type HubBenchOptions = BenchOptions & { steadyS?: number; api?: ApiChoice };

const PARAMS = {
  nodes: 500,
  devicesPerNode: 20,
  reportsPerDevicePerS: 1,
  prefix: 'leafbridge',
  intervalMs: 1000,
  /** Per load step: edges reporting (each with devicesPerNode devices); ascending, stopped at the first miss. */
  ladder: [100, 250, 500],
  steadyS: 20,
  warmupS: 8,
  baselineS: 10,
  sampleEveryMs: 1000,
  /** Devices whose desired twin is written during the steady window (round-robin), and whose reports are timed. */
  sampleDevices: 50,
  desiredEveryMs: 100,
  drainTimeoutMs: 30_000,
  /**
   * How long the bench waits for a child's answer (counts, metrics, stop): a bound, not a measurement; 10 s
   * was hit at a load average of ~50 on the 2 cores.
   */
  ipcTimeoutMs: 60_000,
  apiHistoryLimit: 20_000,
  mosquitto: {
    version: 'Debian bookworm mosquitto 2.0.x',
    config: [
      'persistence false',
      'max_inflight_messages 1000',
      'max_queued_messages 1000000',
      'max_connections -1',
    ],
    note:
      'max_queued_messages raised from 1000: a subscriber that falls behind by more would lose QoS 1 ' +
      'messages at the broker (counted here as backlog that never drains); max_inflight_messages from 20',
  },
  hub: 'TwinHub defaults (concurrency 32, interval 1 s), logger at warn',
  baseline:
    'one mqtt.js MQTT 5 client, QoS 1, plain (non-shared) subscription to {prefix}/+/devices/+/twin/reported',
};

export const TARGETS = { backlogGrowthPct: 1, desiredP99Ms: 1000 };

// ------------------------------------------------------------------------------------------- broker

async function startMosquitto(scope: Scope): Promise<{ url: string; pid: number }> {
  const dir = scope.add(tempDir('lb-bench-hub-'), (d) => d.remove());
  const port = await freePort();
  const file = join(dir.path, 'mosquitto.conf');
  writeFileSync(
    file,
    [`listener ${port} 127.0.0.1`, 'allow_anonymous true', ...PARAMS.mosquitto.config, ''].join('\n'),
  );
  const child: ChildProcess = spawn('/usr/sbin/mosquitto', ['-c', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-4000);
  });
  scope.add(child, (c) => {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  });
  const deadline = now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null || now() > deadline) throw new Error(`mosquitto did not start: ${log}`);
    await sleep(20);
  }
  return { url: `mqtt://127.0.0.1:${port}`, pid: child.pid ?? 0 };
}

// ------------------------------------------------------------------------------------------ phases

export interface Sample {
  at: number;
  /** Reports acknowledged by the broker to the edges since publishing started. */
  acked: number;
  /** Reports the hub (or the baseline subscriber) has taken since it started. */
  handled: number;
  apiWrites: number;
  pendingDevices: number;
  rssMB: number;
  heapUsedMB: number;
  /** The hub's event-loop delay over the last sampling interval (ms). */
  loopP99Ms: number;
  loopMaxMs: number;
  /** Mean status-write round trip so far (ms). */
  writeMeanMs: number;
  /** Status writes the hub allows in flight now (its governor). */
  writeConcurrency: number;
}

export interface PhaseResult {
  seconds: number;
  offeredPerS: number;
  handledPerS: number;
  cpu: CpuSplit;
  samples: Sample[];
}

export interface HubResult extends PhaseResult {
  nodes: number;
  devices: number;
  /** Devices the hub listed at start (all stored: only `devices` of them report at this step). */
  listed: number;
  readyMs: number;
  backlogSlopePerS: number;
  backlogGrowthPct: number;
  backlogStart: number;
  backlogEnd: number;
  backlogMax: number;
  drainMs: number | undefined;
  /** After that, until no Device has an unwritten change. */
  writesDrainMs: number | undefined;
  apiWritesPerS: number;
  /** The hub's status writes in each ~1 s sampling interval of the steady window, per second. */
  writesPerSecond: Spread;
  /** Device requests the server answered with a non-2xx code, per second (real kube-apiserver only). */
  serverFailedPerS: number | undefined;
  serverStatusPatchesPerS: number;
  ceilingPerS: number;
  pendingDevicesMax: number;
  reportLag: Stats & { missing: number };
  desired: Stats & { written: number };
  peakRssMB: number;
  /** Heap in use after a full GC at the end of the steady window. */
  liveHeapMB: number;
  metrics: Record<string, unknown>;
  profile?: ProfileSummary | string;
}

export interface Stats {
  n: number;
  p50: number | undefined;
  p99: number | undefined;
  max: number | undefined;
}

async function sample(edges: BenchChild, worker: BenchChild): Promise<Sample & { metrics: Metrics }> {
  const [e, w] = await Promise.all([
    edges.request({ cmd: 'counts' }, 'counts', PARAMS.ipcTimeoutMs),
    worker.request({ cmd: 'metrics' }, 'metrics', PARAMS.ipcTimeoutMs),
  ]);
  const m = w.metrics as Metrics;
  return {
    at: now(),
    acked: e.acked as number,
    handled: m.received.reported,
    apiWrites: m.apiWrites ?? 0,
    pendingDevices: m.pendingDevices ?? 0,
    rssMB: round1((w.memory as number) / 2 ** 20),
    heapUsedMB: round1((w.heap as { heapUsedMB?: number } | undefined)?.heapUsedMB ?? 0),
    loopP99Ms: round1((w.loopMs as { p99: number }).p99),
    loopMaxMs: round1((w.loopMs as { max: number }).max),
    writeMeanMs: round1((m.apiWriteMs ?? 0) / Math.max(1, m.apiWrites ?? 0)),
    writeConcurrency: m.writeConcurrency ?? 0,
    metrics: m,
  };
}

type Metrics = {
  received: { reported: number };
  apiWrites?: number;
  apiWriteMs?: number;
  writeConcurrency?: number;
  pendingDevices?: number;
} & Record<string, unknown>;

/** The baseline: a plain subscriber taking the full load, for what the broker delivers here. */
async function baselinePhase(
  scope: Scope,
  url: string,
  edges: BenchChild,
  pids: Record<string, number>,
  log: (s: string) => void,
): Promise<PhaseResult> {
  const worker = new BenchChild('baseline', lib('hubWorker.js'));
  scope.add(worker, (c) => c.stop());
  await worker.request(
    { cmd: 'plain', brokerUrl: url, filter: `${PARAMS.prefix}/+/devices/+/twin/reported` },
    'ready',
    PARAMS.ipcTimeoutMs,
  );
  edges.send({ cmd: 'start', ratePerDevice: PARAMS.reportsPerDevicePerS });
  await sleep(2000);
  log(`  baseline: plain subscriber, ${PARAMS.baselineS} s`);
  const a = await sample(edges, worker);
  const cpu = new CpuMeter({ ...pids, baseline: worker.pid });
  await sleep(PARAMS.baselineS * 1000);
  const b = await sample(edges, worker);
  const split = cpu.stop();
  await edges.request({ cmd: 'stop' }, 'stopped', PARAMS.ipcTimeoutMs);
  await worker.stop();
  const s = (b.at - a.at) / 1000;
  return {
    seconds: round1(s),
    offeredPerS: (b.acked - a.acked) / s,
    handledPerS: (b.handled - a.handled) / s,
    cpu: split,
    samples: [a, b].map(({ metrics: _m, ...x }) => x),
  };
}

/** Where the hub writes: the API server's kubeconfig (the hub's identity on it) and namespace. */
export interface HubTarget {
  kubeconfig: string;
  namespace: string;
  api: BenchChild;
  pids: Record<string, number>;
}

async function hubPhase(
  scope: Scope,
  url: string,
  target: HubTarget,
  edges: BenchChild,
  load: { nodes: number; sampleNames: string[] },
  steadyS: number,
  profile: boolean,
  log: (s: string) => void,
): Promise<HubResult> {
  const { api, pids } = target;
  const sampleNames = load.sampleNames;
  const worker = new BenchChild('hub', lib('hubWorker.js'));
  scope.add(worker, (c) => c.stop(10_000));
  const ready = await worker.request(
    {
      cmd: 'start',
      brokerUrl: url,
      kubeconfig: target.kubeconfig,
      namespace: target.namespace,
      intervalMs: PARAMS.intervalMs,
    },
    'ready',
    120_000,
  );
  log(
    `  hub ready: ${ready.devices} Devices listed in ${fmt(ready.ms as number)} ms; warm-up ${PARAMS.warmupS} s`,
  );
  api.send({ cmd: 'track', names: sampleNames });
  edges.send({ cmd: 'start', ratePerDevice: PARAMS.reportsPerDevicePerS, nodes: load.nodes });
  const samples: Sample[] = [];
  const tick = async () => {
    const { metrics: _m, ...s } = await sample(edges, worker);
    samples.push(s);
    return s;
  };
  const t0 = now();
  while (now() - t0 < PARAMS.warmupS * 1000) {
    await sleep(PARAMS.sampleEveryMs);
    await tick();
  }
  log(`  steady: ${steadyS} s`);
  const steadyFrom = samples.length;
  api.send({ cmd: 'desired', names: sampleNames, everyMs: PARAMS.desiredEveryMs });
  const countsA = await api.request({ cmd: 'counts' }, 'counts', PARAMS.ipcTimeoutMs);
  const first = await tick();
  const cpu = new CpuMeter({ ...pids, hub: worker.pid });
  // The CPU profile covers the last third of the window (the profiler itself costs memory: RSS is read before).
  const profileFrom = first.at + (steadyS * 1000 * 2) / 3;
  let profiling = false;
  let rssBeforeProfile = 0;
  while (now() - first.at < steadyS * 1000) {
    await sleep(PARAMS.sampleEveryMs);
    if (profile && !profiling && now() >= profileFrom) {
      rssBeforeProfile = Math.max(...samples.map((x) => x.rssMB));
      await worker.request({ cmd: 'profile-start' }, 'profiling', PARAMS.ipcTimeoutMs);
      profiling = true;
    }
    const s = await tick();
    log(
      `    t+${fmt((s.at - first.at) / 1000)} s: handled ${fmt(s.handled)}, backlog ${fmt(s.acked - s.handled)}, ` +
        `API writes ${fmt(s.apiWrites)} (mean ${fmt(s.writeMeanMs)} ms, ${s.writeConcurrency} in flight), ` +
        `Devices pending ${fmt(s.pendingDevices)}, ` +
        `event-loop delay p99 ${fmt(s.loopP99Ms)} ms, max ${fmt(s.loopMaxMs)} ms, RSS ${fmt(s.rssMB)} MB ` +
        `(heap ${fmt(s.heapUsedMB)} MB)`,
    );
  }
  const split = cpu.stop();
  const last = samples[samples.length - 1] as Sample;
  const countsB = await api.request({ cmd: 'counts' }, 'counts', PARAMS.ipcTimeoutMs);
  let profiled: ProfileSummary | string | undefined;
  if (profile) {
    const dir = scope.add(tempDir('lb-bench-hub-prof-'), (d) => d.remove());
    const file = join(dir.path, 'hub.cpuprofile');
    const done = await worker.request({ cmd: 'profile-stop', file }, 'profiled', 60_000);
    profiled = done.file ? summarizeProfile(done.file as string) : 'no profile written';
  }
  // RSS grows until V8 runs a full collection; what the hub really holds is the heap after one.
  const live = await worker.request({ cmd: 'gc' }, 'gc', 30_000);
  const desiredStop = await api.request({ cmd: 'desired-stop' }, 'desired-stopped', PARAMS.ipcTimeoutMs);
  const stopped = await edges.request({ cmd: 'stop' }, 'stopped', PARAMS.ipcTimeoutMs);
  // Drain: until the hub has taken every acknowledged report.
  const drainFrom = now();
  let drainMs: number | undefined;
  let final = await sample(edges, worker);
  while (now() - drainFrom < PARAMS.drainTimeoutMs) {
    if (final.handled >= (stopped.acked as number) && final.acked >= (stopped.published as number)) {
      drainMs = now() - drainFrom;
      break;
    }
    await sleep(100);
    final = await sample(edges, worker);
  }
  // Then until every Device's last state is written (the report → status lag counts every sampled report).
  const writesFrom = now();
  let writesDrainMs: number | undefined;
  while (now() - writesFrom < PARAMS.drainTimeoutMs) {
    if (final.pendingDevices === 0) {
      writesDrainMs = now() - writesFrom;
      break;
    }
    await sleep(200);
    final = await sample(edges, worker);
  }
  const [edgeSamples, landed] = await Promise.all([
    edges.request({ cmd: 'samples' }, 'samples', PARAMS.ipcTimeoutMs),
    api.request({ cmd: 'landed' }, 'landed', PARAMS.ipcTimeoutMs),
  ]);
  await worker.stop(10_000);
  const steady = samples.slice(steadyFrom);
  const s = (last.at - first.at) / 1000;
  const offeredPerS = (last.acked - first.acked) / s;
  const backlog = steady.map((x) => ({ t: (x.at - first.at) / 1000, b: x.acked - x.handled }));
  const slope = leastSquaresSlope(
    backlog.map((x) => x.t),
    backlog.map((x) => x.b),
  );
  const devices = load.nodes * PARAMS.devicesPerNode;
  return {
    nodes: load.nodes,
    devices,
    listed: ready.devices as number,
    readyMs: ready.ms as number,
    seconds: round1(s),
    offeredPerS,
    handledPerS: (last.handled - first.handled) / s,
    cpu: split,
    samples,
    backlogSlopePerS: slope,
    backlogGrowthPct: offeredPerS > 0 ? (100 * slope) / offeredPerS : Number.NaN,
    backlogStart: backlog[0]?.b ?? 0,
    backlogEnd: backlog[backlog.length - 1]?.b ?? 0,
    backlogMax: Math.max(...backlog.map((x) => x.b)),
    drainMs,
    writesDrainMs,
    apiWritesPerS: (last.apiWrites - first.apiWrites) / s,
    writesPerSecond: spread(perSecond(steady.map((x) => [x.at, x.apiWrites]))),
    serverFailedPerS:
      countsA.failed === undefined
        ? undefined
        : ((countsB.failed as number) - (countsA.failed as number)) / s,
    serverStatusPatchesPerS: ((countsB.statusPatches as number) - (countsA.statusPatches as number)) / s,
    ceilingPerS: devices / (PARAMS.intervalMs / 1000),
    pendingDevicesMax: Math.max(...steady.map((x) => x.pendingDevices)),
    reportLag: reportLag(
      edgeSamples.reports as Record<string, [number, number][]>,
      landed.landed as Record<string, [number, number][]>,
      first.at,
      last.at,
    ),
    desired: { ...stats(edgeSamples.desiredMs as number[]), written: desiredStop.written as number },
    liveHeapMB: round1(live.heapUsedMB as number),
    peakRssMB: profiling ? rssBeforeProfile : Math.max(...samples.map((x) => x.rssMB)),
    metrics: final.metrics,
    ...(profiled ? { profile: profiled } : {}),
  };
}

/** Per sampled device and report published in [from, to]: time until its version (or a later one) was stored. */
function reportLag(
  reports: Record<string, [number, number][]>,
  landed: Record<string, [number, number][]>,
  from: number,
  to: number,
): Stats & { missing: number } {
  const lags: number[] = [];
  let missing = 0;
  for (const [key, list] of Object.entries(reports)) {
    const [node, id] = key.split('/') as [string, string];
    const stored = landed[deviceName('sensors', id, node)] ?? [];
    for (const [version, at] of list) {
      if (at < from || at > to) continue;
      const hit = stored.find(([v]) => v >= version);
      if (hit) lags.push(hit[1] - at);
      else missing++;
    }
  }
  return { ...stats(lags), missing };
}

export interface Spread {
  n: number;
  median: number | undefined;
  p10: number | undefined;
  p90: number | undefined;
  min: number | undefined;
  max: number | undefined;
}

/** Rates between consecutive [time ms, counter] samples, per second. */
function perSecond(points: [number, number][]): number[] {
  const out: number[] = [];
  for (let i = 1; i < points.length; i++) {
    const [t0, c0] = points[i - 1] as [number, number];
    const [t1, c1] = points[i] as [number, number];
    if (t1 > t0) out.push(((c1 - c0) * 1000) / (t1 - t0));
  }
  return out;
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))))];
  return {
    n: sorted.length,
    median: at(0.5),
    p10: at(0.1),
    p90: at(0.9),
    min: sorted[0],
    max: sorted[sorted.length - 1],
  };
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  return { n: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1] };
}

function leastSquaresSlope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

/**
 * Device `j` of edge `i`. Device names carry 16 hex digits of a hash (src/model/naming.ts); should two
 * ids still share a name, the second gets a suffix (the edges use the same ids).
 */
const taken = new Set<string>();
const deviceId = (i: number, j: number, k: number) => (k === 0 ? `n${i}-s${j}` : `n${i}-s${j}-${k}`);
function seedFor(i: number, j: number): { name: string; id: string; node: string } {
  const node = `edge-${i}`;
  for (let k = 0; ; k++) {
    const id = deviceId(i, j, k);
    const name = deviceName('sensors', id, node);
    if (taken.has(name)) continue;
    taken.add(name);
    return { name, id, node };
  }
}

// ------------------------------------------------------------------------------------------------ run

type Seed = { name: string; id: string; node: string };
type Api = 'double' | 'real';

/** One load step against one API server: each rep's run (a fresh hub each time). */
export interface StepReps {
  nodes: number;
  devices: number;
  reps: HubResult[];
}

/** One API server's ladder: the load steps run, ascending, until the median backlog growth misses its target. */
export interface ApiRun {
  api: Api;
  seedMs?: number;
  steps: StepReps[];
  /** Active Devices of the largest step whose median backlog growth met the target (undefined: none did). */
  largestMetDevices?: number;
  stoppedBecause?: string;
  error?: string;
}

export interface Figures {
  devices: number;
  reps: number;
  apis: ApiPlan;
  connectMs?: number;
  /** The broker alone: what it delivers to a plain subscriber at the full load (not a hub: a baseline), per rep. */
  baseline: PhaseResult[];
  /** The last baseline rep's error, if one failed. */
  baselineError?: string;
  runs: Partial<Record<Api, ApiRun>>;
}

export async function runHub(options: HubBenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const steadyS = options.steadyS ?? PARAMS.steadyS;
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const devices = PARAMS.nodes * PARAMS.devicesPerNode;
  const apis = planApis(options.api);
  const figures: Figures = { devices, reps: options.reps, apis, baseline: [], runs: {} };
  log(
    `hub: up to ${PARAMS.nodes} edges × ${PARAMS.devicesPerNode} devices, ${PARAMS.reportsPerDevicePerS} report/s each; ` +
      `load steps ${PARAMS.ladder.join(', ')} edges, ${PARAMS.warmupS} s warm-up + ${steadyS} s steady each, ` +
      `${options.reps} rep(s) per step`,
  );
  log(`  ${apis.note}`);
  if (apis.error) errors.api = apis.error;
  const scope = new Scope();
  try {
    const broker = await startMosquitto(scope);
    const seeds: Seed[] = [];
    for (let i = 0; i < PARAMS.nodes; i++)
      for (let j = 0; j < PARAMS.devicesPerNode; j++) seeds.push(seedFor(i, j));
    const samples = new Map(PARAMS.ladder.map((n) => [n, sampleOf(seeds, n * PARAMS.devicesPerNode)]));
    const sampledAll = [...new Set([...samples.values()].flat())];
    const edges = scope.add(new BenchChild('edges', lib('hubEdges.js')), (c) => c.stop());
    const connected = await edges.request(
      {
        cmd: 'connect',
        url: broker.url,
        prefix: PARAMS.prefix,
        ids: Array.from({ length: PARAMS.nodes }, (_, i) =>
          seeds.slice(i * PARAMS.devicesPerNode, (i + 1) * PARAMS.devicesPerNode).map((d) => d.id),
        ),
        sample: sampledAll.map((d) => `${d.node}/${d.id}`),
      },
      'connected',
      120_000,
    );
    figures.connectMs = connected.ms as number;
    const ctx = { scope, brokerUrl: broker.url, brokerPid: broker.pid, edges, seeds, samples, steadyS, log };
    const servers: Server[] = [];
    for (const api of ['double', 'real'] as const) {
      if (!apis[api]) continue;
      const { run, server } = await startServer(api, ctx);
      figures.runs[api] = run;
      if (server) servers.push(server);
    }
    await ladder(servers, ctx, figures, options);
  } catch (err) {
    errors.run = err instanceof Error ? (err.stack ?? err.message) : String(err);
  } finally {
    await scope.close();
  }
  return reportHub({ startedAt, options, steadyS, figures, errors, log, params: PARAMS });
}

/**
 * The load steps, ascending; each step --reps times, the servers still climbing in turn within a rep (and the
 * baseline first in each rep of the full-load step). A server stops climbing when its median backlog growth
 * at a step misses the target, or on an error.
 */
async function ladder(servers: Server[], ctx: RunContext, figures: Figures, options: HubBenchOptions) {
  const { log } = ctx;
  const top = PARAMS.ladder[PARAMS.ladder.length - 1] as number;
  let baselineRuns = 0;
  /** One baseline rep; a failed one is said in the run's errors and does not stop the hubs. */
  const baseline = async () => {
    baselineRuns++;
    try {
      const pids = { mosquitto: ctx.brokerPid, edges: ctx.edges.pid };
      figures.baseline.push(await baselinePhase(ctx.scope, ctx.brokerUrl, ctx.edges, pids, log));
    } catch (err) {
      figures.baselineError = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`  baseline: ERROR ${figures.baselineError.split('\n')[0]}`);
      await ctx.edges.request({ cmd: 'stop' }, 'stopped', PARAMS.ipcTimeoutMs).catch(() => {});
    }
  };
  let climbing = servers;
  for (const nodes of PARAMS.ladder) {
    if (climbing.length === 0) break;
    const steps = climbing.map((s) => ({
      server: s,
      step: { nodes, devices: nodes * PARAMS.devicesPerNode, reps: [] } as StepReps,
    }));
    const sample = (ctx.samples.get(nodes) ?? []).map((d) => d.name);
    for (let rep = 1; rep <= options.reps; rep++) {
      if (nodes === top) await baseline();
      for (const { server, step } of steps) {
        if (server.run.error) continue;
        log(
          `  [${server.run.api}] load step: ${nodes} edges × ${PARAMS.devicesPerNode} devices, rep ${rep} of ${options.reps}`,
        );
        const profile = options.profile !== 'never' && nodes === top && rep === options.reps;
        try {
          step.reps.push(
            await hubPhase(
              server.scope,
              ctx.brokerUrl,
              server.target,
              ctx.edges,
              { nodes, sampleNames: sample },
              ctx.steadyS,
              profile,
              log,
            ),
          );
        } catch (err) {
          server.run.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
          log(`  [${server.run.api}] ERROR ${server.run.error.split('\n')[0]}`);
          // The edges may still be publishing for the failed step: stopped, so the next one starts clean.
          await ctx.edges.request({ cmd: 'stop' }, 'stopped', PARAMS.ipcTimeoutMs).catch(() => {});
        }
      }
    }
    for (const { server, step } of steps) if (step.reps.length > 0) server.run.steps.push(step);
    climbing = climbing.filter((server) => {
      if (server.run.error) return false;
      const step = server.run.steps[server.run.steps.length - 1];
      const growth = overRepsOf(step?.reps ?? [], (h) => h.backlogGrowthPct).median;
      if (growth === undefined || !(growth <= TARGETS.backlogGrowthPct)) {
        server.run.stoppedBecause = `median backlog growth ${fmt(growth, 2)}% > ${TARGETS.backlogGrowthPct}% at ${nodes} edges`;
        return false;
      }
      server.run.largestMetDevices = nodes * PARAMS.devicesPerNode;
      return true;
    });
  }
  // The baseline is measured whether or not a hub reached the full load.
  while (baselineRuns < options.reps) await baseline();
  for (const server of servers) await server.scope.close();
}

/** `count` Devices evenly spread over the first `active` seeds: the ones whose reports and desired are timed. */
function sampleOf(seeds: Seed[], active: number): Seed[] {
  const step = Math.max(1, Math.floor(active / PARAMS.sampleDevices));
  return Array.from({ length: Math.min(PARAMS.sampleDevices, active) }, (_, k) => seeds[k * step] as Seed);
}

interface RunContext {
  scope: Scope;
  brokerUrl: string;
  brokerPid: number;
  edges: BenchChild;
  seeds: Seed[];
  samples: Map<number, Seed[]>;
  steadyS: number;
  log: (s: string) => void;
}

/** A started, seeded API server, kept for every step and rep (its children closed with its own scope). */
interface Server {
  run: ApiRun;
  scope: Scope;
  target: HubTarget;
}

/** One API server, started and seeded with every Device; on failure the run says why and no target is set. */
async function startServer(api: Api, ctx: RunContext): Promise<{ run: ApiRun; server?: Server }> {
  const { log } = ctx;
  const run: ApiRun = { api, steps: [] };
  const scope = ctx.scope.add(new Scope(), (s) => s.close());
  try {
    const child = new BenchChild(`api-${api}`, lib(api === 'real' ? 'hubRealApi.js' : 'hubApi.js'));
    scope.add(child, (c) => c.stop(60_000));
    log(
      api === 'real'
        ? `  [real] starting etcd + kube-apiserver (RBAC) + controller-manager + scheduler, applying deploy/, ` +
            `creating ${ctx.seeds.length} Devices in namespace leafbridge`
        : `  [double] seeding ${ctx.seeds.length} Devices on the test API server`,
    );
    const sampled = [...new Set([...ctx.samples.values()].flat().map((d) => d.name))];
    const ready = await child.request(
      { cmd: 'start', devices: ctx.seeds, sampled, historyLimit: PARAMS.apiHistoryLimit },
      'ready',
      600_000,
    );
    run.seedMs = ready.seedMs as number;
    log(`  [${api}] ${ctx.seeds.length} Devices stored in ${fmt(run.seedMs)} ms`);
    const serverPids: Record<string, number> =
      api === 'real' ? { helper: child.pid, ...(ready.pids as Record<string, number>) } : { api: child.pid };
    const target: HubTarget = {
      kubeconfig: ready.kubeconfig as string,
      namespace: ready.namespace as string,
      api: child,
      pids: { mosquitto: ctx.brokerPid, edges: ctx.edges.pid, ...serverPids },
    };
    return { run, server: { run, scope, target } };
  } catch (err) {
    run.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`  [${api}] ERROR ${run.error.split('\n')[0]}`);
    await scope.close();
    return { run };
  }
}
