import { envNamePattern } from './schema.js';

/** What one birth message says: the device's properties, that it was deleted, or nothing usable. */
export type Birth =
  | { kind: 'announced'; properties: Record<string, string> }
  | { kind: 'deleted' }
  | { kind: 'invalid'; reason: string };

const envName = new RegExp(envNamePattern);

/** Most properties one birth may carry. */
export const maxBirthProperties = 256;

/**
 * Parses `{"properties": {"KEY": "value", ...}}`. An empty payload (a cleared retained message) deletes the
 * device. Anything else that is not exactly that shape, within `maxBytes`, is invalid as a whole.
 */
export function parseBirth(payload: Buffer, maxBytes: number): Birth {
  if (payload.length === 0) return { kind: 'deleted' };
  if (payload.length > maxBytes) return invalid(`payload of ${payload.length} bytes exceeds ${maxBytes}`);
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    return invalid('payload is not JSON');
  }
  if (!isObject(doc)) return invalid('payload is not a JSON object');
  const properties = doc.properties;
  if (properties === undefined) return { kind: 'announced', properties: {} };
  if (!isObject(properties)) return invalid('"properties" is not an object');
  return checkProperties(properties);
}

function checkProperties(properties: Record<string, unknown>): Birth {
  const entries = Object.entries(properties);
  if (entries.length > maxBirthProperties) return invalid(`more than ${maxBirthProperties} properties`);
  for (const [key, value] of entries) {
    if (!envName.test(key))
      return invalid(`property name ${JSON.stringify(key.slice(0, 64))} is not an env name`);
    if (typeof value !== 'string') return invalid(`property ${key} is ${kindOf(value)}, not a string`);
  }
  // fromEntries defines own properties, so a key such as __proto__ stays a plain key.
  return { kind: 'announced', properties: Object.fromEntries(entries) as Record<string, string> };
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(reason: string): Birth {
  return { kind: 'invalid', reason };
}

/** `online` / `offline`, an empty payload (a cleared retained status), or anything else. */
export type Status = 'online' | 'offline' | 'cleared' | 'invalid';

export function parseStatus(payload: Buffer): Status {
  if (payload.length === 0) return 'cleared';
  const text = payload.length <= 16 ? payload.toString('utf8').trim() : '';
  return text === 'online' || text === 'offline' ? text : 'invalid';
}
