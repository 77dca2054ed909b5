import type { Clock } from './clock.js';
import type { Logger } from './logger.js';

export interface RepeatLogOptions {
  logger: Logger;
  clock: Clock;
  /** How often the repeats of one key are summed into one line. */
  intervalMs: number;
  /** Keys followed at once; beyond that, new keys are summed under one overflow key. */
  maxKeys?: number;
}

interface Entry {
  /** Fields of the first line, repeated in the sums (the per-event details are left out). */
  fields: Record<string, unknown>;
  msg: string;
  repeats: number;
}

const OVERFLOW = '\0overflow';

/**
 * Logs the first event of each key (e.g. client + refusal reason) at once, then one line per interval with
 * how many more there were, so a client that repeats a refused request thousands of times a second costs a
 * line a minute. A key with nothing in a whole interval is forgotten: its next event is logged at once again.
 * Counting is the caller's job (metrics keep the exact count); this only bounds the log.
 */
export class RepeatLog {
  private readonly entries = new Map<string, Entry>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly o: RepeatLogOptions) {}

  /** `fields` go on the first line as they are; `summary` fields (no per-event details) on the sums. */
  warn(key: string, summary: Record<string, unknown>, fields: Record<string, unknown>, msg: string): void {
    const entry = this.entries.get(key);
    if (entry) {
      entry.repeats++;
      return;
    }
    if (this.entries.size >= (this.o.maxKeys ?? 1000)) {
      const overflow = this.entries.get(OVERFLOW);
      if (overflow) overflow.repeats++;
      else this.entries.set(OVERFLOW, { fields: { keys: 'others' }, msg: 'more refusals', repeats: 1 });
      this.schedule();
      return;
    }
    this.o.logger.warn(fields, msg);
    this.entries.set(key, { fields: summary, msg, repeats: 0 });
    this.schedule();
  }

  /** Writes the sums not yet written and stops the timer (at shutdown). */
  flush(): void {
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.report();
    this.entries.clear();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = this.o.clock.setTimeout(() => this.tick(), this.o.intervalMs);
    this.timer.unref?.();
  }

  private tick(): void {
    this.timer = undefined;
    this.report();
    for (const [key, entry] of this.entries) {
      if (entry.repeats === 0) this.entries.delete(key);
      else entry.repeats = 0;
    }
    if (this.entries.size > 0) this.schedule();
  }

  private report(): void {
    for (const entry of this.entries.values()) {
      if (entry.repeats > 0)
        this.o.logger.warn(
          { ...entry.fields, repeated: entry.repeats, intervalMs: this.o.intervalMs },
          `${entry.msg} (repeated)`,
        );
    }
  }
}
