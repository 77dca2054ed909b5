// `npm run bench -- registry [--outage-s N]`: what the Kubernetes-backed device registry (KubeDeviceStore) costs
// the API server, and how fast it puts the server right after an outage.
//   (1) steady state: 1,000 new Devices upserted at once: time until every write landed, API writes per device
//       split by verb and subresource (the Device CRD has a status subresource, so a create ignores status and
//       a new Device costs a create plus a /status write), and the reads that came with them
//   (2) change bursts: 200 Devices, 10 status flips each within ~100 ms; API writes per Device per burst (mean,
//       max, the worst Device), once against a fast server and once against one that delays every request
//   (3) outage: 1,000 Devices stored, the server taken down (down()) for `--outage-s` (default 600 s, the issue's
//       10 minutes); during it 100 Devices vanish, 100 are new and 300 change status (two waves); then up() and
//       the time until the server's stored objects equal the wanted state exactly (none missing, none extra,
//       none stale), polled in the server's storage every `pollMs`; writes after up() against the fewest that
//       could do it; connection attempts during the outage (refused, so the server cannot log them: counted
//       on this process's client sockets through the net.client.socket diagnostics channel)
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
import { compareTable, realNotes, realTargets } from './lib/registryCompare.js';
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
  TARGETS,
  type Wanted,
  waveA,
  waveB,
} from './lib/registryKit.js';
import { fmt, printTail, type Row, type Target, table, target, writeResults } from './lib/report.js';
import { machineInfo, now, round1, sleep } from './lib/util.js';
import { REAL, type RealFigures, registryReal } from './registryReal.js';

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

// --------------------------------------------------------------------------------------------- report

export interface Figures {
  steady: Partial<Record<Side['label'], Steady>>;
  bursts: Partial<Record<Side['label'], Burst[]>>;
  outage: Partial<Record<Side['label'], Outage>>;
}

const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? '' : `${fmt(a / b, 2)}×`;

function rows(f: Figures, targets: Target[]): Row[] {
  const [s, p] = [f.steady.leafbridge, f.steady.baseline];
  const [so, po] = [f.outage.leafbridge, f.outage.baseline];
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? (t.pass ? 'met' : 'MISSED') : '';
  };
  const out: Row[] = [
    row('(1) 1,000 new Devices: all written, ms', s?.ms, p?.ms, 0),
    row('(1) API writes per new Device', s?.writesPerDevice, p?.writesPerDevice, 2),
  ];
  for (const [i, b] of (f.bursts.leafbridge ?? []).entries()) {
    const pb = f.bursts.baseline?.[i];
    const when = b.slowMs > 0 ? `server +${b.slowMs} ms/request` : 'fast server';
    out.push(
      row(`(2) burst, ${when}: writes/Device mean`, b.meanPerDevice, pb?.meanPerDevice, 2),
      {
        ...row(`(2) burst, ${when}: writes/Device worst`, b.maxPerDevice, pb?.maxPerDevice, 0),
        target: `≤ ${TARGETS.writesPerBurst}`,
        result: verdict(b.slowMs > 0 ? 'burstSlow' : 'burstFast'),
      },
      row(`(2) burst, ${when}: all landed, ms`, b.ms, pb?.ms, 0),
    );
  }
  out.push(
    row('(3) connections refused during the outage', so?.refusedDuringOutage, po?.refusedDuringOutage, 0),
    row('(3) up() → first request, ms', so?.firstRequestMs, po?.firstRequestMs, 0),
    row('(3) up() → first successful write, ms', so?.firstWriteOkMs, po?.firstWriteOkMs, 0),
    row('(3) up() → watch open again, ms', so?.watchBackMs, po?.watchBackMs, 0),
    {
      ...row('(3) up() → server equals wanted state, s', sec(so?.convergedMs), sec(po?.convergedMs), 1),
      target: `≤ ${TARGETS.convergeS}`,
      result: verdict('converge'),
    },
    row('(3) up() → every write confirmed, s', sec(so?.confirmedMs), sec(po?.confirmedMs), 1),
    row(
      '(3) writes after up() (fewest possible)',
      so?.writesAfterUp,
      po?.writesAfterUp,
      0,
      so?.minimumWrites,
    ),
    row('(3) writes per change made in the outage', so?.writesPerChange, po?.writesPerChange, 2),
    {
      ...row('(3) worst Device: writes beyond its fewest', extra(so), extra(po), 0),
      target: `≤ ${TARGETS.extraWritesAfterOutage}`,
      result: verdict('outageExtra'),
    },
  );
  return out;
}

const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
const extra = (o: Outage | undefined) => (o ? o.worstExtra.writes - o.worstExtra.minimum : undefined);

function row(
  measure: string,
  a: number | undefined,
  b: number | undefined,
  digits: number,
  min?: number,
): Row {
  return {
    measure,
    leafbridge: `${fmt(a, digits)}${min === undefined ? '' : ` (${fmt(min)})`}`,
    peer: fmt(b, digits),
    ratio: ratio(a, b),
    target: '',
    result: '',
  };
}

