// The printout and JSON of `npm run bench -- registry` against the test double: every figure the median over the
// reps (--reps) with its min–max spread (bench/lib/stats.ts), KubeDeviceStore beside the naive baseline, and the
// targets judged on the median. The real kube-apiserver's side is in registryCompare.ts.
import type { Burst, Figures, Outage } from '../registry.js';
import { PARAMS, TARGETS } from './registryKit.js';
import { fmt, type Row, type Target, table, target } from './report.js';
import { type OverReps, overRepsOf, repText } from './stats.js';

export type Label = 'leafbridge' | 'baseline';

const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
/** A time a run waited for and did not get: +∞, so the median puts it last and the tables say "timeout". */
const timed = (ran: unknown, ms: number | undefined) =>
  ran === undefined ? undefined : (ms ?? Number.POSITIVE_INFINITY);
const burstOf = (f: Figures, l: Label, slowMs: number) => f.bursts[l]?.find((b) => b.slowMs === slowMs);
const extra = (o: Outage | undefined) => (o ? o.worstExtra.writes - o.worstExtra.minimum : undefined);
/** The worst Device's writes for a burst, +∞ when the server did not end with the last state asked for. */
const worstBurst = (b: Burst | undefined) =>
  b === undefined ? undefined : b.lastStateWins ? b.maxPerDevice : Number.POSITIVE_INFINITY;

/** One figure of one rep for one writer. */
interface Measure {
  id: string;
  label: string;
  digits: number;
  pick: (f: Figures, l: Label) => number | undefined;
  /** The target this row is judged by (its id in targetsOf). */
  target?: { id: string; text: string };
}

function burstMeasures(slowMs: number): Measure[] {
  const when = slowMs > 0 ? `server +${slowMs} ms/request` : 'fast server';
  const key = slowMs > 0 ? 'burstSlow' : 'burstFast';
  return [
    {
      id: `${key}.meanPerDevice`,
      label: `(2) burst, ${when}: writes/Device mean`,
      digits: 2,
      pick: (f, l) => burstOf(f, l, slowMs)?.meanPerDevice,
    },
    {
      id: `${key}.maxPerDevice`,
      label: `(2) burst, ${when}: writes/Device worst`,
      digits: 0,
      pick: (f, l) => worstBurst(burstOf(f, l, slowMs)),
      target: { id: key, text: `≤ ${TARGETS.writesPerBurst}` },
    },
    {
      id: `${key}.ms`,
      label: `(2) burst, ${when}: all landed, ms`,
      digits: 0,
      pick: (f, l) => {
        const b = burstOf(f, l, slowMs);
        return timed(b, b?.ms);
      },
    },
  ];
}

export const MEASURES: Measure[] = [
  {
    id: 'steady.ms',
    label: '(1) 1,000 new Devices: all written, ms',
    digits: 0,
    pick: (f, l) => timed(f.steady[l], f.steady[l]?.ms),
  },
  {
    id: 'steady.writesPerDevice',
    label: '(1) API writes per new Device',
    digits: 2,
    pick: (f, l) => f.steady[l]?.writesPerDevice,
  },
  ...burstMeasures(0),
  ...burstMeasures(PARAMS.burst.slowMs),
  {
    id: 'outage.refused',
    label: '(3) connections refused during the outage',
    digits: 0,
    pick: (f, l) => f.outage[l]?.refusedDuringOutage,
  },
  {
    id: 'outage.failedAttempts',
    label: '(3) failed attempts during the outage (the writer’s own count)',
    digits: 0,
    pick: (f, l) => f.outage[l]?.failedAttemptsDuringOutage,
  },
  {
    id: 'outage.firstRequestMs',
    label: '(3) up() → first request, ms',
    digits: 0,
    pick: (f, l) => timed(f.outage[l], f.outage[l]?.firstRequestMs),
  },
  {
    id: 'outage.firstWriteOkMs',
    label: '(3) up() → first successful write, ms',
    digits: 0,
    pick: (f, l) => timed(f.outage[l], f.outage[l]?.firstWriteOkMs),
  },
  {
    id: 'outage.watchBackMs',
    label: '(3) up() → watch open again, ms',
    digits: 0,
    pick: (f, l) => timed(f.outage[l], f.outage[l]?.watchBackMs),
  },
  {
    id: 'outage.convergedS',
    label: '(3) up() → server equals wanted state, s',
    digits: 1,
    pick: (f, l) => sec(timed(f.outage[l], f.outage[l]?.convergedMs)),
    target: { id: 'converge', text: `≤ ${TARGETS.convergeS}` },
  },
  {
    id: 'outage.confirmedS',
    label: '(3) up() → every write confirmed, s',
    digits: 1,
    pick: (f, l) => sec(timed(f.outage[l], f.outage[l]?.confirmedMs)),
  },
  {
    id: 'outage.writesAfterUp',
    label: '(3) writes after up()',
    digits: 0,
    pick: (f, l) => f.outage[l]?.writesAfterUp,
  },
  {
    id: 'outage.minimumWrites',
    label: '(3)   the fewest that could do it',
    digits: 0,
    pick: (f, l) => f.outage[l]?.minimumWrites,
  },
  {
    id: 'outage.writesPerChange',
    label: '(3) writes per change made in the outage',
    digits: 2,
    pick: (f, l) => f.outage[l]?.writesPerChange,
  },
  {
    id: 'outage.worstExtra',
    label: '(3) worst Device: writes beyond its fewest',
    digits: 0,
    pick: (f, l) => extra(f.outage[l]),
    target: { id: 'outageExtra', text: `≤ ${TARGETS.extraWritesAfterOutage}` },
  },
];

