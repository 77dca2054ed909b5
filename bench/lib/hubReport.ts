// The printout and JSON of `npm run bench -- hub`: the load steps against each API server side by side, a
// summary (real vs double), the issue's targets judged on each, and notes on what was measured how. Every figure
// is the median over the reps (--reps) with its min–max spread (bench/lib/stats.ts); the JSON keeps each step's
// median, min, max and every rep (`summary`) beside every rep's own figures.
import type { ApiRun, Figures, HubBenchOptions, HubResult, StepReps } from '../hub.js';
import { TARGETS } from '../hub.js';
import { cpuLine, fmt, grid, printTail, type Target, target, writeResults } from './report.js';
import { medianRun, type OverReps, overRepsOf, repText } from './stats.js';
import { machineInfo } from './util.js';

interface HubReportInput {
  startedAt: Date;
  options: HubBenchOptions;
  steadyS: number;
  figures: Figures;
  errors: Record<string, string>;
  log: (s: string) => void;
  params: Record<string, unknown> & { ladder: number[]; devicesPerNode: number; intervalMs: number };
}

/** One figure of one rep at one load step (a HubResult). */
const STEP_MEASURES = {
  offeredPerS: (h: HubResult) => h.offeredPerS,
  handledPerS: (h: HubResult) => h.handledPerS,
  backlogGrowthPct: (h: HubResult) => h.backlogGrowthPct,
  backlogStart: (h: HubResult) => h.backlogStart,
  backlogEnd: (h: HubResult) => h.backlogEnd,
  backlogMax: (h: HubResult) => h.backlogMax,
  apiWritesPerS: (h: HubResult) => h.apiWritesPerS,
  writesPerSecondMedian: (h: HubResult) => h.writesPerSecond.median,
  writesPerSecondP10: (h: HubResult) => h.writesPerSecond.p10,
  writesPerSecondP90: (h: HubResult) => h.writesPerSecond.p90,
  serverStatusPatchesPerS: (h: HubResult) => h.serverStatusPatchesPerS,
  serverFailedPerS: (h: HubResult) => h.serverFailedPerS,
  pendingDevicesMax: (h: HubResult) => h.pendingDevicesMax,
  reportLagP50S: (h: HubResult) => sec(h.reportLag.p50),
  reportLagP99S: (h: HubResult) => sec(h.reportLag.p99),
  reportLagMissing: (h: HubResult) => h.reportLag.missing,
  desiredP50Ms: (h: HubResult) => h.desired.p50,
  desiredP99Ms: (h: HubResult) => h.desired.p99,
  /** +∞ (printed "timeout") when the hub did not take every acknowledged report within the drain timeout. */
  drainS: (h: HubResult) => sec(h.drainMs ?? Number.POSITIVE_INFINITY),
  writesDrainS: (h: HubResult) => sec(h.writesDrainMs ?? Number.POSITIVE_INFINITY),
  hubCores: (h: HubResult) => h.cpu.cores.hub,
  serverCores: (h: HubResult) =>
    (h.cpu.cores.api ?? 0) +
    (h.cpu.cores.apiserver ?? 0) +
    (h.cpu.cores.etcd ?? 0) +
    (h.cpu.cores.controllers ?? 0),
  machineCores: (h: HubResult) => h.cpu.machineCores,
  otherProcessesCores: (h: HubResult) => h.cpu.otherProcessesCores,
  peakRssMB: (h: HubResult) => h.peakRssMB,
  liveHeapMB: (h: HubResult) => h.liveHeapMB,
} as const;

type StepMeasure = keyof typeof STEP_MEASURES;

const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
const over = (step: StepReps | undefined, m: StepMeasure): OverReps =>
  overRepsOf(step?.reps ?? [], STEP_MEASURES[m]);
/** The median over the reps with its min–max spread. */
const rt = (step: StepReps | undefined, m: StepMeasure, digits = 0) => repText(over(step, m), digits);
/** The median over the reps alone (for the figures beside the one a row is about). */
const med = (step: StepReps | undefined, m: StepMeasure, digits = 0) => {
  const v = over(step, m).median;
  return v === Number.POSITIVE_INFINITY ? 'timeout' : fmt(v, digits);
};

