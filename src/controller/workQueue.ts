import { backoffDelay, type Clock } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** What a handler asks for after a pass: nothing more, or another pass in `ms` (a deadline it waits for). */
export type Outcome = { requeueAfterMs?: number } | undefined;

export interface WorkQueueOptions {
  clock: Clock;
  logger: Logger;
  /** Delays before a key that failed is tried again (full jitter, doubling per failure in a row). */
  backoff: { baseMs: number; maxMs: number };
  /** Keys handled at once (never one key twice at once). Default 4. */
  workers?: number;
}

/**
 * Keys to reconcile, as client-go's work queue has them: a key added many times before it is handled is
 * handled once; a key added while it is being handled is handled again afterwards (never twice at once); a
 * handler that throws has its key retried with backoff and jitter, doubling per failure in a row, so a
 * failing key costs one attempt per backoff period, never a hot loop; `addAfter` wakes a key at a deadline
 * (the earliest one asked for wins).
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  /** Added again while active: handled once more when the pass ends. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; handle: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly idle = new Set<() => void>();
  private handler: ((key: string) => Promise<Outcome>) | undefined;
  private stopped = false;
  private running = 0;

  constructor(private readonly o: WorkQueueOptions) {}

  /** Starts handing keys to `handler`. */
  start(handler: (key: string) => Promise<Outcome>): void {
    this.handler = handler;
    this.pump();
  }

  /** Stops taking keys and drops the timers; resolves when the passes under way have ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) this.o.clock.clearTimeout(t.handle);
    this.timers.clear();
    if (this.running > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Adds `key` in `ms`, unless it is already due earlier. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.o.clock.now() + ms;
    const current = this.timers.get(key);
    if (current && current.at <= at) return;
    if (current) this.o.clock.clearTimeout(current.handle);
    const handle = this.o.clock.setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    handle.unref?.();
    this.timers.set(key, { at, handle });
  }

  /** Keys waiting or being handled. */
  get length(): number {
    return new Set([...this.queued, ...this.active]).size;
  }

  private pump(): void {
    const workers = this.o.workers ?? 4;
    while (this.handler && !this.stopped && this.running < workers && this.queue.length > 0) {
      const key = this.queue.shift() as string;
      this.queued.delete(key);
      this.active.add(key);
      this.running++;
      void this.handle(key, this.handler);
    }
  }

  private async handle(key: string, handler: (key: string) => Promise<Outcome>): Promise<void> {
    try {
      const outcome = await handler(key);
      this.failures.delete(key);
      if (outcome?.requeueAfterMs !== undefined) this.addAfter(key, outcome.requeueAfterMs);
    } catch (err) {
      const n = this.failures.get(key) ?? 0;
      this.failures.set(key, n + 1);
      const delay = backoffDelay(n, this.o.backoff.baseMs, this.o.backoff.maxMs);
      this.o.logger.warn({ key, err: errorMessage(err), retryInMs: delay }, 'reconcile failed; will retry');
      this.addAfter(key, delay);
    } finally {
      this.active.delete(key);
      this.running--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
      if (this.running === 0) for (const f of this.idle) f();
      if (this.running === 0) this.idle.clear();
    }
  }
}
