import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deviceName, isNameOf, legacyDeviceName, shorten } from '../../../src/model/naming.js';

/** The first `digits` hex digits of sha256 of the parts joined by NUL: the scheme docs/hub.md states. */
const sha = (digits: number, ...parts: string[]) =>
  createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, digits);

/**
 * A Device's name is stored in Kubernetes and computed again by every agent (after an upgrade too) and by the
 * hub (src/hub/deviceIndex.ts), so the scheme itself is the promise: any change renames every Device (its pods
 * lose it) or makes the hub file a local device's messages under the wrong node. These pin it against a
 * sha256 computed here. (naming.test.ts checks a million names for collisions; it is too slow for a mutation
 * run, which uses this file.)
 */
describe('the Device name scheme', () => {
  it('<config>-<16 hex of sha256(id)>, of sha256(id NUL node) for a local device; alternatives append NUL attempt', () => {
    expect(deviceName('cams', 'a', undefined)).toBe(`cams-${sha(16, 'a')}`);
    expect(deviceName('cams', 'a', 'edge-1')).toBe(`cams-${sha(16, 'a', 'edge-1')}`);
    expect(deviceName('cams', 'a', 'edge-1', 0)).toBe(`cams-${sha(16, 'a', 'edge-1')}`);
    expect(deviceName('cams', 'a', 'edge-1', 1)).toBe(`cams-${sha(16, 'a', 'edge-1', '1')}`);
    expect(deviceName('cams', 'a', undefined, 2)).toBe(`cams-${sha(16, 'a', '2')}`);
  });

  it('the 6-digit names Devices created before keep: <config>-<6 hex of the same hash>', () => {
    expect(legacyDeviceName('cams', 'a', undefined)).toBe(`cams-${sha(6, 'a')}`);
    expect(legacyDeviceName('cams', 'a', 'edge-1')).toBe(`cams-${sha(6, 'a', 'edge-1')}`);
  });

  it('a config name of 46 characters is kept whole; one of 47 is cut to 46 and hashed with the id', () => {
    const c46 = 'c'.repeat(46);
    expect(deviceName(c46, 'a', 'n')).toBe(`${c46}-${sha(16, 'a', 'n')}`);
    const c47 = `${c46}d`;
    const long = deviceName(c47, 'a', 'n');
    expect(long).toBe(`${c46}-${sha(16, c47, 'a', 'n')}`);
    expect(long).toHaveLength(63);
    expect(deviceName(c47, 'a', undefined, 3)).toBe(`${c46}-${sha(16, c47, 'a', '3')}`);
  });

  it('isNameOf: the hub recognises both forms of a local device’s name for its node, not another node’s', () => {
    expect(isNameOf(`cams-${sha(16, 'a', 'edge-1')}`, 'cams', 'a', 'edge-1')).toBe(true);
    expect(isNameOf(`cams-${sha(6, 'a', 'edge-1')}`, 'cams', 'a', 'edge-1')).toBe(true);
    expect(isNameOf(`cams-${sha(16, 'a', 'edge-2')}`, 'cams', 'a', 'edge-1')).toBe(false);
    expect(isNameOf(`cams-${sha(6, 'a', 'edge-2')}`, 'cams', 'a', 'edge-1')).toBe(false);
  });
});

describe('shorten', () => {
  it('keeps a name that fits; cuts a longer one to its start, "-" and 8 hex of sha256 of the whole name', () => {
    const fits = 'n'.repeat(63);
    expect(shorten(fits)).toBe(fits);
    const long = `${fits}x`;
    expect(shorten(long)).toBe(`${'n'.repeat(54)}-${sha(8, long)}`);
    expect(shorten(long)).toHaveLength(63);
    expect(shorten('abcdefghijkl', 12)).toBe('abcdefghijkl');
    expect(shorten('abcdefghijklm', 12)).toBe(`abc-${sha(8, 'abcdefghijklm')}`);
  });
});
