// `npm run bench -- registry [--reps=N] [--outage-s N] [--api real|double|both]`: what the Kubernetes-backed
// device registry (KubeDeviceStore) costs the API server, and how fast it puts the server right after an outage.
//   (1) steady state: 1,000 new Devices upserted at once: time until every write landed, API writes per device
//       split by verb and subresource (the Device CRD has a status subresource, so a create ignores status and
//       a new Device costs a create plus a /status write), and the reads that came with them
//   (2) change bursts: 200 Devices, 10 status flips each within ~100 ms; API writes per Device per burst (mean,
//       max, the worst Device), once against a fast server and once against one that delays every request
//   (3) outage: 1,000 Devices stored, the server taken down (down()) for `--outage-s` (default 60 s: see
//       PARAMS.outage in lib/registryKit.ts for why a longer one measures the same); during it 100 Devices
//       vanish, 100 are new and 300 change status (two waves); then up() and the time until the server's
//       stored objects equal the wanted state exactly (none missing, none extra, none stale), polled in the
//       server's storage every `pollMs`; writes after up() against the fewest that could do it; connection
//       attempts during the outage (refused, so the server cannot log them: counted on this process's client
//       sockets through the net.client.socket diagnostics channel)
// Each rep (--reps, default 3) runs the three phases on fresh servers; every figure is the median over the reps
// with its min–max spread, and the targets are judged on the median (lib/registryReport.ts).
// The baseline, in the same run (written here, so a baseline and not a peer product): a naive writer
// (bench-local) that sends one request per change through
// client-node, with no coalescing, per Device in order, each request retried every second until it lands. It
// runs the same three phases against its own test API server; its outage runs at the same time as the
// store's (both servers go down and up together), the other phases one after the other.
// Everything is in this process, on 127.0.0.1: the test API server (test/helpers/kubeApiServer.ts: the real
// REST/watch protocol, in memory; every request it answers is in its request log) and the writers.
import { KubeConfig } from '@kubernetes/client-node';
import { builtinHandlers } from '../src/builtinHandlers.js';
import { crdManifests } from '../src/install/crds.js';
import { API_VERSION, type DeviceObject } from '../src/model/resources.js';
import { KubeApiServer, type RequestRecord } from '../test/helpers/kubeApiServer.js';
import type { BenchOptions } from './lib/options.js';
import { type ApiChoice, type ApiPlan, planApis } from './lib/realApi.js';
import { compareTable, realNotes, realSummaryOf, realTargets } from './lib/registryCompare.js';
import {
  CONFIG,
  Connections,
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
import { doubleTable, notesOf, summaryOf, targetsOf } from './lib/registryReport.js';
import { fmt, printTail, writeResults } from './lib/report.js';
import { medianRun } from './lib/stats.js';
import { machineInfo, now, round1, sleep } from './lib/util.js';
import { REAL, type RealRun, registryReal } from './registryReal.js';

/** `--outage-s N` on the command line: how long the outage lasts (default PARAMS.outage.defaultS). */
export type RegistryBenchOptions = BenchOptions & { outageS?: number; api?: ApiChoice };

const NS = 'default';

function kubeConfigFor(api: KubeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig(NS));
  return kc;
}

// ---------------------------------------------------------------------------------- one side's world

interface Side extends Wanted {
  label: 'leafbridge' | 'baseline';
  api: KubeApiServer;
}

async function startSide(label: Side['label']): Promise<Side> {
  const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
  const config = api.seed('discoveryconfigs', {
    apiVersion: API_VERSION,
    kind: 'DiscoveryConfig',
    metadata: { name: CONFIG, namespace: NS },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } } },
  });
  const kc = kubeConfigFor(api);
  const writer =
    label === 'leafbridge' ? await storeWriter(kc, NS) : new NaiveWriter(kc, NS, config.metadata.uid);
  return { label, api, writer, truth: new Map(), calls: [] };
}

const WRITES = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
const isWrite = (r: RequestRecord) => WRITES.has(r.verb);
const verbKey = (r: RequestRecord) =>
  `${r.verb}${r.subresource ? `/${r.subresource}` : ''} ${r.resource ?? '(discovery)'}`;

