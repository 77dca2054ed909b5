// One measured figure over a bench's reps: targets are judged on the median, the min–max spread is printed next to
// it, and every rep's value goes to the JSON. (A best-of-N hides how much a figure moves from run to run; the
// median with its spread shows it.)
import { fmt } from './report.js';

export interface OverReps {
  /** The median over the reps that gave a value; undefined when none did. +∞ (a timed-out rep) sorts last. */
  median: number | undefined;
  min: number | undefined;
  max: number | undefined;
  /** Reps that gave a value. */
  n: number;
  /** Every rep's value in run order; null where a rep failed or gave no value (and for +∞ in JSON). */
  reps: (number | null)[];
}

/** Median, min and max of one figure over the reps (undefined entries are reps without a value). */
export function overReps(values: readonly (number | undefined)[]): OverReps {
  const got = values.filter((v): v is number => v !== undefined && !Number.isNaN(v));
  const sorted = [...got].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length === 0
      ? undefined
      : sorted.length % 2 === 1
        ? sorted[mid]
        : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return {
    median,
    min: sorted[0],
    max: sorted.at(-1),
    n: sorted.length,
    reps: values.map((v) => (v === undefined || !Number.isFinite(v) ? null : v)),
  };
}

/** The figure picked from each rep, over the reps: `overReps(reps.map(pick))` for a list of rep results. */
export function overRepsOf<T>(
  reps: readonly (T | undefined)[],
  pick: (r: T) => number | undefined,
): OverReps {
  return overReps(reps.map((r) => (r === undefined ? undefined : pick(r))));
}

/** One value as the tables show it: +∞ (a timed-out rep) as 'timeout'. */
function value(v: number | undefined, digits: number): string {
  return v === Number.POSITIVE_INFINITY ? 'timeout' : fmt(v, digits);
}

/**
 * "16,310 (median of 3; 15,100–17,020)": the median with the spread over the reps; "(1 run)" for a single rep,
 * "n/a" when no rep gave a value.
 */
export function repText(f: OverReps, digits = 0): string {
  if (f.median === undefined) return 'n/a';
  if (f.n === 1) return `${value(f.median, digits)} (1 run)`;
  return `${value(f.median, digits)} (median of ${f.n}; ${value(f.min, digits)}–${value(f.max, digits)})`;
}

/**
 * The rep whose figure is the median (the lower middle one for an even count): the run whose details (CPU split,
 * counts) a bench prints beside the medians. Reps without the figure are left out.
 */
export function medianRun<T>(
  reps: readonly (T | undefined)[],
  pick: (r: T) => number | undefined,
): T | undefined {
  const got = reps
    .filter((r): r is T => r !== undefined)
    .map((r) => ({ r, v: pick(r) }))
    .filter((x): x is { r: T; v: number } => x.v !== undefined && !Number.isNaN(x.v))
    .sort((a, b) => a.v - b.v);
  return got[Math.floor((got.length - 1) / 2)]?.r;
}
