import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { formatProfile, type ProfileSummary } from './cpuprofile.js';
import type { CpuSplit } from './util.js';
import { RESULTS_DIR, ROOT, round1 } from './util.js';

export interface Target {
  id: string;
  name: string;
  /** The measured value the target applies to (undefined when the measurement failed). */
  value: number | undefined;
  comparison: '>=' | '<=';
  target: number;
  unit: string;
  pass: boolean;
}

export function target(
  id: string,
  name: string,
  value: number | undefined,
  comparison: '>=' | '<=',
  goal: number,
  unit: string,
): Target {
  const pass =
    value !== undefined && Number.isFinite(value) && (comparison === '>=' ? value >= goal : value <= goal);
  return { id, name, value, comparison, target: goal, unit, pass };
}

export interface Row {
  measure: string;
  leafbridge: string;
  /** A real peer's figure (mosquitto, direct publishing), or a baseline's under a header saying so. */
  peer: string;
  ratio: string;
  target: string;
  result: string;
}

/**
 * A plain-text table under a header row; `labels` renames header columns (`peer: 'baseline'` where the thing
 * compared against is written here, not a peer product).
 */
export function table(rows: Row[], labels: Partial<Row> = {}): string {
  const header: Row = {
    measure: 'measure',
    leafbridge: 'leafbridge',
    peer: 'peer',
    ratio: 'ratio',
    target: 'target',
    result: 'result',
    ...labels,
  };
  const all = [header, ...rows];
  const keys = Object.keys(header) as (keyof Row)[];
  const widths = keys.map((k) => Math.max(...all.map((r) => r[k].length)));
  const line = (r: Row) =>
    keys
      .map((k, i) => (k === 'measure' ? r[k].padEnd(widths[i] ?? 0) : r[k].padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** A plain-text table of any columns: the first column left-aligned, the others right-aligned. */
export function grid(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    widths
      .map((w, i) => (i === 0 ? (r[i] ?? '').padEnd(w) : (r[i] ?? '').padStart(w)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Writes `<bench>-<timestamp>.json` and `<bench>-latest.json` under bench/results; returns both paths. */
export function writeResults(bench: string, startedAt: Date, data: Record<string, unknown>): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const record = {
    bench,
    command: `npm run bench -- ${bench}`,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    durationS: round1((Date.now() - startedAt.getTime()) / 1000),
    ...data,
  };
  const stamp = startedAt
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
  const text = `${JSON.stringify(record, null, 2)}\n`;
  const files = [join(RESULTS_DIR, `${bench}-${stamp}.json`), join(RESULTS_DIR, `${bench}-latest.json`)];
  for (const f of files) writeFileSync(f, text);
  return files.map((f) => relative(ROOT, f));
}

/** A run's figures without its raw sample window, for the JSON. */
export function strip<T extends { window?: unknown }>(r: T | undefined): Omit<T, 'window'> | undefined {
  if (!r) return undefined;
  const { window: _window, ...rest } = r;
  return rest;
}

/** "CPU cores: agent 0.91, …; other processes 0.02" */
export function cpuLine(cpu: CpuSplit | undefined): string {
  if (!cpu) return '';
  const parts = Object.entries(cpu.cores).map(([k, v]) => `${k} ${v.toFixed(2)}`);
  return `CPU cores: ${parts.join(', ')}; other processes ${cpu.otherProcessesCores.toFixed(2)}`;
}

/** The notes, profile summaries and errors that close a bench's printout. */
export function printTail(
  log: (s: string) => void,
  notes: string[],
  profiles: Record<string, ProfileSummary | string>,
  errors: Record<string, string>,
): void {
  for (const n of notes) log(`  ${n}`);
  for (const [k, v] of Object.entries(profiles)) {
    if (typeof v === 'string') log(`  profile ${k}: ${v}`);
    else log(`\n${formatProfile(`agent CPU profile during ${k}`, v)}`);
  }
  for (const [k, v] of Object.entries(errors)) log(`  ERROR ${k}: ${v.split('\n')[0]}`);
}