/** Requests in the server's log by verb[/subresource] and resource, e.g. `patch/status devices: 1000`. */
function requestSplit(api: KubeApiServer): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of api.requests()) out[verbKey(r)] = (out[verbKey(r)] ?? 0) + 1;
  return out;
}

/** Write requests to Devices per Device name, from the server's log. */
function writesByDevice(api: KubeApiServer): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of api.requests({ resource: 'devices' }))
    if (isWrite(r) && r.name) out.set(r.name, (out.get(r.name) ?? 0) + 1);
  return out;
}

// ------------------------------------------------------------------------------------- (1) steady state

export interface Steady {
  ms: number | undefined;
  writes: number;
  writesPerDevice: number;
  requests: Record<string, number>;
  matches: boolean;
}

async function steady(side: Side): Promise<Steady> {
  side.api.clearLog();
  const t0 = now();
  const all = [];
  for (let i = 0; i < PARAMS.devices; i++) all.push(put(side, deviceObject(name('d', i))));
  await Promise.all(all);
  const done = await side.writer.idle(PARAMS.timeouts.steadyMs);
  const ms = done ? round1(now() - t0) : undefined;
  const writes = side.api.writes('devices');
  return {
    ms,
    writes,
    writesPerDevice: writes / PARAMS.devices,
    requests: requestSplit(side.api),
    matches: converged(diff(side)),
  };
}

// --------------------------------------------------------------------------------------- (2) bursts

export interface Burst {
  slowMs: number;
  /** From the first change to the last one asked for. */
  issuedMs: number;
  ms: number | undefined;
  writes: number;
  meanPerDevice: number;
  maxPerDevice: number;
  worstDevice: string | undefined;
  /** Devices by write count: { "2": 180, "3": 20 }. */
  histogram: Record<string, number>;
  requests: Record<string, number>;
  lastStateWins: boolean;
}

async function burst(side: Side, round: number, slowMs: number): Promise<Burst> {
  const { devices, changes, spanMs } = PARAMS.burst;
  const step = Math.floor(PARAMS.devices / devices);
  const names = Array.from({ length: devices }, (_, i) => name('d', i * step));
  side.api.clearLog();
  side.api.slow(slowMs);
  const t0 = now();
  const calls: Promise<unknown>[] = [];
  for (let k = 0; k < changes; k++) {
    const message = `burst ${round} change ${k}`;
    for (const n of names) calls.push(put(side, deviceObject(n, k % 2 === 1, message)));
    if (k < changes - 1) await sleep(spanMs / (changes - 1));
  }
  const issuedMs = round1(now() - t0);
  await Promise.all(calls);
  const done = await side.writer.idle(PARAMS.timeouts.burstMs);
  const ms = done ? round1(now() - t0) : undefined;
  side.api.slow(0);
  const per = writesByDevice(side.api);
  const counts = names.map((n) => per.get(n) ?? 0);
  const max = Math.max(...counts);
  const histogram: Record<string, number> = {};
  for (const c of counts) histogram[c] = (histogram[c] ?? 0) + 1;
  return {
    slowMs,
    issuedMs,
    ms,
    writes: counts.reduce((a, b) => a + b, 0),
    meanPerDevice: counts.reduce((a, b) => a + b, 0) / counts.length,
    maxPerDevice: max,
    worstDevice: names[counts.indexOf(max)],
    histogram,
    requests: requestSplit(side.api),
    lastStateWins: converged(diff(side)),
  };
}

// --------------------------------------------------------------------------------------- (3) outage

export interface Outage {
  outageS: number;
  changes: number;
  /** Write requests the fewest that could bring the server from its state at down() to the wanted one. */
  minimumWrites: number;
  /** Connections refused during the outage: requests that could not be sent (the server logs none of them). */
  refusedDuringOutage: number;
  /** Requests that got no answer as the writer itself reports them (the store: its warn lines). */
  failedAttemptsDuringOutage: number;
  firstRequestMs: number | undefined;
  firstWriteOkMs: number | undefined;
  watchBackMs: number | undefined;
  convergedMs: number | undefined;
  confirmedMs: number | undefined;
  left: Diff;
  writesAfterUp: number;
  writesPerChange: number;
  worstExtra: { device: string | undefined; writes: number; minimum: number };
  recreated: number;
  requestsAfterUp: Record<string, number>;
  /** The store's warn lines by message (leafbridge only). */
  logged?: Record<string, number>;
}

