// `npm run bench -- hub [--steady-s N]`: the cloud twin hub (src/hub/, `leafbridge hub`) under the load.
//   500 simulated edge nodes × 20 devices, each device reporting its twin once a second (10,000 msg/s) through
//   a real mosquitto (Debian's, own process), to one hub replica (own process) writing Device status into the
//   test API server (test/helpers/kubeApiServer.ts, own process, 10,000 Devices seeded).
//   (1) throughput: reported twins handled per second by the hub, against the rate offered (acknowledged by
//       the broker to the edges) and against the peer;
//   (2) backlog: messages acknowledged by the broker minus messages the hub has taken, sampled every second
//       over the steady window; its growth (least-squares slope) must be ~0;
//   (3) API writes per second against the ceiling of one write per Device per coalescing interval, and how
//       long a report takes to show in its Device's status (sampled devices);
//   (4) desired → edge: every 100 ms a sampled Device's spec.desired is written on the test server, stamped
//       with the time; the simulated edge subscribed to its desired topic measures when it arrives.
// The peer, in the same run: a plain mqtt.js subscriber (own process, non-shared subscription to the same
// reported topics) doing nothing with what it gets: what the broker delivers on this machine under this load.
// The simulated edges are MQTT 5 clients publishing exactly what an agent's bridge publishes (the agent's own
// path is measured by `npm run bench -- sync`). Every process runs on 127.0.0.1 on the same 2 cores.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { deviceName } from '../src/discovery/naming.js';
import { type ProfileSummary, summarizeProfile } from './lib/cpuprofile.js';
import type { BenchOptions } from './lib/options.js';
import { cpuLine, fmt, printTail, type Row, type Target, table, target, writeResults } from './lib/report.js';
import {
  BenchChild,
  type ChildEvent,
  CpuMeter,
  type CpuSplit,
  freePort,
  lib,
  machineInfo,
  now,
  round1,
  Scope,
  sleep,
  tempDir,
} from './lib/util.js';

/** `--steady-s N`: how long the measured window lasts (default PARAMS.steadyS). */
export type HubBenchOptions = BenchOptions & { steadyS?: number };

const PARAMS = {
  nodes: 500,
  devicesPerNode: 20,
  reportsPerDevicePerS: 1,
  prefix: 'leafbridge',
  intervalMs: 1000,
  steadyS: 30,
  warmupS: 10,
  peerS: 10,
  sampleEveryMs: 1000,
  /** Devices whose desired twin is written during the steady window (round-robin), and whose reports are timed. */
  sampleDevices: 50,
  desiredEveryMs: 100,
  drainTimeoutMs: 60_000,
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
  peer: 'one mqtt.js MQTT 5 client, QoS 1, plain (non-shared) subscription to {prefix}/+/devices/+/twin/reported',
};

const TARGETS = { backlogGrowthPct: 1, desiredP99Ms: 1000 };

// ------------------------------------------------------------------------------------------- peers

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