/** Every step measure over the reps: median, min, max and each rep's value (the JSON). */
function summaryOf(step: StepReps): Record<StepMeasure, OverReps> {
  return Object.fromEntries(
    (Object.keys(STEP_MEASURES) as StepMeasure[]).map((m) => [m, over(step, m)]),
  ) as Record<StepMeasure, OverReps>;
}

/** The step at the issue's full load (the ladder's last), if the run got there. */
function fullLoad(run: ApiRun | undefined, devices: number): StepReps | undefined {
  return run?.steps.find((h) => h.devices === devices);
}

function targetsOf(f: Figures): Target[] {
  const out: Target[] = [];
  for (const api of ['double', 'real'] as const) {
    const run = f.runs[api];
    if (!run) continue;
    const step = fullLoad(run, f.devices);
    const at = `[${api}] at ${fmt(f.devices)} Devices, median of the reps`;
    out.push(
      target(
        `backlog-${api}`,
        `${at}: backlog growth over the steady window (slope), % of the offered rate`,
        over(step, 'backlogGrowthPct').median,
        '<=',
        TARGETS.backlogGrowthPct,
        '%',
      ),
      target(
        `apiWrites-${api}`,
        `${at}: API status writes per second, at most one per Device per interval`,
        over(step, 'apiWritesPerS').median,
        '<=',
        f.devices,
        'writes/s',
      ),
      target(
        `desired-${api}`,
        `${at}: desired → edge, p99 (the median of the reps' p99s)`,
        over(step, 'desiredP99Ms').median,
        '<=',
        TARGETS.desiredP99Ms,
        'ms',
      ),
    );
  }
  return out;
}

