import { describe, expect, it } from 'vitest';
import { type Outcome, WorkQueue } from '../../../src/controller/workQueue.js';
import { systemClock } from '../../../src/util/clock.js';
import { silentLogger } from '../../../src/util/logger.js';
import { until } from '../../helpers/wait.js';

const queue = (workers = 4) =>
  new WorkQueue({
    clock: systemClock,
    logger: silentLogger(),
    backoff: { baseMs: 100, maxMs: 400 },
    workers,
  });
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('coalesces a key added many times, and never handles one key twice at once', async () => {
    const q = queue();
    const seen: string[] = [];
    let active = 0;
    let maxActive = 0;
    q.start(async (key) => {
      seen.push(key);
      active++;
      maxActive = Math.max(maxActive, active);
      await tick(30);
      active--;
      return undefined;
    });
    for (let i = 0; i < 10; i++) q.add('a');
    q.add('b');
    await tick(5);
    q.add('a'); // while "a" runs: once more afterwards
    q.add('a');
    await until(() => q.length === 0, 2000, 'the queue drained');
    expect(seen.sort()).toEqual(['a', 'a', 'b']);
    expect(maxActive).toBe(2); // a and b at once, never a twice
    await q.stop();
  });

  it('retries a failing key with growing delays, not in a loop; wakes a key at its deadline', async () => {
    const q = queue();
    const times: number[] = [];
    const start = Date.now();
    q.start(async (key): Promise<Outcome> => {
      if (key === 'later') {
        times.push(-(Date.now() - start));
        return undefined;
      }
      times.push(Date.now() - start);
      throw new Error('API server away');
    });
    q.add('bad');
    q.addAfter('later', 300);
    q.addAfter('later', 900); // the earlier deadline stands
    await tick(1000);
    await q.stop();
    const failures = times.filter((t) => t >= 0);
    const later = times.filter((t) => t < 0).map((t) => -t);
    // 0, then ≥100, ≥100–200, ≥100–400, … : at most 1 + 1000/100 attempts, in practice far fewer.
    expect(failures.length).toBeGreaterThanOrEqual(3);
    expect(failures.length).toBeLessThanOrEqual(8);
    expect(later).toHaveLength(1);
    expect(later[0]).toBeGreaterThanOrEqual(290);
    expect(later[0]).toBeLessThan(600);
  });
});
