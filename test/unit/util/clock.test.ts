import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../../src/util/clock.js';

describe('backoffDelay: exponential backoff with full jitter', () => {
  it('draws from [base, min(max, base·2^attempt)]: the low end, the ceiling, and a point between', () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, 100, 3_000, () => 1));
    expect(ceilings).toEqual([100, 200, 400, 800, 1_600, 3_000, 3_000]);
    for (let a = 0; a < 7; a++) expect(backoffDelay(a, 100, 3_000, () => 0)).toBe(100);
    expect(backoffDelay(3, 100, 3_000, () => 0.5)).toBe(450);
  });

  it('stays at the cap for any number of attempts, and never under the base when the cap is smaller', () => {
    expect(backoffDelay(1_000, 500, 30_000, () => 1)).toBe(30_000);
    expect(backoffDelay(4, 500, 200, () => 1)).toBe(500);
  });

  it('spreads retries: 200 draws at the cap are not all alike and stay within the bounds', () => {
    const draws = Array.from({ length: 200 }, () => backoffDelay(10, 100, 3_000));
    expect(new Set(draws).size).toBeGreaterThan(50);
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...draws)).toBeLessThanOrEqual(3_000);
  });
});