/** The load steps, one column per (step, API server), the two servers side by side at each step. */
function stepTable(f: Figures): string {
  const cols: { api: string; step: StepReps }[] = [];
  const ladder = [...new Set(Object.values(f.runs).flatMap((r) => r?.steps.map((h) => h.nodes) ?? []))].sort(
    (a, b) => a - b,
  );
  for (const nodes of ladder)
    for (const api of ['double', 'real'] as const) {
      const step = f.runs[api]?.steps.find((x) => x.nodes === nodes);
      if (step) cols.push({ api, step });
    }
  const row = (measure: string, cell: (h: StepReps) => string) => [measure, ...cols.map((c) => cell(c.step))];
  const met = (h: StepReps) => {
    const g = over(h, 'backlogGrowthPct').median;
    return g !== undefined && g <= TARGETS.backlogGrowthPct ? 'met' : 'MISSED';
  };
  return grid(
    ['measure (median of the reps, min–max)', ...cols.map((c) => `${c.api} ${fmt(c.step.devices)}`)],
    [
      row('edges × devices reporting at 1 Hz', (h) => `${h.nodes} × ${h.devices / h.nodes}`),
      row('reps (a fresh hub each)', (h) => String(h.reps.length)),
      row('reports offered (acked by the broker), msg/s', (h) => rt(h, 'offeredPerS')),
      row('reports taken by the hub, msg/s', (h) => rt(h, 'handledPerS')),
      row(`backlog growth, % of offered (≤ ${TARGETS.backlogGrowthPct})`, (h) =>
        rt(h, 'backlogGrowthPct', 2),
      ),
      row('  verdict (on the median)', met),
      row(
        'backlog start / end / max, msgs (medians)',
        (h) => `${med(h, 'backlogStart')}/${med(h, 'backlogEnd')}/${med(h, 'backlogMax')}`,
      ),
      row('status writes/s (hub count, window mean)', (h) => rt(h, 'apiWritesPerS')),
      row(
        'status writes/s per 1 s in the window: median [p10–p90] (medians)',
        (h) =>
          `${med(h, 'writesPerSecondMedian')} [${med(h, 'writesPerSecondP10')}–${med(h, 'writesPerSecondP90')}]`,
      ),
      row('PATCH /status counted by the server, /s', (h) => rt(h, 'serverStatusPatchesPerS')),
      row('Device requests answered non-2xx, /s', (h) => rt(h, 'serverFailedPerS', 1)),
      row('Devices with an unwritten change, max', (h) => rt(h, 'pendingDevicesMax')),
      row(
        'report → status p50 / p99, s',
        (h) => `${med(h, 'reportLagP50S', 2)} / ${rt(h, 'reportLagP99S', 2)}`,
      ),
      row(
        '  (sampled reports / never stored, all reps)',
        (h) => `${sum(h.reps.map((x) => x.reportLag.n))} / ${sum(h.reps.map((x) => x.reportLag.missing))}`,
      ),
      row('desired → edge p50 / p99, ms', (h) => `${med(h, 'desiredP50Ms')} / ${rt(h, 'desiredP99Ms')}`),
      row(
        'drain after edges stop / then all written, s (medians)',
        (h) => `${med(h, 'drainS', 2)} / ${med(h, 'writesDrainS', 2)}`,
      ),
      row('CPU cores: hub / API server side', (h) => `${rt(h, 'hubCores', 2)} / ${med(h, 'serverCores', 2)}`),
      row(
        'CPU cores: whole machine / outside the bench (medians)',
        (h) => `${med(h, 'machineCores', 2)} / ${med(h, 'otherProcessesCores', 2)}`,
      ),
      row('hub RSS peak, MB', (h) => rt(h, 'peakRssMB')),
    ],
  );
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Real vs double in three figures: the load one hub serves, the writes it sustains, the lag. */
function summaryTable(f: Figures, targets: Target[]): string {
  const apis = (['double', 'real'] as const).filter((a) => f.runs[a]);
  const last = (r: ApiRun | undefined) => r?.steps[r.steps.length - 1];
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? `${fmt(t.value, t.unit === '%' ? 2 : 0)} ${t.pass ? 'met' : 'MISSED'}` : '';
  };
  const row = (measure: string, cell: (r: ApiRun, api: string) => string) => [
    measure,
    ...apis.map((a) => cell(f.runs[a] as ApiRun, a)),
  ];
  return grid(
    [`summary (one hub, median of ${f.reps} rep(s) per load step)`, ...apis],
    [
      row(
        `largest load with median backlog growth ≤ ${TARGETS.backlogGrowthPct}% (steps ${f.apis.real ? 'tried' : 'run'})`,
        (r) =>
          r.largestMetDevices === undefined
            ? 'none'
            : `${fmt(r.largestMetDevices / 20)} × 20 = ${fmt(r.largestMetDevices)} Devices${
                r.largestMetDevices === f.devices ? ' (top step)' : ''
              }`,
      ),
      row('status writes/s at the heaviest step run (window mean)', (r) => {
        const h = last(r);
        return h ? `${rt(h, 'apiWritesPerS')} @ ${fmt(h.devices)}` : 'n/a';
      }),
      row('report → status p99 at the heaviest step, s', (r) => {
        const h = last(r);
        return h ? rt(h, 'reportLagP99S', 2) : 'n/a';
      }),
      row(`target: backlog growth at ${fmt(f.devices)}, % (≤ ${TARGETS.backlogGrowthPct})`, (_r, a) =>
        verdict(`backlog-${a}`),
      ),
      row(`target: status writes/s at ${fmt(f.devices)} (≤ ${fmt(f.devices)})`, (_r, a) =>
        verdict(`apiWrites-${a}`),
      ),
      row(`target: desired → edge p99 at ${fmt(f.devices)}, ms (≤ ${TARGETS.desiredP99Ms})`, (_r, a) =>
        verdict(`desired-${a}`),
      ),
    ],
  );
}

