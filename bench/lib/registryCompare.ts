// `npm run bench -- registry`: the test double's figures and the real kube-apiserver's side by side, the targets
// judged on the real one, and what the real run could and could not count.
import type { Figures } from '../registry.js';
import type { RealFigures } from '../registryReal.js';
import { PARAMS, TARGETS } from './registryKit.js';
import { fmt, grid, type Target, target } from './report.js';

const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);

export function realTargets(r: RealFigures): Target[] {
  const b = r.bursts.leafbridge;
  const o = r.outage.leafbridge;
  return [
    target(
      'burstFast-real',
      '[real] API writes per Device for one burst of changes, mean (total from the apiserver counters / Devices)',
      b?.lastStateWins ? b.meanPerDevice : undefined,
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'outageExtra-real',
      '[real] writes after the restart beyond the fewest that could do it, all Devices together',
      o ? o.writesAfterRestart - o.minimumWrites : undefined,
      '<=',
      TARGETS.extraWritesAfterOutage,
      'writes',
    ),
    target(
      'converge-real',
      '[real] restart (process spawned) → etcd holds exactly the wanted state',
      sec(o?.convergedMs),
      '<=',
      TARGETS.convergeS,
      's',
    ),
  ];
}

/** Columns: leafbridge on the double, on the real server; the baseline on each. */
export function compareTable(d: Figures, r: RealFigures | undefined, targets: Target[]): string {
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? (t.pass ? 'met' : 'MISSED') : '';
  };
  const both = (id: string) => [verdict(id), verdict(`${id}-real`)].filter(Boolean).join(' / ');
  const fast = (label: 'leafbridge' | 'baseline') => d.bursts[label]?.find((b) => b.slowMs === 0);
  const n = (v: number | undefined, digits = 0) => fmt(v, digits);
  const rows: string[][] = [
    [
      '(1) 1,000 new Devices: all written, s',
      n(sec(d.steady.leafbridge?.ms), 2),
      n(sec(r?.steady.leafbridge?.ms), 2),
      n(sec(d.steady.baseline?.ms), 2),
      n(sec(r?.steady.baseline?.ms), 2),
      '',
    ],
    [
      '(1) API writes per new Device',
      n(d.steady.leafbridge?.writesPerDevice, 2),
      n(r?.steady.leafbridge?.writesPerDevice, 2),
      n(d.steady.baseline?.writesPerDevice, 2),
      n(r?.steady.baseline?.writesPerDevice, 2),
      '',
    ],
    [
      '(2) burst (fast server): writes/Device, mean',
      n(fast('leafbridge')?.meanPerDevice, 2),
      n(r?.bursts.leafbridge?.meanPerDevice, 2),
      n(fast('baseline')?.meanPerDevice, 2),
      n(r?.bursts.baseline?.meanPerDevice, 2),
      both('burstFast'),
    ],
    [
      '(2) burst (fast server): writes/Device, worst',
      n(fast('leafbridge')?.maxPerDevice),
      'n/a',
      n(fast('baseline')?.maxPerDevice),
      'n/a',
      '',
    ],
    [
      '(2) burst (fast server): all landed, s',
      n(sec(fast('leafbridge')?.ms), 2),
      n(sec(r?.bursts.leafbridge?.ms), 2),
      n(sec(fast('baseline')?.ms), 2),
      n(sec(r?.bursts.baseline?.ms), 2),
      '',
    ],
    [
      '(3) outage length, s',
      n(d.outage.leafbridge?.outageS),
      n(r?.outage.leafbridge?.outageS),
      n(d.outage.baseline?.outageS),
      n(r?.outage.baseline?.outageS),
      '',
    ],
    [
      '(3) failed attempts during the outage (the writer’s own count)',
      n(d.outage.leafbridge?.failedAttemptsDuringOutage),
      n(r?.outage.leafbridge?.failedAttemptsDuringOutage),
      n(d.outage.baseline?.failedAttemptsDuringOutage),
      n(r?.outage.baseline?.failedAttemptsDuringOutage),
      '',
    ],
    [
      '(3) connections refused during the outage (real: TLS, not observable)',
      n(d.outage.leafbridge?.refusedDuringOutage),
      n(r?.outage.leafbridge?.refusedDuringOutage),
      n(d.outage.baseline?.refusedDuringOutage),
      n(r?.outage.baseline?.refusedDuringOutage),
      '',
    ],
    [
      '(3) restart → apiserver ready (/readyz), s',
      '0 (up())',
      n(sec(r?.outage.leafbridge?.apiserverReadyMs), 1),
      '0 (up())',
      n(sec(r?.outage.baseline?.apiserverReadyMs), 1),
      '',
    ],
    [
      `(3) restart → stored state = wanted, s (≤ ${TARGETS.convergeS})`,
      n(sec(d.outage.leafbridge?.convergedMs), 1),
      n(sec(r?.outage.leafbridge?.convergedMs), 1),
      n(sec(d.outage.baseline?.convergedMs), 1),
      n(sec(r?.outage.baseline?.convergedMs), 1),
      both('converge'),
    ],
    [
      '(3) restart → every write confirmed, s',
      n(sec(d.outage.leafbridge?.confirmedMs), 1),
      n(sec(r?.outage.leafbridge?.confirmedMs), 1),
      n(sec(d.outage.baseline?.confirmedMs), 1),
      n(sec(r?.outage.baseline?.confirmedMs), 1),
      '',
    ],
    [
      '(3) Device writes after restart (fewest possible)',
      `${n(d.outage.leafbridge?.writesAfterUp)} (${n(d.outage.leafbridge?.minimumWrites)})`,
      `${n(r?.outage.leafbridge?.writesAfterRestart)} (${n(r?.outage.leafbridge?.minimumWrites)})`,
      `${n(d.outage.baseline?.writesAfterUp)} (${n(d.outage.baseline?.minimumWrites)})`,
      `${n(r?.outage.baseline?.writesAfterRestart)} (${n(r?.outage.baseline?.minimumWrites)})`,
      both('outageExtra'),
    ],
    [
      '(3) of those answered non-2xx',
      '',
      n(r?.outage.leafbridge?.failedWritesAfterRestart),
      '',
      n(r?.outage.baseline?.failedWritesAfterRestart),
      '',
    ],
  ];
  return grid(
    ['measure', 'leafbridge double', 'leafbridge real', 'baseline double', 'baseline real', 'target'],
    rows,
  );
}