function targetsOf(f: Figures): Target[] {
  const bursts = f.bursts.leafbridge ?? [];
  const fast = bursts.find((b) => b.slowMs === 0);
  const slow = bursts.find((b) => b.slowMs > 0);
  const o = f.outage.leafbridge;
  const worstBurst = (b: Burst | undefined) => (b?.lastStateWins ? b.maxPerDevice : undefined);
  return [
    target(
      'burstFast',
      'worst Device: API writes for one burst of changes (fast server)',
      worstBurst(fast),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'burstSlow',
      `same, server slowed by ${PARAMS.burst.slowMs} ms per request`,
      worstBurst(slow),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'outageExtra',
      'worst Device: writes after up() beyond the fewest it needs',
      extra(o),
      '<=',
      TARGETS.extraWritesAfterOutage,
      'writes',
    ),
    target(
      'converge',
      'up() → server objects equal the wanted state',
      sec(o?.convergedMs),
      '<=',
      TARGETS.convergeS,
      's',
    ),
  ];
}

function notesOf(f: Figures): string[] {
  const notes: string[] = [];
  const s = f.steady.leafbridge;
  if (s) notes.push(`(1) leafbridge requests while creating 1,000 Devices: ${split(s.requests)}`);
  const p = f.steady.baseline;
  if (p) notes.push(`(1) baseline requests: ${split(p.requests)}`);
  for (const b of f.bursts.leafbridge ?? [])
    notes.push(
      `(2) leafbridge burst (server +${b.slowMs} ms): writes per Device ${JSON.stringify(b.histogram)} ` +
        `(writes: Devices); worst ${b.worstDevice}; changes asked for within ${fmt(b.issuedMs)} ms; ` +
        `last state on the server: ${b.lastStateWins ? 'yes' : 'NO'}`,
    );
  for (const [label, o] of Object.entries(f.outage)) {
    notes.push(
      `(3) ${label}: ${o.changes} changes in a ${o.outageS} s outage; requests after up(): ${split(o.requestsAfterUp)}; ` +
        `Devices recreated instead of updated: ${o.recreated}; left at the end: ${JSON.stringify(o.left)}`,
    );
    notes.push(
      `(3) ${label}: failed attempts the writer itself reported during the outage: ${o.failedAttemptsDuringOutage}`,
    );
    if (o.logged) notes.push(`(3) ${label} warn lines by message (whole run): ${JSON.stringify(o.logged)}`);
  }
  notes.push(
    '(3) connections refused: every client socket of this process to that server port that got ECONNREFUSED ' +
      '(writes, probes, lists and watches alike); the server cannot log them',
    "(3) the two sides' outages run at once, in this one process (2 CPUs shared); (1) and (2) one after the other",
  );
  return notes;
}

const split = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

// ------------------------------------------------------------------------------------------------ run

export async function runRegistry(options: RegistryBenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const machineAtStart = machineInfo();
  const outageS = options.outageS ?? PARAMS.outage.defaultS;
  const realOutageS = Math.min(outageS, REAL.maxOutageS);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const apis = planApis(options.api);
  if (apis.error) errors.api = apis.error;
  const figures: Figures = { steady: {}, bursts: {}, outage: {} };
  log(
    `registry: ${PARAMS.devices} Devices, bursts of ${PARAMS.burst.changes} × ${PARAMS.burst.devices}, ` +
      `${outageS} s outage (double)${apis.real ? `, ${realOutageS} s (real)` : ''}`,
  );
  log(`  ${apis.note}`);
  const connections = new Connections();
  connections.start();
  if (apis.double) await runDouble(figures, outageS, connections, errors, log);
  const real = apis.real ? await registryReal(realOutageS, log) : undefined;
  if (real?.error) errors.real = real.error;
  connections.stop();
  return report({ startedAt, machineAtStart, options, outageS, apis, figures, real, errors, log });
}

/** The three phases against two test doubles, one per writer (their outages at once). */
async function runDouble(
  figures: Figures,
  outageS: number,
  connections: Connections,
  errors: Record<string, string>,
  log: (s: string) => void,
): Promise<void> {
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
  } catch (err) {
    errors.double = err instanceof Error ? (err.stack ?? err.message) : String(err);
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
  figures: Figures;
  real: RealFigures | undefined;
  errors: Record<string, string>;
  log: (s: string) => void;
}

function report(input: ReportInput): boolean {
  const { startedAt, machineAtStart, options, outageS, apis, figures, real, errors, log } = input;
  const targets = [...(apis.double ? targetsOf(figures) : []), ...(real ? realTargets(real) : [])];
  const text = apis.double ? table(rows(figures, targets), { peer: 'baseline' }) : '';
  const compared = compareTable(figures, real, targets);
  if (text) {
    log('\ntest double, in detail ("baseline" = the bench-local naive writer, not a peer product)');
    log(text);
  }
  log(
    '\nside by side: leafbridge (KubeDeviceStore) and the naive baseline, test double and real kube-apiserver',
  );
  log(compared);
  const notes = [apis.note, ...(apis.double ? notesOf(figures) : []), ...(real ? realNotes(real) : [])];
  notes.push(
    'one run of each phase per writer and server (no best-of-N, no median over runs): spreads are not available ' +
      'for these figures; the burst and outage ones are counts, not timings, except the times to converge',
    `machine: 2 cores shared with other work (load average at start ${machineAtStart.loadavg.join(' / ')})`,
  );
  notes.push('--reps is not used here yet: one run (the outage phase is long)');
  printTail(log, notes, {}, errors);
  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const files = writeResults('registry', startedAt, {
    machine: { ...machineInfo() },
    machineAtStart,
    options: { ...options, outageS },
    params: { ...PARAMS, real: REAL },
    targets,
    pass,
    results: { double: apis.double ? figures : undefined, real },
    table: [...text.split('\n'), '', ...compared.split('\n')],
    notes,
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`registry: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