/** The server's stored Devices against the wanted state (read in its storage, not copied, not logged). */
function diff(side: Side): Diff {
  return diffStored(
    side.api.store.all(side.api.type('devices'), NS) as unknown as DeviceObject[],
    side.truth,
  );
}

interface Watching {
  firstRequestMs?: number;
  firstWriteOkMs?: number;
  watchBackMs?: number;
  convergedMs?: number;
  left: Diff;
}

/** After up(): polls the request log and the storage until the server holds the wanted state. */
async function watchRecovery(side: Side, upAt: number): Promise<Watching> {
  const w: Watching = { left: diff(side) };
  const deadline = upAt + PARAMS.timeouts.convergeMs;
  while (now() < deadline) {
    const t = round1(now() - upAt);
    const log = side.api.requests();
    if (w.firstRequestMs === undefined && log.length > 0) w.firstRequestMs = t;
    if (w.firstWriteOkMs === undefined && log.some((r) => isWrite(r) && r.status >= 200 && r.status < 300))
      w.firstWriteOkMs = t;
    if (w.watchBackMs === undefined && side.api.openWatches > 0) w.watchBackMs = t;
    w.left = diff(side);
    if (converged(w.left)) {
      w.convergedMs = t;
      return w;
    }
    await sleep(PARAMS.pollMs);
  }
  return w;
}

/** One side's state as the outage starts, and what it did while the server was down. */
interface Before {
  stored: Map<string, DeviceObject>;
  uids: Map<string, string>;
  attempts: number;
  refused: number;
  changes: number;
}

function beforeOutage(side: Side, connections: Connections): Before {
  const objects = side.api.objects('devices', NS) as unknown as DeviceObject[];
  return {
    stored: new Map(objects.map((o) => [o.metadata.name, o])),
    uids: new Map(objects.map((o) => [o.metadata.name, o.metadata.uid])),
    attempts: side.writer.failedAttempts(),
    refused: connections.refused.get(side.api.port) ?? 0,
    changes: 0,
  };
}

/** Both sides' servers go down together, take the same changes, and come up together. */
async function outage(
  sides: Side[],
  outageS: number,
  connections: Connections,
  log: (s: string) => void,
): Promise<Outage[]> {
  const before = sides.map((s) => beforeOutage(s, connections));
  await Promise.all(sides.map((s) => s.api.down()));
  log(`  (3) servers down for ${outageS} s; wave A of changes`);
  sides.forEach((s, i) => {
    (before[i] as Before).changes += waveA(s);
  });
  await sleep((outageS * 1000) / 2);
  log('  (3) wave B of changes');
  sides.forEach((s, i) => {
    (before[i] as Before).changes += waveB(s);
  });
  await sleep((outageS * 1000) / 2);
  const during = sides.map((s, i) => ({
    failed: s.writer.failedAttempts() - (before[i] as Before).attempts,
    refused: (connections.refused.get(s.api.port) ?? 0) - (before[i] as Before).refused,
  }));
  for (const s of sides) s.api.clearLog();
  await Promise.all(sides.map((s) => s.api.up()));
  const upAt = now();
  log('  (3) servers up; waiting for the wanted state');
  return Promise.all(
    sides.map(async (s, i) => {
      const seen = await watchRecovery(s, upAt);
      const idle = await s.writer.idle(PARAMS.timeouts.confirmMs);
      const confirmedMs = idle ? round1(now() - upAt) : undefined;
      return outageResult(s, outageS, before[i] as Before, {
        ...seen,
        ...(during[i] as { failed: number; refused: number }),
        confirmedMs,
      });
    }),
  );
}

type After = Watching & { failed: number; refused: number; confirmedMs: number | undefined };