function notesOf(f: Figures, steadyS: number): string[] {
  const notes: string[] = [f.apis.note];
  const b = f.baseline;
  if (b.length > 0) {
    const handled = overRepsOf(b, (x) => x.handledPerS);
    const median = medianRun(b, (x) => x.handledPerS);
    notes.push(
      `baseline (not a hub): the broker delivered ${repText(handled)} msg/s of ` +
        `${repText(overRepsOf(b, (x) => x.offeredPerS))} offered to a plain mqtt.js subscriber at the full load ` +
        `(${b[0]?.seconds} s per rep, run just before the hubs in each rep of the full-load step); ` +
        `median rep's ${cpuLine(median?.cpu)}`,
    );
  }
  notes.push(`${f.devices} edge-side devices; ${f.devices / 20} edge connections in ${fmt(f.connectMs)} ms`);
  for (const [api, run] of Object.entries(f.runs)) {
    if (!run) continue;
    notes.push(
      `[${api}] ${f.devices} Devices stored before the steps in ${fmt(run.seedMs)} ms; every step's hub lists all of ` +
        `them and only the step's Devices report; ${run.stoppedBecause ? `stopped: ${run.stoppedBecause}` : run.error ? 'stopped by an error' : 'every step run'}` +
        `${run.error ? `; ERROR ${run.error.split('\n')[0]}` : ''}`,
    );
    for (const h of run.steps) {
      const median = medianRun(h.reps, (x) => x.handledPerS);
      notes.push(`[${api}] ${fmt(h.devices)}, the rep with the median msg/s taken: ${cpuLine(median?.cpu)}`);
    }
  }
  notes.push(
    `each load step: --reps runs (${f.reps}), each a fresh hub process with a ${steadyS} s steady window after the ` +
      'warm-up, on the same seeded API server' +
      `${f.apis.real && f.apis.double ? '; the API servers in turn within each rep (both started at the beginning, so the real control plane idles beside the double)' : ''}` +
      '; every figure is the median of the reps with ' +
      'its min–max spread, a p99 the median of the reps’ p99s; within a rep, percentiles are over the window’s ' +
      'reports and ~1 s samples',
    'backlog = reports the broker acknowledged to the edges − reports the hub has taken; the hub coalesces per ' +
      'Device, so a slow API server shows as fewer writes/s and a longer report → status lag, not as backlog',
    'real: the hub runs as the leafbridge-hub service account (its token, RBAC from deploy/), namespace leafbridge; ' +
      'requests counted from kube-apiserver’s apiserver_request_total (GET /metrics as admin); report → status ' +
      'times are when a watch on the sampled Devices (as admin) delivered the new version to the bench; desired is ' +
      'stamped when the admin PATCH is sent',
    'double: test/helpers/kubeApiServer.ts in its own process, namespace default; times read in its own store',
    'everything on 127.0.0.1 of one 2-core machine shared with other work: mosquitto, the simulated edges, the hub, ' +
      'the API server side (double: one Node process; real: etcd, kube-apiserver, controller-manager, scheduler) ' +
      'and the bench; "outside the bench" CPU is that other work',
  );
  return notes;
}

export function reportHub(input: HubReportInput): boolean {
  const { startedAt, options, steadyS, figures, errors, log, params } = input;
  const targets = targetsOf(figures);
  for (const [api, run] of Object.entries(figures.runs)) if (run?.error) errors[api] = run.error;
  if (figures.baselineError) errors.baseline = figures.baselineError;
  const pass = targets.length > 0 && targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const steps = stepTable(figures);
  const summary = summaryTable(figures, targets);
  log('');
  log(steps);
  log('');
  log(summary);
  const notes = notesOf(figures, steadyS);
  printTail(log, notes, {}, errors);
  const files = writeResults('hub', startedAt, {
    machine: machineInfo(),
    options: { ...options, steadyS },
    params,
    targets,
    pass,
    results: {
      overReps: 'each figure: median, min, max over the reps, and reps (every rep in order; null: no value)',
      ...figures,
      runs: Object.fromEntries(
        Object.entries(figures.runs).map(([api, run]) => [
          api,
          run && { ...run, steps: run.steps.map((step) => ({ ...step, summary: summaryOf(step) })) },
        ]),
      ),
    },
    table: [...steps.split('\n'), '', ...summary.split('\n')],
    notes,
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`hub: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
