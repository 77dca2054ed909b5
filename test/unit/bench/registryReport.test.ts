import { describe, expect, it } from 'vitest';
import { doubleTable, summaryOf, targetsOf } from '../../../bench/lib/registryReport.js';
import type { Burst, Figures, Outage, Steady } from '../../../bench/registry.js';

const steady = (): Steady => ({ ms: 900, writes: 2000, writesPerDevice: 2, requests: {}, matches: true });

const burst = (slowMs: number, worst: number): Burst => ({
  slowMs,
  issuedMs: 100,
  ms: 400,
  writes: 200,
  meanPerDevice: 1,
  maxPerDevice: worst,
  worstDevice: 'd0000',
  histogram: { [worst]: 200 },
  requests: {},
  lastStateWins: true,
});

/** An outage that converged after `convergedMs` (undefined: it never did) with `extra` writes on one Device. */
const outage = (convergedMs: number | undefined, extra = 0): Outage => ({
  outageS: 60,
  changes: 650,
  minimumWrites: 600,
  refusedDuringOutage: 10,
  failedAttemptsDuringOutage: 10,
  firstRequestMs: 500,
  firstWriteOkMs: 600,
  watchBackMs: 500,
  convergedMs,
  confirmedMs: convergedMs,
  left: { missing: 0, extra: 0, stale: convergedMs === undefined ? 3 : 0 },
  writesAfterUp: 600 + extra,
  writesPerChange: (600 + extra) / 650,
  worstExtra: { device: 'd0100', writes: 1 + extra, minimum: 1 },
  recreated: 0,
  requestsAfterUp: {},
});

/** One rep: the store and the baseline alike but for the store's outage. */
function rep(convergedMs: number | undefined, extra = 0, worstSlowBurst = 1): Figures {
  return {
    steady: { leafbridge: steady(), baseline: steady() },
    bursts: {
      leafbridge: [burst(0, 1), burst(200, worstSlowBurst)],
      baseline: [burst(0, 10), burst(200, 10)],
    },
    outage: { leafbridge: outage(convergedMs, extra), baseline: outage(20_000, 150) },
  };
}

const byId = (reps: Figures[], id: string) => targetsOf(reps).find((t) => t.id === id);

describe('registry bench report: targets judged on the median of the reps', () => {
  it('one slow rep of three does not decide the convergence target, nor does the fastest', () => {
    const t = byId([rep(45_000), rep(5_000), rep(7_000)], 'converge');
    expect(t?.value).toBe(7); // not 5 (best of 3), not 45 (worst)
    expect(t?.pass).toBe(true);
    expect(byId([rep(45_000), rep(35_000), rep(7_000)], 'converge')?.pass).toBe(false);
  });

  it('a rep that never converged sorts last, and any rep that ended wrong fails the run', () => {
    const reps = [rep(undefined), rep(5_000), rep(6_000)];
    expect(byId(reps, 'converge')?.value).toBe(6);
    const right = byId(reps, 'rightEnd');
    expect(right?.value).toBe(1);
    expect(right?.pass).toBe(false);
    expect(byId([rep(4_000), rep(5_000), rep(6_000)], 'rightEnd')?.pass).toBe(true);
  });

  it('counts are judged on their median too: extra writes in one rep of three pass, in two fail', () => {
    expect(byId([rep(5_000, 3), rep(5_000), rep(5_000)], 'outageExtra')?.pass).toBe(true);
    expect(byId([rep(5_000, 3), rep(5_000, 1), rep(5_000)], 'outageExtra')?.value).toBe(1);
    expect(byId([rep(5_000), rep(5_000, 0, 2), rep(5_000, 0, 3)], 'burstSlow')?.value).toBe(2);
  });

  it('prints each figure as the median with its spread, and keeps every rep in the summary', () => {
    const reps = [rep(45_000), rep(5_000), rep(7_000)];
    const text = doubleTable(reps, targetsOf(reps));
    expect(text).toMatch(
      /server equals wanted state, s +7\.0 \(median of 3; 5\.0–45\.0\) +20\.0 \(median of 3; 20\.0–20\.0\)/,
    );
    const converged = summaryOf(reps)['outage.convergedS'];
    expect(converged?.leafbridge).toEqual({ median: 7, min: 5, max: 45, n: 3, reps: [45, 5, 7] });
  });
});
