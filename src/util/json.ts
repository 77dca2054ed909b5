import { byCodeUnit } from './order.js';

/** JSON with object keys sorted, to compare objects regardless of key order. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => byCodeUnit(a, b)))
      : v,
  );
}

/**
 * The JSON merge patch (RFC 7386) that turns `from` into `to`: keys of `to` that differ (objects compared
 * key by key, anything else replaced whole, arrays included), and `null` for keys `from` has and `to` lacks.
 */
export function mergePatchOf(
  from: Record<string, unknown>,
  to: Record<string, unknown>,
): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(from)) if (!(key in to)) patch[key] = null;
  for (const [key, value] of Object.entries(to)) {
    const before = from[key];
    if (isPlainObject(before) && isPlainObject(value)) {
      const inner = mergePatchOf(before, value);
      if (Object.keys(inner).length > 0) patch[key] = inner;
    } else if (!(key in from) || stableJson(before) !== stableJson(value)) patch[key] = value;
  }
  return patch;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