interface Sample {
  at: number;
  /** Reports acknowledged by the broker to the edges since publishing started. */
  acked: number;
  /** Reports the hub (or the peer) has taken since it started. */
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

interface PhaseResult {
  seconds: number;
  offeredPerS: number;
  handledPerS: number;
  cpu: CpuSplit;
  samples: Sample[];
}

interface HubResult extends PhaseResult {
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

interface Stats {
  n: number;
  p50: number | undefined;
  p99: number | undefined;
  max: number | undefined;
}

async function sample(edges: BenchChild, worker: BenchChild): Promise<Sample & { metrics: Metrics }> {
  const [e, w] = await Promise.all([
    edges.request({ cmd: 'counts' }, 'counts', 10_000),
    worker.request({ cmd: 'metrics' }, 'metrics', 10_000),
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

async function peerPhase(
  scope: Scope,
  url: string,
  edges: BenchChild,
  pids: Record<string, number>,
  log: (s: string) => void,
): Promise<PhaseResult> {
  const worker = new BenchChild('peer', lib('hubWorker.js'));
  scope.add(worker, (c) => c.stop());
  await worker.request(
    { cmd: 'plain', brokerUrl: url, filter: `${PARAMS.prefix}/+/devices/+/twin/reported` },
    'ready',
    10_000,
  );
  edges.send({ cmd: 'start', ratePerDevice: PARAMS.reportsPerDevicePerS });
  await sleep(2000);
  log(`  peer: plain subscriber, ${PARAMS.peerS} s`);
  const a = await sample(edges, worker);
  const cpu = new CpuMeter({ ...pids, peer: worker.pid });
  await sleep(PARAMS.peerS * 1000);
  const b = await sample(edges, worker);
  const split = cpu.stop();
  await edges.request({ cmd: 'stop' }, 'stopped', 10_000);
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

async function hubPhase(
  scope: Scope,
  url: string,
  kubeconfig: string,
  api: BenchChild,
  edges: BenchChild,
  pids: Record<string, number>,
  sampleNames: string[],
  steadyS: number,
  profile: boolean,
  log: (s: string) => void,
): Promise<HubResult> {
  const worker = new BenchChild('hub', lib('hubWorker.js'));
  scope.add(worker, (c) => c.stop(10_000));
  const ready = await worker.request(
    { cmd: 'start', brokerUrl: url, kubeconfig, intervalMs: PARAMS.intervalMs },
    'ready',
    120_000,
  );
  log(
    `  hub ready: ${ready.devices} Devices listed in ${fmt(ready.ms as number)} ms; warm-up ${PARAMS.warmupS} s`,
  );
  api.send({ cmd: 'track', names: sampleNames });
  edges.send({ cmd: 'start', ratePerDevice: PARAMS.reportsPerDevicePerS });
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
  const countsA = await api.request({ cmd: 'counts' }, 'counts', 10_000);
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
      await worker.request({ cmd: 'profile-start' }, 'profiling', 10_000);
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
  const countsB = await api.request({ cmd: 'counts' }, 'counts', 10_000);
  let profiled: ProfileSummary | string | undefined;
  if (profile) {
    const dir = scope.add(tempDir('lb-bench-hub-prof-'), (d) => d.remove());
    const file = join(dir.path, 'hub.cpuprofile');
    const done = await worker.request({ cmd: 'profile-stop', file }, 'profiled', 60_000);
    profiled = done.file ? summarizeProfile(done.file as string) : 'no profile written';
  }
  // RSS grows until V8 runs a full collection; what the hub really holds is the heap after one.
  const live = await worker.request({ cmd: 'gc' }, 'gc', 30_000);
  const desiredStop = await api.request({ cmd: 'desired-stop' }, 'desired-stopped', 10_000);
  const stopped = await edges.request({ cmd: 'stop' }, 'stopped', 10_000);
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
    edges.request({ cmd: 'samples' }, 'samples', 10_000),
    api.request({ cmd: 'landed' }, 'landed', 10_000),
  ]);
  const steady = samples.slice(steadyFrom);
  const s = (last.at - first.at) / 1000;
  const offeredPerS = (last.acked - first.acked) / s;
  const backlog = steady.map((x) => ({ t: (x.at - first.at) / 1000, b: x.acked - x.handled }));
  const slope = leastSquaresSlope(
    backlog.map((x) => x.t),
    backlog.map((x) => x.b),
  );
  const devices = PARAMS.nodes * PARAMS.devicesPerNode;
  return {
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
 * Device `j` of edge `i`. Device names carry 6 hex digits of a hash (src/discovery/naming.ts): among 10,000
 * Devices of one config a few collide, so a colliding id gets a suffix (the edges use the same ids).
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

// --------------------------------------------------------------------------------------------- report

interface Figures {
  devices: number;
  seedMs?: number;
  connectMs?: number;
  peer?: PhaseResult;
  hub?: HubResult;
}

function targetsOf(f: Figures): Target[] {
  const h = f.hub;
  return [
    target(
      'backlog',
      'backlog growth over the steady window (slope), % of the offered rate',
      h?.backlogGrowthPct,
      '<=',
      TARGETS.backlogGrowthPct,
      '%',
    ),
    target(
      'apiWrites',
      `API writes per second, at most one per Device per ${PARAMS.intervalMs} ms interval`,
      h?.apiWritesPerS,
      '<=',
      f.devices / (PARAMS.intervalMs / 1000),
      'writes/s',
    ),
    target(
      'desired',
      'desired written on the server → at the edge, p99',
      h?.desired.p99,
      '<=',
      TARGETS.desiredP99Ms,
      'ms',
    ),
  ];
}

function rows(f: Figures, targets: Target[]): Row[] {
  const h = f.hub;
  const p = f.peer;
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? (t.pass ? 'met' : 'MISSED') : '';
  };
  const row = (measure: string, a: string, b = '', ratio = '', tgt = '', result = ''): Row => ({
    measure,
    leafbridge: a,
    peer: b,
    ratio,
    target: tgt,
    result,
  });
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? '' : `${fmt(a / b, 2)}×`;
  const ms = (v: number | undefined) => fmt(v, 0);
  const s = (v: number | undefined) => fmt(v === undefined ? undefined : v / 1000, 2);
  return [
    row('(1) reports offered, acked by the broker, msg/s', fmt(h?.offeredPerS), fmt(p?.offeredPerS)),
    row(
      '(1) reports handled, msg/s (peer: delivered to a plain subscriber)',
      fmt(h?.handledPerS),
      fmt(p?.handledPerS),
      ratio(h?.handledPerS, p?.handledPerS),
    ),
    row(
      '(2) backlog growth, msg/s (least-squares slope)',
      fmt(h?.backlogSlopePerS, 1),
      '',
      '',
      `≤ ${TARGETS.backlogGrowthPct}% of offered`,
      verdict('backlog'),
    ),
    row(
      '(2) backlog at start / end / max of the window, msgs',
      `${fmt(h?.backlogStart)} / ${fmt(h?.backlogEnd)} / ${fmt(h?.backlogMax)}`,
    ),
    row('(2) drain after the edges stop, ms', ms(h?.drainMs)),
    row('(3) then until every Device is written, ms', ms(h?.writesDrainMs)),
    row(
      '(3) API status writes/s (hub count)',
      fmt(h?.apiWritesPerS),
      '',
      '',
      `≤ ${fmt(h?.ceilingPerS)} (devices/interval)`,
      verdict('apiWrites'),
    ),
    row('(3) PATCH /status seen by the API server, /s', fmt(h?.serverStatusPatchesPerS)),
    row('(3) Devices with an unwritten change, max', fmt(h?.pendingDevicesMax)),
    row(
      '(3) report → Device status, p50 / p99 / max, s',
      `${s(h?.reportLag.p50)} / ${s(h?.reportLag.p99)} / ${s(h?.reportLag.max)}`,
    ),
    row(
      '(4) desired → edge, p50 / p99 / max, ms',
      `${ms(h?.desired.p50)} / ${ms(h?.desired.p99)} / ${ms(h?.desired.max)}`,
      '',
      '',
      `p99 ≤ ${TARGETS.desiredP99Ms}`,
      verdict('desired'),
    ),
    row('hub RSS, peak MB (before any profiling)', fmt(h?.peakRssMB, 1)),
    row('hub heap after a full GC at the end, MB', fmt(h?.liveHeapMB, 1)),
  ];
}

function notesOf(f: Figures): string[] {
  const notes: string[] = [];
  const h = f.hub;
  notes.push(
    `${f.devices} Devices seeded in ${fmt(f.seedMs)} ms; ${PARAMS.nodes} edge connections in ${fmt(f.connectMs)} ms`,
  );
  if (f.peer) notes.push(`peer phase (${f.peer.seconds} s): ${cpuLine(f.peer.cpu)}`);
  if (h) {
    notes.push(`hub phase (${h.seconds} s steady): ${cpuLine(h.cpu)}`);
    notes.push(
      `hub ready (listed + subscribed) in ${fmt(h.readyMs)} ms; report → status lag over ${h.reportLag.n} sampled ` +
        `reports (${h.reportLag.missing} never stored); desired samples ${h.desired.n} of ${h.desired.written} written`,
    );
    const steady = h.samples.filter((x) => x.at >= (h.samples[0]?.at ?? 0) + PARAMS.warmupS * 1000);
    const conc = steady.map((x) => x.writeConcurrency);
    const apiCores = h.cpu.cores.api ?? 0;
    const hubCores = h.cpu.cores.hub ?? 0;
    notes.push(
      `write concurrency (the hub's governor) over the window: min ${Math.min(...conc)}, mean ` +
        `${fmt(conc.reduce((a, b) => a + b, 0) / Math.max(1, conc.length), 1)}, max ${Math.max(...conc)}; ` +
        `CPU per status write in the test API server ${fmt((1000 * apiCores) / Math.max(1, h.apiWritesPerS), 2)} ms; ` +
        `hub CPU ${fmt((1e6 * hubCores) / Math.max(1, h.handledPerS), 0)} µs per message handled (writes included)`,
    );
    notes.push(`hub counters at the end: ${JSON.stringify(h.metrics)}`);
  }
  notes.push(
    'backlog = reports the broker acknowledged to the edges − reports the hub has taken; its slope over the steady ' +
      'window says whether the hub keeps up',
    'the API writes ceiling: one write per Device per coalescing interval (10,000 Devices / 1 s); each device ' +
      'reports once per interval, so coalescing only saves writes when the API server is slower than that',
  );
  return notes;
}

// ------------------------------------------------------------------------------------------------ run

export async function runHub(options: HubBenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const steadyS = options.steadyS ?? PARAMS.steadyS;
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const devices = PARAMS.nodes * PARAMS.devicesPerNode;
  const figures: Figures = { devices };
  log(
    `hub: ${PARAMS.nodes} edges × ${PARAMS.devicesPerNode} devices, ${PARAMS.reportsPerDevicePerS} report/s each, ` +
      `${steadyS} s steady`,
  );
  const scope = new Scope();
  try {
    const broker = await startMosquitto(scope);
    const seeds: { name: string; id: string; node: string }[] = [];
    for (let i = 0; i < PARAMS.nodes; i++)
      for (let j = 0; j < PARAMS.devicesPerNode; j++) seeds.push(seedFor(i, j));
    const step = Math.floor(seeds.length / PARAMS.sampleDevices);
    const sampled = Array.from(
      { length: PARAMS.sampleDevices },
      (_, k) => seeds[k * step] as (typeof seeds)[0],
    );
    const api = scope.add(new BenchChild('api', lib('hubApi.js')), (c) => c.stop(10_000));
    log(`  seeding ${devices} Devices on the test API server`);
    const ready: ChildEvent = await api.request(
      { cmd: 'start', devices: seeds, historyLimit: PARAMS.apiHistoryLimit },
      'ready',
      300_000,
    );
    figures.seedMs = ready.seedMs as number;
    const edges = scope.add(new BenchChild('edges', lib('hubEdges.js')), (c) => c.stop());
    const connected = await edges.request(
      {
        cmd: 'connect',
        url: broker.url,
        prefix: PARAMS.prefix,
        ids: Array.from({ length: PARAMS.nodes }, (_, i) =>
          seeds.slice(i * PARAMS.devicesPerNode, (i + 1) * PARAMS.devicesPerNode).map((d) => d.id),
        ),
        sample: sampled.map((d) => `${d.node}/${d.id}`),
      },
      'connected',
      120_000,
    );
    figures.connectMs = connected.ms as number;
    const pids = { mosquitto: broker.pid, edges: edges.pid, api: api.pid };
    figures.peer = await peerPhase(scope, broker.url, edges, pids, log);
    figures.hub = await hubPhase(
      scope,
      broker.url,
      ready.kubeconfig as string,
      api,
      edges,
      pids,
      sampled.map((d) => d.name),
      steadyS,
      options.profile !== 'never',
      log,
    );
  } catch (err) {
    errors.run = err instanceof Error ? (err.stack ?? err.message) : String(err);
  } finally {
    await scope.close();
  }
  return report(startedAt, options, steadyS, figures, errors, log);
}

function report(
  startedAt: Date,
  options: HubBenchOptions,
  steadyS: number,
  figures: Figures,
  errors: Record<string, string>,
  log: (s: string) => void,
): boolean {
  const targets = targetsOf(figures);
  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const text = table(rows(figures, targets));
  log('');
  log(text);
  const notes = notesOf(figures);
  if (options.reps !== 2) notes.push('--reps is not used: one run');
  const profile = figures.hub?.profile;
  const showProfile = profile !== undefined && (options.profile === 'always' || !pass);
  printTail(log, notes, showProfile ? { 'hub (last third of the steady window)': profile } : {}, errors);
  if (profile !== undefined && !showProfile) log('  (hub CPU profile taken; in the JSON)');
  const files = writeResults('hub', startedAt, {
    machine: machineInfo(),
    options: { ...options, steadyS },
    params: PARAMS,
    targets,
    pass,
    results: figures,
    table: text.split('\n'),
    notes,
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`hub: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