function outageResult(side: Side, outageS: number, before: Before, after: After): Outage {
  const minimum = minimumWrites(before.stored, side.truth);
  let worst = { device: undefined as string | undefined, writes: 0, minimum: 0 };
  for (const [n, writes] of writesByDevice(side.api)) {
    const min = minimum.get(n) ?? 0;
    if (writes - min > worst.writes - worst.minimum) worst = { device: n, writes, minimum: min };
  }
  const recreated = side.api.objects('devices', NS).filter((o) => {
    const uid = before.uids.get(o.metadata.name);
    return uid !== undefined && uid !== o.metadata.uid;
  }).length;
  const writesAfterUp = side.api.writes('devices');
  const logged = side.writer.log ? Object.fromEntries(side.writer.log.byMsg) : undefined;
  return {
    outageS,
    changes: before.changes,
    minimumWrites: [...minimum.values()].reduce((a, b) => a + b, 0),
    refusedDuringOutage: after.refused,
    failedAttemptsDuringOutage: after.failed,
    firstRequestMs: after.firstRequestMs,
    firstWriteOkMs: after.firstWriteOkMs,
    watchBackMs: after.watchBackMs,
    convergedMs: after.convergedMs,
    confirmedMs: after.confirmedMs,
    left: after.left,
    writesAfterUp,
    writesPerChange: writesAfterUp / before.changes,
    worstExtra: worst,
    recreated,
    requestsAfterUp: requestSplit(side.api),
    ...(logged ? { logged } : {}),
  };
}

// ------------------------------------------------------------------------------------------------ run

/** One rep's figures: each phase once per writer. */
export interface Figures {
  steady: Partial<Record<Side['label'], Steady>>;
  bursts: Partial<Record<Side['label'], Burst[]>>;
  outage: Partial<Record<Side['label'], Outage>>;
}

export async function runRegistry(options: RegistryBenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const machineAtStart = machineInfo();
  const outageS = options.outageS ?? PARAMS.outage.defaultS;
  const realOutageS = Math.min(outageS, REAL.maxOutageS);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const apis = planApis(options.api);
  if (apis.error) errors.api = apis.error;
  log(
    `registry: ${PARAMS.devices} Devices, bursts of ${PARAMS.burst.changes} × ${PARAMS.burst.devices}, ` +
      `${outageS} s outage (double)${apis.real ? `, ${realOutageS} s (real)` : ''}; ${options.reps} rep(s)`,
  );
  log(`  ${apis.note}`);
  log(`  ${costLine(options.reps, outageS, realOutageS, apis)}`);
  const connections = new Connections();
  connections.start();
  const double: Figures[] = [];
  if (apis.double)
    for (let rep = 1; rep <= options.reps; rep++) {
      log(`  [double] rep ${rep} of ${options.reps}`);
      const f = await doubleRep(outageS, connections, log);
      if (f.error) errors[`double rep ${rep}`] = f.error;
      double.push(f.figures);
    }
  const real = apis.real ? await registryReal(realOutageS, options.reps, log) : undefined;
  if (real?.error) errors.real = real.error;
  connections.stop();
  return report({ startedAt, machineAtStart, options, outageS, apis, double, real, errors, log });
}

/**
 * What a run costs, said before it starts: the outages are most of it (the double's two writers are down at
 * once, the real server's one after the other), the rest is set-up and the other phases (~1 min per rep here).
 */
function costLine(reps: number, outageS: number, realOutageS: number, apis: ApiPlan): string {
  const double = apis.double ? reps * outageS : 0;
  const real = apis.real ? reps * 2 * realOutageS : 0;
  const minutes = (double + real) / 60;
  return (
    `cost: ${fmt(minutes, 0)} min of outage (${apis.double ? `double ${reps} × ${outageS} s` : ''}` +
    `${apis.double && apis.real ? ', ' : ''}${apis.real ? `real ${reps} × 2 × ${realOutageS} s` : ''}) ` +
    'plus set-up and the other phases; docs/performance.md has what a default run took'
  );
}

