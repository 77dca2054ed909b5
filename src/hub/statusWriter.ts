import { setMaxListeners } from 'node:events';
import {
  isConflict,
  isNotFound,
  isTransient,
  KubeApiError,
  noAnswer,
  statusOf,
} from '../kubeclient/kubeApiError.js';
import type { KubeRest } from '../kubeclient/kubeRest.js';
import { type CustomResource, customPath, MERGE_PATCH } from '../kubeclient/paths.js';
import { Reachability } from '../kubeclient/reachability.js';
import { olderThan } from '../kubeclient/reflector.js';
import { API_GROUP } from '../model/resources.js';
import { backoffDelay, sleep } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { Semaphore } from '../util/semaphore.js';
import { fold, type Pending, presenceNewer, reportNewer, statusPatch } from './statusPatch.js';
import type { HubDevice, HubMetrics } from './types.js';

export interface StatusWriterOptions {
  rest: KubeRest;
  namespace: string;
  logger: Logger;
  metrics: HubMetrics;
  /** At most one write per Device per interval. */
  intervalMs: number;
  concurrency: number;
  backoff: { baseMs: number; maxMs: number };
  probe: { baseMs: number; maxMs: number };
  /** The Device as the hub's watch last saw it. */
  known: (name: string) => HubDevice | undefined;
  /** A write refused for good (422 and the like): logged by the caller, throttled. */
  onRefused: (name: string, err: string) => void;
}

const CONFLICT_RETRIES = 5;
/** The first change of a quiet Device waits this long (at most an interval) so that a burst is one write. */
const SETTLE_MS = 100;

/**
 * Device status writes, coalesced: a Device's changes are folded into one pending state (newest report and
 * presence), written at most once per `intervalMs` — the first change of a quiet Device after a short settle,
 * later ones an interval after the previous write — and at most one write per Device in flight. Each write is
 * a JSON merge patch of `/status` computed from the freshest copy of the object (the watch's, or the answer
 * to our last write) under its resourceVersion; a 409 re-reads and recomputes, so what another writer (an
 * agent, another hub replica) put there in between is kept, and nothing older than the server's state is
 * ever written (statusPatch.ts). While the API server does not answer, one probe asks whether it is back
 * and every Device's writes wait for it, folding what arrives meanwhile: after the outage each Device gets
 * one write with its newest state.
 */
export class StatusWriter {
  private readonly rest: KubeRest;
  private readonly pending = new Map<string, Pending>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly writing = new Set<string>();
  private readonly lastWrite = new Map<string, number>();
  /** Answers to our writes newer than what the watch has delivered yet. */
  private readonly written = new Map<string, HubDevice>();
  private readonly closing = new AbortController();
  private readonly reachable: Reachability;
  private readonly slots: Semaphore;
  private readonly resource: CustomResource;

  constructor(private readonly o: StatusWriterOptions) {
    this.rest = o.rest;
    setMaxListeners(0, this.closing.signal);
    this.resource = { group: API_GROUP, version: 'v1alpha1', namespace: o.namespace, plural: 'devices' };
    this.reachable = new Reachability(
      () => this.rest.call({ method: 'GET', path: customPath(this.resource), query: { limit: 1 } }),
      o.probe,
      this.closing.signal,
      o.logger,
    );
    this.slots = new Semaphore(o.concurrency);
  }

  /** Status writes allowed in flight now (see governor.ts). */
  setConcurrency(limit: number): void {
    this.slots.setLimit(limit);
  }

  /** Devices with a change not yet written. */
  get backlog(): number {
    let n = this.writing.size;
    for (const name of this.pending.keys()) if (!this.writing.has(name)) n++;
    return n;
  }

  /**
   * Folds `p` into `name`'s pending state and schedules its write. False when `p` held nothing newer than
   * what is pending already (a stale report or presence).
   */
  offer(name: string, p: Pending): boolean {
    if (this.closing.signal.aborted) return false;
    const cur = this.pending.get(name);
    let newer = true;
    if (!cur) this.pending.set(name, { ...p });
    else {
      // In place (this runs for every message): per part, the newer one stays.
      newer = false;
      if (p.report && (!cur.report || reportNewer(p.report, cur.report))) {
        cur.report = p.report;
        newer = true;
      }
      if (p.presence && (!cur.presence || presenceNewer(p.presence, cur.presence))) {
        cur.presence = p.presence;
        newer = true;
      }
    }
    this.schedule(name);
    return newer;
  }

  /**
   * Writes every pending change now (shutting down); resolves when none is left or after `ms`. A change that
   * arrived while its Device was being written is scheduled when that write ends: it is written at once too.
   */
  async drain(ms: number): Promise<void> {
    const end = performance.now() + ms;
    while (this.backlog > 0 && performance.now() < end) {
      for (const [name, timer] of this.timers) {
        clearTimeout(timer);
        this.timers.delete(name);
        void this.flush(name);
      }
      await sleep(20);
    }
  }

  /** The watch saw `o`: our own copy of it is no longer needed once the watch has caught up. */
  observed(o: HubDevice): void {
    const mine = this.written.get(o.metadata.name);
    if (mine && !olderThan(o.metadata.resourceVersion ?? '', mine.metadata.resourceVersion ?? '')) {
      this.written.delete(o.metadata.name);
    }
  }

