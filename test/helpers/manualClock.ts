import type { Clock } from '../../src/util/clock.js';

export interface ManualClock extends Clock {
  /** Moves the time to `ms` without running any timer. */
  set(ms: number): void;
  /** Moves the time on by `ms` and runs every timer due by then, also those the timers set on the way. */
  advance(ms: number): void;
  /** When the timers not yet run are due. */
  dueAt(): number[];
}

/** A clock whose timers run only when the test advances it. */
export function manualClock(): ManualClock {
  let now = 0;
  let timers: { at: number; fn: () => void; handle: NodeJS.Timeout }[] = [];
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const handle = { unref() {} } as unknown as NodeJS.Timeout;
      timers.push({ at: now + ms, fn, handle });
      return handle;
    },
    clearTimeout(handle) {
      timers = timers.filter((t) => t.handle !== handle);
    },
    set(ms) {
      now = ms;
    },
    advance(ms) {
      now += ms;
      for (;;) {
        const due = timers.filter((t) => t.at <= now);
        if (due.length === 0) return;
        timers = timers.filter((t) => t.at > now);
        for (const t of due) t.fn();
      }
    },
    dueAt: () => timers.map((t) => t.at),
  };
}