export function realNotes(r: RealFigures): string[] {
  const split = (t: Record<string, number>) =>
    Object.entries(t)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
  const notes: string[] = [
    `[real] one control plane; KubeDeviceStore as leafbridge-agent in namespace leafbridge, the naive baseline as ` +
      `leafbridge-agent in leafbridge-baseline (the agent Role copied there); the two run one after the other, ` +
      `outages included (SIGKILL of kube-apiserver for ${r.outageS} s each, capped at 60 s; restarted on the same ` +
      `port and etcd), the store closed before the baseline's outage`,
    '[real] requests counted from apiserver_request_total (GET /metrics as admin) before/after each phase; after ' +
      'a restart the counters start from zero, so they hold only requests after it; they carry no object name, so ' +
      'per-Device worst cases are not available on the real server (n/a), totals are',
    `[real] the stored state read in etcd every ${200} ms (the double's in its store every ${PARAMS.pollMs} ms); ` +
      'restart times run from the kube-apiserver process being spawned (its own start-up included)',
    '[real] no slowed-server burst: the real apiserver has no fault injection (the double does +200 ms/request)',
  ];
  for (const [label, s] of Object.entries(r.steady))
    if (s) notes.push(`(1) [real] ${label} requests: ${split(s.requests)}`);
  for (const [label, b] of Object.entries(r.bursts))
    if (b)
      notes.push(
        `(2) [real] ${label} requests: ${split(b.requests)}; last state stored: ${b.lastStateWins ? 'yes' : 'NO'}`,
      );
  for (const [label, o] of Object.entries(r.outage)) {
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