/** One rep against two fresh test doubles, one per writer: the three phases (their outages at once). */
async function doubleRep(
  outageS: number,
  connections: Connections,
  log: (s: string) => void,
): Promise<{ figures: Figures; error?: string }> {
  const figures: Figures = { steady: {}, bursts: {}, outage: {} };
  const sides: Side[] = [];
  try {
    sides.push(await startSide('leafbridge'), await startSide('baseline'));
    for (const side of sides) {
      log(`  (1) [double] ${side.label}: creating ${PARAMS.devices} Devices`);
      figures.steady[side.label] = await steady(side);
    }
    let round = 0;
    for (const slowMs of [0, PARAMS.burst.slowMs])
      for (const side of sides) {
        log(`  (2) [double] ${side.label}: burst, server +${slowMs} ms per request`);
        const done = figures.bursts[side.label] ?? [];
        done.push(await burst(side, ++round, slowMs));
        figures.bursts[side.label] = done;
      }
    const results = await outage(sides, outageS, connections, log);
    sides.forEach((s, i) => {
      figures.outage[s.label] = results[i];
    });
    return { figures };
  } catch (err) {
    return { figures, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  } finally {
    for (const s of sides) {
      await s.writer.close();
      await Promise.all(s.calls);
      await s.api.close();
    }
  }
}

interface ReportInput {
  startedAt: Date;
  machineAtStart: ReturnType<typeof machineInfo>;
  options: RegistryBenchOptions;
  outageS: number;
  apis: ApiPlan;
  double: Figures[];
  real: RealRun | undefined;
  errors: Record<string, string>;
  log: (s: string) => void;
}

function report(input: ReportInput): boolean {
  const { startedAt, machineAtStart, options, outageS, apis, double, real, errors, log } = input;
  const targets = [...(apis.double ? targetsOf(double) : []), ...(real ? realTargets(real.reps) : [])];
  const text = apis.double ? doubleTable(double, targets) : '';
  const compared = compareTable(double, real?.reps ?? [], targets);
  if (text) {
    log(
      '\ntest double, in detail (each figure the median of the reps, min–max in brackets; "baseline" = the ' +
        'bench-local naive writer, not a peer product)',
    );
    log(text);
  }
  log(
    '\nside by side: leafbridge (KubeDeviceStore) and the naive baseline, test double and real kube-apiserver',
  );
  log(compared);
  // The details (requests by verb, histograms) of the rep whose leafbridge convergence time is the median.
  const pickConverged = (f: Figures) => f.outage.leafbridge?.convergedMs ?? Number.POSITIVE_INFINITY;
  const median = medianRun(double, pickConverged);
  const notes = [apis.note];
  if (median)
    notes.push(
      `details of double rep ${double.indexOf(median) + 1} (its leafbridge convergence time is the median):`,
      ...notesOf(median),
    );
  notes.push(
    '(3) connections refused: every client socket of this process to that server port that got ECONNREFUSED ' +
      '(writes, probes, lists and watches alike); the server cannot log them',
    "(3) the two sides' outages run at once, in this one process (2 CPUs shared); (1) and (2) one after the other",
    `each rep starts two fresh test doubles (one per writer) and runs (1), (2) and (3) on them; ${options.reps} ` +
      'rep(s), leafbridge and the baseline in turn within each; targets are judged on the median of the reps, ' +
      'and every rep must end with the wanted state on the server',
    `outage ${outageS} s: the store's probe and watch (250 ms … 5 s) are at their backoff ceiling after 7.75 s ` +
      'down and its longest backoff (500 ms … 30 s) after 31.5 s; a longer outage leaves the store in the same ' +
      'state at up()',
    `machine: 2 cores shared with other work (load average at start ${machineAtStart.loadavg.join(' / ')})`,
  );
  if (real) notes.push(...realNotes(real));
  printTail(log, notes, {}, errors);
  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const files = writeResults('registry', startedAt, {
    machine: { ...machineInfo() },
    machineAtStart,
    options: { ...options, outageS },
    params: { ...PARAMS, real: REAL },
    targets,
    pass,
    results: {
      overReps: 'each figure: median, min, max over the reps, and reps (every rep in order; null: no value)',
      double: apis.double ? { summary: summaryOf(double), reps: double } : undefined,
      real: real ? { summary: realSummaryOf(real.reps), ...real } : undefined,
    },
    table: [...text.split('\n'), '', ...compared.split('\n')],
    notes,
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`registry: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
