// `npm run bench -- registry`: the test double's figures and the real kube-apiserver's side by side, each the
// median over the reps with its min–max spread, the targets judged on the real one's median, and what the real
// run could and could not count.
import type { Figures } from '../registry.js';
import type { RealFigures, RealRun } from '../registryReal.js';
import { PARAMS, TARGETS } from './registryKit.js';
import { MEASURES } from './registryReport.js';
import { fmt, grid, type Target, target } from './report.js';
import { type OverReps, overRepsOf, repText } from './stats.js';

type Label = 'leafbridge' | 'baseline';

const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
const timed = (ran: unknown, ms: number | undefined) =>
  ran === undefined ? undefined : (ms ?? Number.POSITIVE_INFINITY);

/** One figure of one real rep for one writer. */
interface RealMeasure {
  id: string;
  pick: (f: RealFigures, l: Label) => number | undefined;
}

const REAL_MEASURES: RealMeasure[] = [
  { id: 'steady.s', pick: (f, l) => sec(timed(f.steady[l], f.steady[l]?.ms)) },
  { id: 'steady.writesPerDevice', pick: (f, l) => f.steady[l]?.writesPerDevice },
  { id: 'burst.meanPerDevice', pick: (f, l) => (f.bursts[l] ? lastStateMean(f, l) : undefined) },
  { id: 'burst.s', pick: (f, l) => sec(timed(f.bursts[l], f.bursts[l]?.ms)) },
  { id: 'outage.failedAttempts', pick: (f, l) => f.outage[l]?.failedAttemptsDuringOutage },
  { id: 'outage.apiserverReadyS', pick: (f, l) => sec(timed(f.outage[l], f.outage[l]?.apiserverReadyMs)) },
  { id: 'outage.convergedS', pick: (f, l) => sec(timed(f.outage[l], f.outage[l]?.convergedMs)) },
  { id: 'outage.confirmedS', pick: (f, l) => sec(timed(f.outage[l], f.outage[l]?.confirmedMs)) },
  { id: 'outage.writesAfterRestart', pick: (f, l) => f.outage[l]?.writesAfterRestart },
  { id: 'outage.minimumWrites', pick: (f, l) => f.outage[l]?.minimumWrites },
  {
    id: 'outage.extraWrites',
    pick: (f, l) => {
      const o = f.outage[l];
      return o ? o.writesAfterRestart - o.minimumWrites : undefined;
    },
  },
  { id: 'outage.failedWritesAfterRestart', pick: (f, l) => f.outage[l]?.failedWritesAfterRestart },
];

/** Writes per Device for the burst; +∞ when the server did not end with the last state asked for. */
function lastStateMean(f: RealFigures, l: Label): number | undefined {
  const b = f.bursts[l];
  return b === undefined ? undefined : b.lastStateWins ? b.meanPerDevice : Number.POSITIVE_INFINITY;
}

const realMedian = (reps: RealFigures[], id: string) => {
  const m = REAL_MEASURES.find((x) => x.id === id) as RealMeasure;
  return overRepsOf(reps, (f) => m.pick(f, 'leafbridge')).median;
};

/** Every real measure over the reps, per writer (the JSON). */
export function realSummaryOf(reps: RealFigures[]): Record<string, Record<Label, OverReps>> {
  return Object.fromEntries(
    REAL_MEASURES.map((m) => [
      m.id,
      {
        leafbridge: overRepsOf(reps, (f) => m.pick(f, 'leafbridge')),
        baseline: overRepsOf(reps, (f) => m.pick(f, 'baseline')),
      },
    ]),
  );
}

export function realTargets(reps: RealFigures[]): Target[] {
  const wrongEnds = reps.filter(
    (f) =>
      f.error !== undefined ||
      f.steady.leafbridge?.matches === false ||
      f.bursts.leafbridge?.lastStateWins === false ||
      (f.outage.leafbridge !== undefined && f.outage.leafbridge.convergedMs === undefined),
  ).length;
  return [
    target(
      'burstFast-real',
      '[real] API writes per Device for one burst of changes, mean (total from the apiserver counters / ' +
        'Devices), median of the reps',
      realMedian(reps, 'burst.meanPerDevice'),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'outageExtra-real',
      '[real] writes after the restart beyond the fewest that could do it, all Devices together, median of the reps',
      realMedian(reps, 'outage.extraWrites'),
      '<=',
      TARGETS.extraWritesAfterOutage,
      'writes',
    ),
    target(
      'converge-real',
      '[real] restart (process spawned) → etcd holds exactly the wanted state, median of the reps',
      realMedian(reps, 'outage.convergedS'),
      '<=',
      TARGETS.convergeS,
      's',
    ),
    target(
      'rightEnd-real',
      '[real] reps that failed or in which a phase ended with etcd not holding the wanted state',
      reps.length === 0 ? undefined : wrongEnds,
      '<=',
      0,
      'reps',
    ),
  ];
}