/** Every measure over the reps, per writer: what the JSON keeps (median, min, max, every rep). */
export function summaryOf(reps: Figures[]): Record<string, Record<Label, OverReps>> {
  return Object.fromEntries(
    MEASURES.map((m) => [
      m.id,
      {
        leafbridge: overRepsOf(reps, (f) => m.pick(f, 'leafbridge')),
        baseline: overRepsOf(reps, (f) => m.pick(f, 'baseline')),
      },
    ]),
  );
}

/** Reps in which a phase ended with the server holding something other than the wanted state. */
export function wrongEnds(reps: Figures[], l: Label = 'leafbridge'): number {
  return reps.filter((f) => {
    const o = f.outage[l];
    const bursts = f.bursts[l] ?? [];
    return (
      f.steady[l]?.matches === false ||
      bursts.some((b) => !b.lastStateWins) ||
      (o !== undefined && o.convergedMs === undefined)
    );
  }).length;
}

export function targetsOf(reps: Figures[]): Target[] {
  const median = (id: string) => {
    const m = MEASURES.find((x) => x.id === id) as Measure;
    return overRepsOf(reps, (f) => m.pick(f, 'leafbridge')).median;
  };
  return [
    target(
      'burstFast',
      'worst Device: API writes for one burst of changes (fast server), median of the reps',
      median('burstFast.maxPerDevice'),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'burstSlow',
      `same, server slowed by ${PARAMS.burst.slowMs} ms per request`,
      median('burstSlow.maxPerDevice'),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'outageExtra',
      'worst Device: writes after up() beyond the fewest it needs, median of the reps',
      median('outage.worstExtra'),
      '<=',
      TARGETS.extraWritesAfterOutage,
      'writes',
    ),
    target(
      'converge',
      'up() → server objects equal the wanted state, median of the reps',
      median('outage.convergedS'),
      '<=',
      TARGETS.convergeS,
      's',
    ),
    target(
      'rightEnd',
      'reps in which a phase ended with the server not holding the wanted state',
      wrongEnds(reps),
      '<=',
      0,
      'reps',
    ),
  ];
}

/** The double's table: each cell the median over the reps with its spread, leafbridge beside the baseline. */
export function doubleTable(reps: Figures[], targets: Target[]): string {
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? (t.pass ? 'met' : 'MISSED') : '';
  };
  const rows: Row[] = MEASURES.map((m) => {
    const a = overRepsOf(reps, (f) => m.pick(f, 'leafbridge'));
    const b = overRepsOf(reps, (f) => m.pick(f, 'baseline'));
    return {
      measure: m.label,
      leafbridge: repText(a, m.digits),
      peer: repText(b, m.digits),
      ratio: ratio(a.median, b.median),
      target: m.target?.text ?? '',
      result: m.target ? verdict(m.target.id) : '',
    };
  });
  return table(rows, { peer: 'baseline' });
}

const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)
    ? ''
    : `${fmt(a / b, 2)}×`;

/** Details of one rep (the median one): requests by verb, burst histograms, what the outage left. */
export function notesOf(f: Figures): string[] {
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
    if (o.logged) notes.push(`(3) ${label} warn lines by message (whole rep): ${JSON.stringify(o.logged)}`);
  }
  return notes;
}

export const split = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
