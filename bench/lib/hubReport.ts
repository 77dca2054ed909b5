// The printout and JSON of `npm run bench -- hub`: the load steps against each API server side by side, a
// summary (real vs double), the issue's targets judged on each, and notes on what was measured how.
import type { ApiRun, Figures, HubBenchOptions, HubResult } from '../hub.js';
import { TARGETS } from '../hub.js';
import { cpuLine, fmt, grid, medianSpread, printTail, type Target, target, writeResults } from './report.js';
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

const s2 = (ms: number | undefined) => fmt(ms === undefined ? undefined : ms / 1000, 2);

/** The step at the issue's full load (the ladder's last), if the run got there. */
function fullLoad(run: ApiRun | undefined, devices: number): HubResult | undefined {
  return run?.steps.find((h) => h.devices === devices);
}

function targetsOf(f: Figures): Target[] {
  const out: Target[] = [];
  for (const api of ['double', 'real'] as const) {
    const run = f.runs[api];
    if (!run) continue;
    const h = fullLoad(run, f.devices);
    const at = `[${api}] at ${fmt(f.devices)} Devices`;
    out.push(
      target(
        `backlog-${api}`,
        `${at}: backlog growth over the steady window (slope), % of the offered rate`,
        h?.backlogGrowthPct,
        '<=',
        TARGETS.backlogGrowthPct,
        '%',
      ),
      target(
        `apiWrites-${api}`,
        `${at}: API status writes per second, at most one per Device per interval`,
        h?.apiWritesPerS,
        '<=',
        f.devices,
        'writes/s',
      ),
      target(
        `desired-${api}`,
        `${at}: desired → edge, p99`,
        h?.desired.p99,
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
  const cols: { api: string; h: HubResult }[] = [];
  const ladder = [...new Set(Object.values(f.runs).flatMap((r) => r?.steps.map((h) => h.nodes) ?? []))].sort(
    (a, b) => a - b,
  );
  for (const nodes of ladder)
    for (const api of ['double', 'real'] as const) {
      const h = f.runs[api]?.steps.find((x) => x.nodes === nodes);
      if (h) cols.push({ api, h });
    }
  const row = (measure: string, cell: (h: HubResult) => string) => [measure, ...cols.map((c) => cell(c.h))];
  const met = (h: HubResult) => (h.backlogGrowthPct <= TARGETS.backlogGrowthPct ? 'met' : 'MISSED');
  const serverCores = (h: HubResult) =>
    (h.cpu.cores.api ?? 0) +
    (h.cpu.cores.apiserver ?? 0) +
    (h.cpu.cores.etcd ?? 0) +
    (h.cpu.cores.controllers ?? 0);
  return grid(
    ['measure', ...cols.map((c) => `${c.api} ${fmt(c.h.devices)}`)],
    [
      row('edges × devices reporting at 1 Hz', (h) => `${h.nodes} × ${h.devices / h.nodes}`),
      row('reports offered (acked by the broker), msg/s', (h) => fmt(h.offeredPerS)),
      row('reports taken by the hub, msg/s', (h) => fmt(h.handledPerS)),
      row(`backlog growth, % of offered (≤ ${TARGETS.backlogGrowthPct})`, (h) => fmt(h.backlogGrowthPct, 2)),
      row('  verdict', met),
      row(
        'backlog start / end / max, msgs',
        (h) => `${fmt(h.backlogStart)}/${fmt(h.backlogEnd)}/${fmt(h.backlogMax)}`,
      ),
      row('status writes/s (hub count, window mean)', (h) => fmt(h.apiWritesPerS)),
      row('status writes/s per 1 s: median [p10–p90]', (h) => medianSpread(h.writesPerSecond)),
      row('PATCH /status counted by the server, /s', (h) => fmt(h.serverStatusPatchesPerS)),
      row('Device requests answered non-2xx, /s', (h) => fmt(h.serverFailedPerS, 1)),
      row('Devices with an unwritten change, max', (h) => fmt(h.pendingDevicesMax)),
      row('report → status p50 / p99, s', (h) => `${s2(h.reportLag.p50)} / ${s2(h.reportLag.p99)}`),
      row('  (sampled reports / never stored)', (h) => `${h.reportLag.n} / ${h.reportLag.missing}`),
      row('desired → edge p50 / p99, ms', (h) => `${fmt(h.desired.p50)} / ${fmt(h.desired.p99)}`),
      row('drain after edges stop / then all written, s', (h) => `${s2(h.drainMs)} / ${s2(h.writesDrainMs)}`),
      row(
        'CPU cores: hub / API server side',
        (h) => `${fmt(h.cpu.cores.hub, 2)} / ${fmt(serverCores(h), 2)}`,
      ),
      row(
        'CPU cores: whole machine / outside the bench',
        (h) => `${fmt(h.cpu.machineCores, 2)} / ${fmt(h.cpu.otherProcessesCores, 2)}`,
      ),
      row('hub RSS peak, MB', (h) => fmt(h.peakRssMB)),
    ],
  );
}

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
    ['summary (one hub, one run per load step)', ...apis],
    [
      row(
        `largest load with backlog growth ≤ ${TARGETS.backlogGrowthPct}% (steps ${f.apis.real ? 'tried' : 'run'})`,
        (r) =>
          r.largestMetDevices === undefined
            ? 'none'
            : `${fmt(r.largestMetDevices / 20)} × 20 = ${fmt(r.largestMetDevices)} Devices${
                r.largestMetDevices === f.devices ? ' (top step)' : ''
              }`,
      ),
      row('status writes/s at the heaviest step run: median [p10–p90]', (r) => {
        const h = last(r);
        return h ? `${medianSpread(h.writesPerSecond)} @ ${fmt(h.devices)}` : 'n/a';
      }),
      row('report → status p50 / p99 at the heaviest step, s', (r) => {
        const h = last(r);
        return h ? `${s2(h.reportLag.p50)} / ${s2(h.reportLag.p99)}` : 'n/a';
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
  if (b)
    notes.push(
      `baseline (not a hub): the broker delivered ${fmt(b.handledPerS)} msg/s of ${fmt(b.offeredPerS)} offered to a ` +
        `plain mqtt.js subscriber at the full load (${b.seconds} s); ${cpuLine(b.cpu)}`,
    );
  notes.push(`${f.devices} edge-side devices; ${f.devices / 20} edge connections in ${fmt(f.connectMs)} ms`);
  for (const [api, run] of Object.entries(f.runs)) {
    if (!run) continue;
    notes.push(
      `[${api}] ${f.devices} Devices stored before the steps in ${fmt(run.seedMs)} ms; every step's hub lists all of ` +
        `them and only the step's Devices report; ${run.stoppedBecause ? `stopped: ${run.stoppedBecause}` : 'every step run'}` +
        `${run.error ? `; ERROR ${run.error.split('\n')[0]}` : ''}`,
    );
    for (const h of run.steps) notes.push(`[${api}] ${fmt(h.devices)}: ${cpuLine(h.cpu)}`);
  }
  notes.push(
    `each load step: a fresh hub process, ${steadyS} s steady window after the warm-up, one run (no best-of-N); ` +
      'spreads are over the window’s ~1 s samples, not over runs',
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
    results: figures,
    table: [...steps.split('\n'), '', ...summary.split('\n')],
    notes,
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`hub: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
