const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

export const SIZE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtT][iI]?)?[bB]?\\s*$';

/** Parses `1GiB`, `512MB`, `1024` into bytes; undefined for anything else. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase();
  const factor = UNITS[unit.endsWith('i') ? `${unit}b` : unit.length ? `${unit}b` : ''];
  return factor === undefined ? undefined : Math.floor(Number(m[1]) * factor);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
export const DURATION_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)\\s*$';

/** Parses `30s`, `5m`, `250ms`, `1h` (or a number of milliseconds) into milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] as string] ?? Number.NaN));
}