  /** The Device is gone: nothing of it is written any more. */
  forget(name: string): void {
    this.pending.delete(name);
    this.written.delete(name);
    this.lastWrite.delete(name);
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }

  close(): void {
    this.closing.abort();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private schedule(name: string): void {
    // Closed: no timer may outlive the writer (a write that failed as it closed would set one an interval out,
    // which kept a stopped hub's process alive until its 5-s deadline exited it with status 1).
    if (this.closing.signal.aborted || this.timers.has(name) || this.writing.has(name)) return;
    const now = performance.now();
    const last = this.lastWrite.get(name) ?? Number.NEGATIVE_INFINITY;
    const due = Math.max(now + Math.min(SETTLE_MS, this.o.intervalMs), last + this.o.intervalMs);
    const timer = setTimeout(() => {
      this.timers.delete(name);
      void this.flush(name);
    }, due - now);
    this.timers.set(name, timer);
  }

  private async flush(name: string): Promise<void> {
    this.writing.add(name);
    try {
      for (let attempt = 0; !this.closing.signal.aborted; attempt++) {
        await this.reachable.wait();
        if (this.closing.signal.aborted) return;
        const outcome = await this.slots.run(() => this.writeOnce(name));
        if (outcome === 'done') return;
        if (outcome === 'retry') {
          await sleep(
            backoffDelay(attempt, this.o.backoff.baseMs, this.o.backoff.maxMs),
            this.closing.signal,
          );
        }
      }
    } finally {
      this.writing.delete(name);
      if (this.pending.has(name)) this.schedule(name);
    }
  }

  /** One write of `name`'s pending state, re-read and recomputed on conflicts. */
  private async writeOnce(name: string): Promise<'done' | 'retry' | 'unreachable'> {
    const p = this.pending.get(name);
    if (!p || this.closing.signal.aborted) return 'done';
    this.pending.delete(name);
    try {
      for (let conflicts = 0; ; conflicts++) {
        const cur = this.freshest(name);
        if (!cur) return 'done'; // the Device is gone
        let computed: ReturnType<typeof statusPatch>;
        try {
          computed = statusPatch(cur.status, p);
        } catch (err) {
          // Only a malformed object on the server gets here; the state is dropped, the hub goes on.
          this.o.metrics.apiWriteFailures++;
          this.o.onRefused(name, `cannot compute the status patch: ${errorMessage(err)}`);
          return 'done';
        }
        const { patch, reportWritten, staleParts } = computed;
        this.o.metrics.stale += staleParts;
        if (Object.keys(patch).length === 0) {
          this.o.metrics.writesSkipped++;
          return 'done';
        }
        const sentAt = performance.now();
        this.lastWrite.set(name, sentAt);
        this.o.metrics.apiWrites++;
        try {
          const stored = await this.rest.call<HubDevice>({
            method: 'PATCH',
            path: customPath(this.resource, name, 'status'),
            body: { metadata: { resourceVersion: cur.metadata.resourceVersion }, status: patch },
            contentType: MERGE_PATCH,
          });
          this.o.metrics.apiWriteMs += performance.now() - sentAt;
          this.remember(stored);
          if (reportWritten) this.o.metrics.reportedWritten++;
          return 'done';
        } catch (err) {
          if (!isConflict(err) || conflicts >= CONFLICT_RETRIES) throw err;
          this.o.metrics.apiWriteConflicts++;
          await this.reread(name);
        }
      }
    } catch (err) {
      if (isNotFound(err)) return 'done'; // deleted under us
      this.pending.set(name, fold(p, this.pending.get(name)));
      if (noAnswer(err)) {
        if (this.reachable.lost(errorMessage(err))) {
          this.o.logger.warn({ err: errorMessage(err) }, 'API server unreachable; Device status writes wait');
        }
        return 'unreachable';
      }
      this.o.metrics.apiWriteFailures++;
      // Conflicts beyond CONFLICT_RETRIES are retried after a backoff, like 429 and 5xx.
      if (isTransient(err) || isConflict(err)) return 'retry';
      this.pending.delete(name); // refused for good (422 and the like): what it held is dropped
      this.o.onRefused(name, `HTTP ${statusOf(err) ?? '?'}: ${shortBody(err)}`);
      return 'done';
    }
  }

  private freshest(name: string): HubDevice | undefined {
    const watched = this.o.known(name);
    const mine = this.written.get(name);
    if (!watched) return undefined;
    if (!mine || olderThan(mine.metadata.resourceVersion ?? '', watched.metadata.resourceVersion ?? ''))
      return watched;
    return mine;
  }

  private async reread(name: string): Promise<void> {
    try {
      const o = await this.rest.call<HubDevice>({ method: 'GET', path: customPath(this.resource, name) });
      this.remember(o);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      this.written.delete(name);
      throw err;
    }
  }

  private remember(o: HubDevice): void {
    const watched = this.o.known(o.metadata.name);
    if (!watched || olderThan(watched.metadata.resourceVersion ?? '', o.metadata.resourceVersion ?? '')) {
      this.written.set(o.metadata.name, o);
    }
  }
}

/** What the server said, for the log: its Status message, else the error's. */
function shortBody(err: unknown): string {
  return (err instanceof KubeApiError ? err.message : errorMessage(err)).slice(0, 300);
}
