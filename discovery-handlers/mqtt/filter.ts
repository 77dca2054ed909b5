import { LinearRegex } from '../../src/util/linearRegex.js';
import type { MqttDetails } from './schema.js';

/**
 * A glob-ish id pattern: `*` matches any run of characters, `?` one character, the rest is literal. Matched
 * in linear time: a config's `*a*a*a*b` against a long id must not backtrack.
 */
export function idPattern(glob: string): LinearRegex {
  const source = [...glob]
    .map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.+()[\]{}|]/g, '\\$&')))
    .join('');
  return LinearRegex.compile(`^${source}$`, { dotAll: true });
}

export type IdFilter = (id: string) => boolean;

/** Kept when it matches an include pattern (or there are none) and no exclude pattern. */
export function compileIdFilter(filter: MqttDetails['ids']): IdFilter {
  const include = filter?.include?.map(idPattern);
  const exclude = (filter?.exclude ?? []).map(idPattern);
  return (id) =>
    (include === undefined || include.some((re) => re.test(id))) && !exclude.some((re) => re.test(id));
}

export type PropertyFilter = (properties: Readonly<Record<string, string>>) => boolean;

/** Kept when the properties hold every required key=value pair. */
export function compilePropertyFilter(required: MqttDetails['properties']): PropertyFilter {
  const pairs = Object.entries(required ?? {});
  return (properties) => pairs.every(([key, value]) => properties[key] === value);
}
