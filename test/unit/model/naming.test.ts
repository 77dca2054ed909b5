import { describe, expect, it } from 'vitest';
import { deviceName, legacyDeviceName, NAME_HASH_DIGITS } from '../../../src/model/naming.js';

/**
 * Names of `count` ids in one config, and how many of them were already taken. It yields now and
 * then: a worker busy for tens of seconds cannot answer vitest, which then fails the whole run.
 */
async function collisions(count: number, name: (id: string) => string): Promise<number> {
  const seen = new Set<string>();
  let taken = 0;
  for (let i = 0; i < count; i++) {
    if (i % 50_000 === 0) await new Promise((resolve) => setImmediate(resolve));
    const n = name(`device-${i}`);
    if (seen.has(n)) taken++;
    else seen.add(n);
  }
  return taken;
}

describe('Device names at scale', () => {
  it('a million ids in one config get a million names (the 6-digit scheme loses thousands)', async () => {
    const started = performance.now();
    expect(await collisions(1_000_000, (id) => deviceName('sensors', id, undefined))).toBe(0);
    console.info(`1,000,000 names in ${Math.round(performance.now() - started)} ms`);
    // What the first scheme did with the same ids: ~1e12/2/2^24 ≈ 29,800 collisions expected.
    expect(await collisions(1_000_000, (id) => legacyDeviceName('sensors', id, undefined))).toBeGreaterThan(
      20_000,
    );
  }, 60_000);

  it('a million local ids on one node too', async () => {
    expect(await collisions(1_000_000, (id) => deviceName('serial', id, 'edge-1'))).toBe(0);
  }, 60_000);

  it('names stay DNS labels of 63 characters at most; long config names sharing a prefix do not share names', () => {
    const label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
    const short = deviceName('c'.repeat(46), 'x', 'node');
    expect(short).toBe(`${'c'.repeat(46)}-${short.slice(-NAME_HASH_DIGITS)}`);
    const [a, b] = [`${'c'.repeat(50)}-a`, `${'c'.repeat(50)}-b`].map((c) => deviceName(c, 'x', undefined));
    for (const name of [short, a!, b!]) {
      expect(name).toMatch(label);
      expect(name.length).toBeLessThanOrEqual(63);
    }
    expect(a).not.toBe(b);
  });
});
