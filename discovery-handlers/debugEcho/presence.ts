import { readFile } from 'node:fs/promises';
import type { DiscoveredDevice } from '../../src/model/handler.js';

/** Which devices the presence file lets through: all of them (no file), or the ids it names. */
export type Presence = { kind: 'all' } | { kind: 'only'; ids: ReadonlySet<string> };

/** One id per line; surrounding white space and blank lines do not count. */
export function parsePresence(text: string): Presence {
  const ids = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return { kind: 'only', ids: new Set(ids) };
}

/** A missing file means every device is present; other read errors are thrown. */
export async function readPresence(path: string): Promise<Presence> {
  try {
    return parsePresence(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'all' };
    throw err;
  }
}

export function presentDevices(devices: readonly DiscoveredDevice[], presence: Presence): DiscoveredDevice[] {
  return presence.kind === 'all' ? [...devices] : devices.filter((d) => presence.ids.has(d.id));
}