/** Columns: leafbridge on the double, on the real server; the baseline on each. Cells: median (min–max). */
export function compareTable(d: Figures[], r: RealFigures[], targets: Target[]): string {
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? (t.pass ? 'met' : 'MISSED') : '';
  };
  const both = (id: string) => [verdict(id), verdict(`${id}-real`)].filter(Boolean).join(' / ');
  const dbl = (id: string, l: Label, digits: number, scale = 1) => {
    const m = MEASURES.find((x) => x.id === id);
    if (!m || d.length === 0) return 'n/a';
    return repText(
      overRepsOf(d, (f) => {
        const v = m.pick(f, l);
        return v === undefined ? undefined : v * scale;
      }),
      digits,
    );
  };
  const real = (id: string, l: Label, digits: number) => {
    const m = REAL_MEASURES.find((x) => x.id === id);
    if (!m || r.length === 0) return 'n/a';
    return repText(
      overRepsOf(r, (f) => m.pick(f, l)),
      digits,
    );
  };
  const row = (
    measure: string,
    ids: [string | undefined, string | undefined],
    digits: number,
    result = '',
    doubleScale = 1,
  ) => [
    measure,
    ids[0] ? dbl(ids[0], 'leafbridge', digits, doubleScale) : '',
    ids[1] ? real(ids[1], 'leafbridge', digits) : '',
    ids[0] ? dbl(ids[0], 'baseline', digits, doubleScale) : '',
    ids[1] ? real(ids[1], 'baseline', digits) : '',
    result,
  ];
  const rows: string[][] = [
    row('(1) 1,000 new Devices: all written, s', ['steady.ms', 'steady.s'], 2, '', 1 / 1000),
    row('(1) API writes per new Device', ['steady.writesPerDevice', 'steady.writesPerDevice'], 2),
    row(
      '(2) burst (fast server): writes/Device, mean',
      ['burstFast.meanPerDevice', 'burst.meanPerDevice'],
      2,
      both('burstFast'),
    ),
    row(
      '(2) burst (fast server): writes/Device, worst (real: n/a)',
      ['burstFast.maxPerDevice', undefined],
      0,
    ),
    row('(2) burst (fast server): all landed, s', ['burstFast.ms', 'burst.s'], 2, '', 1 / 1000),
    row(
      '(3) failed attempts during the outage (the writer’s own count)',
      ['outage.failedAttempts', 'outage.failedAttempts'],
      0,
    ),
    row(
      '(3) connections refused during the outage (real: TLS, not observable)',
      ['outage.refused', undefined],
      0,
    ),
    row(
      '(3) restart → apiserver ready (/readyz), s (double: up(), 0)',
      [undefined, 'outage.apiserverReadyS'],
      1,
    ),
    row(
      `(3) restart → stored state = wanted, s (≤ ${TARGETS.convergeS})`,
      ['outage.convergedS', 'outage.convergedS'],
      1,
      both('converge'),
    ),
    row('(3) restart → every write confirmed, s', ['outage.confirmedS', 'outage.confirmedS'], 1),
    row(
      '(3) Device writes after restart',
      ['outage.writesAfterUp', 'outage.writesAfterRestart'],
      0,
      both('outageExtra'),
    ),
    row('(3)   the fewest that could do it', ['outage.minimumWrites', 'outage.minimumWrites'], 0),
    row('(3)   of those answered non-2xx', [undefined, 'outage.failedWritesAfterRestart'], 0),
  ];
  return grid(
    ['measure', 'leafbridge double', 'leafbridge real', 'baseline double', 'baseline real', 'target'],
    rows,
  );
}

export function realNotes(run: RealRun): string[] {
  const split = (t: Record<string, number>) =>
    Object.entries(t)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
  const outageS = run.reps[0]?.outageS;
  const notes: string[] = [
    `[real] one control plane for every rep (started with deploy/ applied in ${fmt(run.startMs)} ms); in rep N ` +
      'KubeDeviceStore as leafbridge-agent in namespace bench-leafbridge-N, the naive baseline as leafbridge-agent ' +
      'in bench-baseline-N (the agent Role copied into both); the two run one after the other, outages included ' +
      `(SIGKILL of kube-apiserver for ${outageS} s each, capped at 60 s; restarted on the same port and etcd), ` +
      "the store closed before the baseline's outage",
    '[real] requests counted from apiserver_request_total (GET /metrics as admin) before/after each phase; after ' +
      'a restart the counters start from zero, so they hold only requests after it; they carry no object name, so ' +
      'per-Device worst cases are not available on the real server (n/a), totals are',
    `[real] the stored state read in etcd every ${200} ms (the double's in its store every ${PARAMS.pollMs} ms); ` +
      'restart times run from the kube-apiserver process being spawned (its own start-up included)',
    '[real] no slowed-server burst: the real apiserver has no fault injection (the double does +200 ms/request)',
  ];
  const last = run.reps[run.reps.length - 1];
  if (!last) return notes;
  notes.push(`[real] details of rep ${run.reps.length} (the last):`);
  for (const [label, s] of Object.entries(last.steady))
    if (s) notes.push(`(1) [real] ${label} requests: ${split(s.requests)}`);
  for (const [label, b] of Object.entries(last.bursts))
    if (b)
      notes.push(
        `(2) [real] ${label} requests: ${split(b.requests)}; last state stored: ${b.lastStateWins ? 'yes' : 'NO'}`,
      );
  for (const [label, o] of Object.entries(last.outage)) {
    if (!o) continue;
    notes.push(
      `(3) [real] ${label}: ${o.changes} changes; requests after the restart: ${split(o.requestsAfterRestart)}; ` +
        `recreated instead of updated: ${o.recreated}; left at the end: ${JSON.stringify(o.left)}; failed attempts ` +
        `the writer reported during the outage: ${o.failedAttemptsDuringOutage}`,
    );
    if (o.logged) notes.push(`(3) [real] ${label} warn lines by message: ${JSON.stringify(o.logged)}`);
  }
  return notes;
}
